"""`cyclic`: CyclicReflex (Fan et al., arXiv 2506.11077), a triangular wave on reflection-token logits.

Follows `cyclical_processor` in OPTML-Group/CyclicReflex `Base/evaluate.py`. With t the number of
tokens generated so far, amplitude A, period C and phase `shift`:

    x = ((t + shift * C) mod C) / C
    bias = (x / 0.25) * A                         if x <= 0.25   (0 -> +A: reflection encouraged)
         = A - ((x - 0.25) / 0.5) * 2 * A         if x <= 0.75   (+A -> -A)
         = -A + ((x - 0.75) / 0.25) * A           otherwise      (-A -> 0: reflection suppressed)

is added to the logits of the reflection tokens while reasoning is open and `start <= t < end`. The
tokens are the vocabulary entries spelled exactly like the words (the code's
`convert_tokens_to_ids("wait")`, so " wait" with a leading space is not biased: in R1-style traces the
reflection word that opens a paragraph follows a newline token and has no leading space).

Columns: START, END (ints); AMPLITUDE, PERIOD, SHIFT (floats).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tip_decode.core.config import parse_scope
from tip_decode.core.interventions.base import (
    AdvanceStep,
    ApplyStep,
    Layout,
    Rule,
    RuleTables,
    TokenizerInfo,
    bad_value,
    parse_count,
    parse_number,
    parse_optional_count,
    resolve_scope,
)
from tip_decode.core.interventions.registry import Intervention, Key

if TYPE_CHECKING:
    import torch

    from tip_decode.core.interventions.arrays import ArrayOps, TableBuilder

#: `wait_token_strs` of the authors' `cyclical_processor`.
PAPER_WORDS: tuple[str, ...] = ("wait", "Wait", "but", "But", "Alternatively")
#: Amplitude and period of the authors' run script for DeepSeek-R1-Distill-Qwen-7B (MATH500, AIME24,
#: AIME25; AMC23 used period 900). The argparse defaults are 1.0 and 600.
PAPER_AMPLITUDE = 5.0
PAPER_PERIOD = 1200.0


def _parse_words(value: Any, key: str) -> tuple[str, ...]:
    # Words are vocabulary entries matched exactly, so case and inner characters are kept.
    if isinstance(value, str):
        items = [w.strip() for w in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise bad_value(key, value, "has to be a list of words or a comma-separated string")
    words: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise bad_value(key, value, "has to contain only non-empty strings")
        if item not in words:
            words.append(item)
    if not words:
        raise bad_value(key, value, "has to name at least one word")
    return tuple(words)


@dataclass(frozen=True)
class CyclicConfig:
    """CyclicReflex settings.

    Args:
        amplitude: A >= 0 (0 turns it off).
        period: C > 0 tokens.
        shift: phase, in periods (any finite number).
        start, end: the wave acts for `start <= t < end` (end None: no end).
        words: vocabulary entries to bias (matched exactly, like `convert_tokens_to_ids`).
        scope: "auto", "think" or "all" (as for TIP).

    Example:
        >>> CyclicConfig().amplitude, CyclicConfig().period
        (5.0, 1200.0)
    """

    amplitude: float = PAPER_AMPLITUDE
    period: float = PAPER_PERIOD
    shift: float = 0.0
    start: int = 0
    end: int | None = None
    words: tuple[str, ...] = field(default=PAPER_WORDS)
    scope: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "amplitude", parse_number(self.amplitude, "cyclic_amplitude", minimum=0.0))
        object.__setattr__(self, "period", parse_number(self.period, "cyclic_period", positive=True))
        object.__setattr__(self, "shift", parse_number(self.shift, "cyclic_shift"))
        object.__setattr__(self, "start", parse_count(self.start, "cyclic_start"))
        object.__setattr__(self, "end", parse_optional_count(self.end, "cyclic_end"))
        if self.end is not None and self.end <= self.start:
            raise bad_value("cyclic_end", self.end, f"has to be greater than `cyclic_start` ({self.start})")
        object.__setattr__(self, "words", _parse_words(self.words, "cyclic_words"))
        object.__setattr__(self, "scope", parse_scope(self.scope, "cyclic_scope"))

    @property
    def enabled(self) -> bool:
        return self.amplitude > 0

    def to_mapping(self) -> dict[str, Any]:
        return {
            "cyclic_amplitude": self.amplitude,
            "cyclic_period": self.period,
            "cyclic_shift": self.shift,
            "cyclic_start": self.start,
            "cyclic_end": -1 if self.end is None else self.end,
            "cyclic_words": list(self.words),
            "cyclic_scope": self.scope,
        }


def triangle(t: torch.Tensor, amplitude: torch.Tensor, period: torch.Tensor, shift: torch.Tensor, ops: ArrayOps) -> torch.Tensor:
    """The authors' wave, operation for operation (see the module docstring)."""
    x = ops.remainder(t + shift * period, period) / period
    rising = (x / 0.25) * amplitude
    falling = amplitude - ((x - 0.25) / 0.5) * 2 * amplitude
    returning = -amplitude + ((x - 0.75) / 0.25) * amplitude
    return ops.where(x <= 0.25, rising, ops.where(x <= 0.75, falling, returning))


