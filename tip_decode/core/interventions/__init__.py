"""The intervention family: decoding-time interventions on reasoning, on one per-row state.

Each intervention is one declarative module (its configuration, its declaration in the registry,
which token ids it touches, which columns of the per-row state it owns, what one token does to them,
what it adds to the next logits): `tip` (thought-switching penalty), `nowait` (NoWait), `cyclic`
(CyclicReflex), `budget` (thinking-length budget, s1 budget forcing), `gated` (TIP gated by the
thought's confidence; this project's own), `deepconf` (DeepConf's online stop), `thinkbrake`
(ThinkBrake), `affirm` (self-affirmation reflection suppression), `alphaone` (AlphaOne), `inject`
(thinking intervention) and `nothinking` (NoThinking). `registry` declares them, `settings` reads a request's
(`InterventionSet`), `spec` is the command line's language for them; `plan` combines several in one
request and `state` is the per-row state adapters drive. See docs/interventions.md and docs/design.md.

Importing this package does not import torch: the torch side (`InterventionState`, `PlanTables`,
`plan_for`, `InterventionPlan`, `prompt_state`, ...) is loaded on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import Any

from tip_decode.core.interventions.affirm import AffirmConfig
from tip_decode.core.interventions.alphaone import AlphaOneConfig
from tip_decode.core.interventions.base import FORCED_LOGIT, TokenizerInfo
from tip_decode.core.interventions.budget import BudgetConfig
from tip_decode.core.interventions.cyclic import CyclicConfig
from tip_decode.core.interventions.deepconf import DeepConfConfig
from tip_decode.core.interventions.gated import GatedConfig
from tip_decode.core.interventions.inject import InjectConfig
from tip_decode.core.interventions.nothinking import NoThinkingConfig
from tip_decode.core.interventions.nowait import NoWaitConfig
from tip_decode.core.interventions.registry import Intervention, Key, intervention, interventions, register, unregister
from tip_decode.core.interventions.settings import InterventionSet, namespace_of, request_mapping
from tip_decode.core.interventions.thinkbrake import ThinkBrakeConfig

#: The torch side, imported when one of its names is first used (PEP 562).
_TORCH_SIDE = {
    "InterventionPlan": "tip_decode.core.interventions.plan",
    "PlanTables": "tip_decode.core.interventions.plan",
    "plan_for": "tip_decode.core.interventions.plan",
    "tip_only_plan": "tip_decode.core.interventions.plan",
    "InterventionState": "tip_decode.core.interventions.state",
    "prompt_state": "tip_decode.core.interventions.feeding",
    "think_prompt_state": "tip_decode.core.interventions.feeding",
    "Behind": "tip_decode.core.interventions.feeding",
    "catch_up": "tip_decode.core.interventions.feeding",
    "known_prefix": "tip_decode.core.interventions.feeding",
}


def __getattr__(name: str) -> Any:
    module = _TORCH_SIDE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TORCH_SIDE))


__all__ = [
    "FORCED_LOGIT",
    "AffirmConfig",
    "AlphaOneConfig",
    "BudgetConfig",
    "CyclicConfig",
    "DeepConfConfig",
    "GatedConfig",
    "InjectConfig",
    "Intervention",
    "InterventionPlan",
    "InterventionSet",
    "InterventionState",
    "Key",
    "NoThinkingConfig",
    "NoWaitConfig",
    "PlanTables",
    "ThinkBrakeConfig",
    "TokenizerInfo",
    "intervention",
    "interventions",
    "namespace_of",
    "plan_for",
    "prompt_state",
    "Behind",
    "catch_up",
    "known_prefix",
    "register",
    "request_mapping",
    "think_prompt_state",
    "tip_only_plan",
    "unregister",
]
