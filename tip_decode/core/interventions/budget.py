"""`budget`: a minimum and a maximum thinking length (s1 budget forcing, Muennighoff et al., arXiv 2501.19393).

The thinking length is the number of tokens inside the think block so far: tokens after the start
marker, those already in the prompt included (a chat template that ends with `<think>\\n` has put one
there), as vLLM's `thinking_token_budget` counts them. While reasoning is open:

- at the maximum (`length >= max`) the end marker is forced (s1 ends the thinking at its cap);
- below the minimum (`length < min`) the end marker and the end-of-sequence ids are banned (-inf);
  with a `word`, at a step where the end marker (or an end-of-sequence id) is the most likely token of
  the logits this processor receives, the word's first token is forced instead and its further tokens
  on the following steps (s1 removes the end delimiter and appends "Wait"). Under greedy decoding this
  is exactly s1's rule; under sampling the word is forced when the end marker is the mode.

Forcing a token sets its logit to `FORCED_LOGIT` (1e9, vLLM's own value). Responses that never open a
think block are not touched. Needs single-token think markers.

Columns: MIN, MAX (-1: none) and, with a word, the word's NEXT (index of the word token forced next,
-1: none; forcing.py) and PENDING_INDEX (word token forced at the pending position, -1: none).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tip_decode.core.interventions.base import (
    AdvanceStep,
    ApplyStep,
    Layout,
    PhaseTrace,
    Rule,
    RuleTables,
    TokenizerInfo,
    bad_value,
    parse_count,
    parse_optional_count,
)
from tip_decode.core.interventions.forcing import ForcedText
from tip_decode.core.interventions.registry import Intervention, Key

if TYPE_CHECKING:
    import torch

    from tip_decode.core.interventions.arrays import TableBuilder


def parse_word(value: Any, key: str = "budget_word") -> str | None:
    """The forced word verbatim (a leading space is part of it), or None ("" / "none": no word)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_value(key, value, "has to be a string")
    if value.strip().lower() in ("", "none"):
        return None
    return value


@dataclass(frozen=True)
class BudgetConfig:
    """Thinking-length budget.

    Args:
        min: minimum thinking length in tokens (0: none).
        max: maximum thinking length in tokens (None: none; 0 ends thinking at once).
        word: forced instead of the end marker below the minimum (s1 uses "Wait"); None bans only.

    Example:
        >>> BudgetConfig(min=100, max=4000, word="Wait").enabled
        True
    """

    min: int = 0
    max: int | None = None
    word: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "min", parse_count(self.min, "budget_min"))
        object.__setattr__(self, "max", parse_optional_count(self.max, "budget_max"))
        object.__setattr__(self, "word", parse_word(self.word))
        if self.max is not None and self.min > self.max:
            raise bad_value("budget_min", self.min, f"has to be at most `budget_max` ({self.max})")

    @property
    def enabled(self) -> bool:
        return self.min > 0 or self.max is not None

    def to_mapping(self) -> dict[str, Any]:
        return {"budget_min": self.min, "budget_max": -1 if self.max is None else self.max, "budget_word": self.word or ""}


class BudgetRule(Rule):
    name = "budget"
    scope = "think"

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        (word,) = structure  # type: ignore[misc]
        # The plan has checked that the markers exist (INTERVENTION.needs_think_markers).
        self.end_id = int(info.markers.end_id)  # type: ignore[arg-type]
        self.eos_ids = tuple(i for i in info.eos_ids if i != self.end_id)
        self.word = word
        # The forced word is user text: encoded as the tokenizer's own file does (TokenizerInfo.encode).
        self.word_ids: tuple[int, ...] = () if word is None else info.ordinary_ids(word, "budget_word")
        self.needs_pending = word is not None
        self.token_ids = tuple(dict.fromkeys((self.end_id, *self.eos_ids, *self.word_ids)))

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> BudgetTables:
        return BudgetTables(self, layout, width, tables)


