"""The intervention family: decoding-time interventions on reasoning, on one per-row state.

Each intervention is a small declarative module (its configuration, which token ids it touches,
which columns of the per-row state it owns, what one token does to them, what it adds to the next
logits): `tip` (thought-switching penalty), `nowait` (NoWait), `cyclic` (CyclicReflex), `budget`
(thinking-length budget, s1 budget forcing) and `gated` (TIP gated by the thought's confidence; this
project's own). `plan` combines several in one request; `state` is the per-row state adapters drive.
See docs/interventions.md. Imports torch (the rest of `tip_decode` core does not need it).
"""

from tip_decode.core.interventions.base import FORCED_LOGIT, TokenizerInfo, think_prompt_state
from tip_decode.core.interventions.budget import BudgetConfig
from tip_decode.core.interventions.cyclic import CyclicConfig
from tip_decode.core.interventions.gated import GatedConfig
from tip_decode.core.interventions.nowait import NoWaitConfig
from tip_decode.core.interventions.plan import KINDS, InterventionPlan, InterventionSet, PlanTables, plan_for, tip_only_plan
from tip_decode.core.interventions.state import InterventionState, prompt_state

__all__ = [
    "FORCED_LOGIT",
    "KINDS",
    "BudgetConfig",
    "CyclicConfig",
    "GatedConfig",
    "InterventionPlan",
    "InterventionSet",
    "InterventionState",
    "NoWaitConfig",
    "PlanTables",
    "TokenizerInfo",
    "plan_for",
    "prompt_state",
    "think_prompt_state",
    "tip_only_plan",
]
