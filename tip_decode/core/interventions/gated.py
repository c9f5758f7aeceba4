"""`gated`: TIP gated by the confidence of the current thought (this project's own variant, not a paper's).

The idea: switching away at a high-entropy fork is exploration, switching away from a path the model
is sure of is the abandonment TIP targets. So TIP's penalty (same switch vocabulary, psi, window and
alpha as `tip`) applies at step t only while the current thought is confident:

    H_s  = entropy (nats) of softmax(z_s), the logits this processor receives at step s (before any
           intervention's bias, at temperature 1)
    m_t  = mean of H_s over the counted steps of the current thought, step t included
    penalty at t  iff  TIP's window is open at t  and  m_t < threshold

Counted steps are the steps inside reasoning (always, for scope "all") after the token that completed
the most recent switch, or after reasoning opened; the statistic resets when a switch is recognised
(the fork's own entropy belongs to neither thought) and when reasoning opens. A request resumed after
preemption restarts the statistic empty (entropies are not in the token history).

Related work, not reproduced here: CGRS (Huang et al., arXiv 2508.05337) suppresses reflection
triggers when the model is confident in its current answer.

Columns: TIP's (PSI, BETA, ARMED; ALPHA) plus THRESHOLD, ENTROPY_SUM, ENTROPY_COUNT, PENDING_ENTROPY.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tip_decode.core.config import (
    DEFAULT_TRIGGERS,
    MAX_COMMAND_LINE_BETA,
    PAPER_ALPHA,
    PAPER_BETA,
    parse_alpha,
    parse_beta,
    parse_scope,
    parse_triggers,
)
from tip_decode.core.interventions.base import AdvanceStep, ApplyStep, Layout, PhaseTrace, TokenizerInfo, parse_number
from tip_decode.core.interventions.registry import Intervention, Key
from tip_decode.core.interventions.tip import SwitchTables, TipRule, TipTables

if TYPE_CHECKING:
    from tip_decode.core.interventions.arrays import TableBuilder

#: Our untuned default: the 80th-percentile token entropy Wang et al. (arXiv 2506.01939) report for
#: Qwen3-8B chains of thought. A thought whose average token is less uncertain counts as confident.
DEFAULT_THRESHOLD = 0.672


@dataclass(frozen=True)
class GatedConfig:
    """Confidence-gated TIP settings.

    Args:
        alpha, beta, triggers, scope: as for TIP (`TIPConfig`).
        threshold: the penalty applies while the thought's mean entropy is below this (nats, > 0).

    Example:
        >>> GatedConfig(threshold=0.5).enabled
        True
    """

    alpha: float = PAPER_ALPHA
    beta: int = PAPER_BETA
    triggers: tuple[str, ...] = field(default=DEFAULT_TRIGGERS)
    scope: str = "auto"
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", parse_alpha(self.alpha, "gated_alpha"))
        object.__setattr__(self, "beta", parse_beta(self.beta, "gated_beta"))
        object.__setattr__(self, "triggers", parse_triggers(self.triggers, "gated_triggers"))
        object.__setattr__(self, "scope", parse_scope(self.scope, "gated_scope"))
        object.__setattr__(self, "threshold", parse_number(self.threshold, "gated_threshold", positive=True))

    @property
    def enabled(self) -> bool:
        return self.alpha > 0 and self.beta > 0

    def to_mapping(self) -> dict[str, Any]:
        alpha: float | str = "inf" if self.alpha == float("inf") else self.alpha
        return {
            "gated_alpha": alpha,
            "gated_beta": self.beta,
            "gated_triggers": list(self.triggers),
            "gated_scope": self.scope,
            "gated_threshold": self.threshold,
        }


class GatedRule(TipRule):
    name = "gated"
    needs_pending = True

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        super().__init__(structure, info, namespace="gated")

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> GatedTables:
        return GatedTables(self, layout, SwitchTables(self.vocabulary, width, tables))


class GatedTables(TipTables):
    advances_floats = True
    reads_logits = True  # the entropy of the whole row

    def __init__(self, rule: GatedRule, layout: Layout, switch: SwitchTables) -> None:
        super().__init__(rule, layout, switch, prefix="gated")
        self.THRESHOLD = layout.add_float("gated.threshold")
        self.SUM = layout.add_float("gated.entropy_sum")
        self.COUNT = layout.add_float("gated.entropy_count")
        self.PENDING_ENTROPY = layout.add_float("gated.pending_entropy")

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        ints, floats = super().settings(config)
        floats[self.THRESHOLD] = float(config.threshold)
        return ints, floats

    def advance(self, step: AdvanceStep) -> None:
        switched = self.advance_switches(step)
        ops, floats, out = step.ops, step.floats, step.out_floats
        counted = step.pending & step.reasoning if self.think else step.pending
        total = ops.where(counted, floats[:, self.SUM] + floats[:, self.PENDING_ENTROPY], floats[:, self.SUM])
        count = ops.where(counted, floats[:, self.COUNT] + 1, floats[:, self.COUNT])
        reset = switched | step.opens if self.think else switched
        out[:, self.SUM] = ops.where(reset, 0.0, total)
        out[:, self.COUNT] = ops.where(reset, 0.0, count)

    def contribute(self, step: ApplyStep) -> None:
        ops, floats = step.ops, step.floats
        current = ops.entropy(step.logits())
        mean = (floats[:, self.SUM] + current) / (floats[:, self.COUNT] + 1)
        confident = mean < floats[:, self.THRESHOLD]  # NaN (a row of -inf logits) is never confident
        step.write_int(self.layout.PENDING_AT, step.position)
        step.write_float(self.PENDING_ENTROPY, current)
        if self.token_ids:
            self.bias_into(step, self.bias(step.ints, floats[:, self.ALPHA], ops, gate=confident))

    def replay(self, config: Any, generated: Sequence[int], trace: PhaseTrace, ints: list[int], floats: list[float]) -> None:
        super().replay(config, generated, trace, ints, floats)
        floats[self.SUM] = 0.0
        floats[self.COUNT] = 0.0


def _structure(config: GatedConfig) -> Hashable:
    return (config.triggers, config.scope)


INTERVENTION = Intervention(
    name="gated",
    title="TIP gated by the confidence of the current thought (this project's own)",
    config_type=GatedConfig,
    keys={
        "gated_alpha": Key("alpha", parse_alpha),
        "gated_beta": Key("beta", parse_beta, command_line_max=MAX_COMMAND_LINE_BETA),
        "gated_triggers": Key("triggers", parse_triggers),
        "gated_scope": Key("scope", parse_scope),
        "gated_threshold": Key("threshold", lambda v, k: parse_number(v, k, positive=True)),
    },
    paper=GatedConfig(),
    structure=_structure,
    rule=GatedRule,
    finite=lambda c: math.isfinite(c.alpha),  # as TIP: alpha = inf is a ban
    order=40,
)