class BudgetTables(RuleTables):
    def __init__(self, rule: BudgetRule, layout: Layout, width: int, tables: TableBuilder) -> None:
        self.rule = rule
        self.layout = layout
        if any(i >= width for i in rule.token_ids):
            raise ValueError(f"`budget`: the think end marker or the word lies outside the logits width {width}")
        self.token_ids = rule.token_ids
        column = {token: i for i, token in enumerate(self.token_ids)}
        self.end_column = column[rule.end_id]
        banned = {column[rule.end_id], *(column[i] for i in rule.eos_ids)}
        self.ban = tables.bools([c in banned for c in range(len(self.token_ids))])
        self.stop_ids = tables.ints([rule.end_id, *rule.eos_ids])
        self.word_length = len(rule.word_ids)
        self.reads_logits = bool(self.word_length)  # the argmax of the whole row decides the word
        self.MIN = layout.add_int("budget.min")
        self.MAX = layout.add_int("budget.max", default=-1)
        # The word, forced one token per step (forcing.py); its start is decided in apply (from the
        # logits) and confirmed by the next token, so the index forced is recorded for that position.
        self.word = ForcedText(layout, tables, "budget.word", rule.word_ids, [column[i] for i in rule.word_ids]) if self.word_length else None
        self.PENDING_INDEX = layout.add_int("budget.pending_index", default=-1) if self.word_length else None

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        return {self.MIN: config.min, self.MAX: -1 if config.max is None else config.max}, {}

    def advance(self, step: AdvanceStep) -> None:
        if self.word is None:
            return
        ops = step.ops
        forced = ops.where(step.pending, step.ints[:, self.PENDING_INDEX], -1)
        step.out_ints[:, self.word.NEXT] = self.word.following(ops, forced, step.tokens)

    def thinking_length(self, ints: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        return ints[:, layout.POSITION] - ints[:, layout.REASONING_START] + ints[:, layout.PROMPT_THINK]

    def contribute(self, step: ApplyStep) -> None:
        ops, ints = step.ops, step.ints
        thinking = step.active & step.reasoning
        length = self.thinking_length(ints)
        limit = ints[:, self.MAX]
        at_max = thinking & (limit >= 0) & (length >= limit)
        below_min = thinking & (length < ints[:, self.MIN]) & ~at_max
        if self.word is not None:
            continuing = thinking & self.word.under_way(ints) & ~at_max
            below_min = below_min & ~continuing
            top = ops.argmax(step.logits())
            wants_to_stop = ops.any(top[:, None] == ops.table(self.stop_ids)[None, :], 1)
            starting = below_min & wants_to_stop
            index = ops.where(continuing, ints[:, self.word.NEXT], ops.where(starting, 0, -1))
            forced = ops.where(at_max, self.end_column, self.word.position(ops, index))
            step.write_int(self.layout.PENDING_AT, step.position)
            step.write_int(self.PENDING_INDEX, index)
            banned = below_min & ~starting
        else:
            forced = ops.where(at_max, self.end_column, -1)
            banned = below_min
        values = ops.where(banned[:, None] & ops.table(self.ban)[None, :], -math.inf, -0.0)
        self.bias_into(step, ops.floats(values))
        # `forced` indexes this rule's ids; the plan forces by its own column order.
        step.force(ops.where(forced >= 0, ops.table(self.index)[ops.clip(forced, 0, len(self.token_ids) - 1)], -1))

    def replay(self, config: Any, generated: Sequence[int], trace: PhaseTrace, ints: list[int], floats: list[float]) -> None:
        # A word being forced when the request was preempted is not resumed: whether its first
        # token was forced or sampled is not in the token history.
        if self.word is not None:
            ints[self.word.NEXT] = -1


def _structure(config: BudgetConfig) -> Hashable:
    return (config.word,)


INTERVENTION = Intervention(
    name="budget",
    title="thinking-length budget with s1 budget forcing (Muennighoff et al., arXiv 2501.19393)",
    config_type=BudgetConfig,
    keys={
        "budget_min": Key("min", parse_count),
        "budget_max": Key("max", parse_optional_count),
        "budget_word": Key("word", parse_word),
    },
    paper=BudgetConfig(),
    structure=_structure,
    rule=BudgetRule,
    order=90,  # bans and forces: last, so that its forcing is the plan's last word
    needs_think_markers=("budget_min", "budget_max"),
    needs="`budget_min` > 0 or `budget_max`",
    example="min=200,max=4000",
)