class CyclicRule(Rule):
    name = "cyclic"

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        words, scope = structure  # type: ignore[misc]
        self.scope = resolve_scope(scope, info.markers, "cyclic_scope")
        excluded = info.excluded_ids()
        found: dict[str, int] = {}
        for word in words:
            token_id = info.view.token_to_id(word)
            if token_id is not None and int(token_id) not in excluded:
                found[word] = int(token_id)
        if not found:
            raise ValueError(f"`cyclic_words`: none of {list(words)!r} is an entry of this tokenizer's vocabulary")
        self.word_ids = found
        self.missing = tuple(w for w in words if w not in found)
        self.token_ids = tuple(sorted(set(found.values())))

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> CyclicTables:
        return CyclicTables(self, layout, width)


class CyclicTables(RuleTables):
    def __init__(self, rule: CyclicRule, layout: Layout, width: int) -> None:
        self.rule = rule
        self.layout = layout
        self.think = rule.scope == "think"
        self.token_ids = tuple(i for i in rule.token_ids if i < width)
        self.START = layout.add_int("cyclic.start")
        self.END = layout.add_int("cyclic.end", default=-1)
        self.AMPLITUDE = layout.add_float("cyclic.amplitude")
        self.PERIOD = layout.add_float("cyclic.period", default=1.0)
        self.SHIFT = layout.add_float("cyclic.shift")

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        ints = {self.START: config.start, self.END: -1 if config.end is None else config.end}
        return ints, {self.AMPLITUDE: config.amplitude, self.PERIOD: config.period, self.SHIFT: config.shift}

    def advance(self, step: AdvanceStep) -> None:
        pass  # a function of the position only

    def contribute(self, step: ApplyStep) -> None:
        if not self.token_ids:
            return
        ops, ints, floats = step.ops, step.ints, step.floats
        t = step.position
        acting = step.active & (t >= ints[:, self.START]) & ((ints[:, self.END] < 0) | (t < ints[:, self.END]))
        if self.think:
            acting = acting & step.reasoning
        wave = triangle(ops.floats(t), floats[:, self.AMPLITUDE], floats[:, self.PERIOD], floats[:, self.SHIFT], ops)
        row = ops.floats(ops.where(acting & (wave != 0), wave, -0.0))
        self.bias_into(step, ops.broadcast_to(row[:, None], (row.shape[0], len(self.token_ids))))


def _structure(config: CyclicConfig) -> Hashable:
    return (config.words, config.scope)


INTERVENTION = Intervention(
    name="cyclic",
    title="CyclicReflex: a triangular wave on reflection-token logits (Fan et al., arXiv 2506.11077)",
    config_type=CyclicConfig,
    keys={
        "cyclic_amplitude": Key("amplitude", lambda v, k: parse_number(v, k, minimum=0.0)),
        "cyclic_period": Key("period", lambda v, k: parse_number(v, k, positive=True)),
        "cyclic_shift": Key("shift", parse_number),
        "cyclic_start": Key("start", parse_count),
        "cyclic_end": Key("end", parse_optional_count),
        "cyclic_words": Key("words", _parse_words),
        "cyclic_scope": Key("scope", parse_scope),
    },
    paper=CyclicConfig(),
    structure=_structure,
    rule=CyclicRule,
    finite=lambda c: True,  # a finite wave (parse_number refuses inf amplitudes)
    order=30,
)
