"""`tip`: the thought-switching penalty (Wang et al., arXiv 2501.18585), as the intervention family runs it.

While reasoning is open and the current thought is younger than `beta` tokens, `alpha` is
subtracted from the logits of the switch vocabulary (single-token hits, and multi-token completions
whose prefix was just generated at a word start). The rules are section 1-3 of the behaviour
contract and docs/penalty.md; `SwitchTables` is the switch vocabulary as device tensors, shared with
`gated`.

Columns: PSI (start of the current thought), BETA, one ARMED flag per multi-token pattern (ints);
ALPHA (float).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

from tip_decode.core.config import MAPPING_KEYS, TIPConfig, parse_alpha, parse_beta, parse_scope, parse_triggers
from tip_decode.core.interventions.base import (
    NO_TOKEN,
    REASONING,
    AdvanceStep,
    ApplyStep,
    Kind,
    Layout,
    PhaseTrace,
    Rule,
    RuleTables,
    TokenizerInfo,
)
from tip_decode.core.recognizer import SwitchRecognizer
from tip_decode.core.vocabulary import MultiTokenTrigger, SwitchVocabulary


class SwitchTables:
    """Device-side lookup tables of one switch vocabulary, for logits of width `width`."""

    def __init__(self, vocabulary: SwitchVocabulary, width: int, device: torch.device | str) -> None:
        self.vocabulary = vocabulary
        self.width = width
        self.device = torch.device(device)
        ids = [i for i in vocabulary.penalised_ids if i < width]
        hits = set(vocabulary.token_ids)
        self.ids = tuple(ids)
        self.columns = torch.tensor(ids, dtype=torch.long, device=self.device)
        self.column_is_hit = torch.tensor([i in hits for i in ids], dtype=torch.bool, device=self.device)
        is_hit = torch.zeros(width, dtype=torch.bool)
        is_hit[[i for i in vocabulary.token_ids if i < width]] = True
        self.is_hit = is_hit.to(self.device)
        # Ids past the tokenizer's vocabulary (padding rows of the output layer) end a word: they
        # decode to nothing.
        ends_word = torch.ones(width, dtype=torch.bool)
        known = min(width, len(vocabulary.ends_word))
        ends_word[:known] = torch.from_numpy(vocabulary.ends_word[:known].copy())
        self.ends_word = ends_word.to(self.device)

        patterns = [m for m in vocabulary.multi_token if m.completion < width and max(m.prefix) < width]
        self.patterns: tuple[MultiTokenTrigger, ...] = tuple(patterns)
        self.prefix_width = max((len(m.prefix) for m in patterns), default=0)
        k = self.prefix_width
        # Prefixes are right-aligned so that a pattern compares against the newest tokens of the tail.
        prefixes = torch.full((len(patterns), k), NO_TOKEN, dtype=torch.long)
        for row, m in enumerate(patterns):
            prefixes[row, k - len(m.prefix) :] = torch.tensor(m.prefix)
        self.prefixes = prefixes.to(self.device)
        self.prefix_mask = self.prefixes != NO_TOKEN
        self.prefix_len = torch.tensor([len(m.prefix) for m in patterns], dtype=torch.long, device=self.device)
        # Index in the tail (prefix_width + 1 newest tokens) of the token just before each prefix.
        self.before_index = k - self.prefix_len
        self.prefix_space = torch.tensor([m.prefix_starts_with_space for m in patterns], dtype=torch.bool, device=self.device)
        self.completion = torch.tensor([m.completion for m in patterns], dtype=torch.long, device=self.device)
        column_of = {c: i for i, c in enumerate(ids)}
        # The column of each pattern's completion (several patterns may share one).
        self.pattern_column = torch.tensor([column_of[m.completion] for m in patterns], dtype=torch.long, device=self.device)
        self.column_hit_count = self.column_is_hit.to(torch.long)[None, :]
        self.num_patterns = len(patterns)

    @property
    def tail_width(self) -> int:
        """Newest tokens the multi-token rule looks at: the longest prefix plus the token before it."""
        return self.prefix_width + 1 if self.num_patterns else 0

    def armed(self, tail: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """(rows, patterns): the tail ends with the pattern's prefix, and prefix[0] starts a word.

        `tail` holds at least `tail_width` newest tokens (oldest first); `position` counts the
        tokens generated so far.
        """
        if not self.num_patterns:
            return torch.zeros((tail.shape[0], 0), dtype=torch.bool, device=tail.device)
        own = tail[:, tail.shape[1] - self.tail_width :]
        newest = own[:, 1:]
        same = ((newest[:, None, :] == self.prefixes[None]) | ~self.prefix_mask[None]).all(dim=2)
        before = own[:, self.before_index]
        first_generated = (position[:, None] - self.prefix_len[None, :]) == 0
        boundary = self.prefix_space[None, :] | first_generated | self.ends_word[before.clamp(0, self.width - 1)]
        return same & boundary

    def switch_position(self, tokens: torch.Tensor, safe_tokens: torch.Tensor, position: torch.Tensor, armed: torch.Tensor) -> torch.Tensor:
        """Per row: where the switch completed by `tokens` starts, or -1 (the later start wins)."""
        switch_at = torch.where(self.is_hit[safe_tokens] & (tokens >= 0), position, -1)
        if self.num_patterns:
            completed = armed & (tokens[:, None] == self.completion[None, :])
            multi_at = torch.where(completed, position[:, None] - self.prefix_len[None, :], -1).amax(dim=1)
            switch_at = torch.maximum(switch_at, multi_at)
        return switch_at

    def active_columns(self, armed: torch.Tensor) -> torch.Tensor:
        """(rows, columns): which switch columns are penalisable for the next token.

        `armed` is (rows, patterns) of 0 / 1 (the int state's armed columns as they are, or bools).
        """
        if not self.num_patterns:
            return self.column_is_hit[None, :]
        # Count, over a row of the single-token hits (1) and zeros, the armed patterns per column
        # (an index_add over the few patterns, cheaper than a matrix product at serving batch
        # sizes); a count above zero makes the column penalisable. Three tensor calls in all.
        counts = self.column_hit_count.expand(armed.shape[0], -1).clone()  # (repeat is ten times slower)
        return counts.index_add_(1, self.pattern_column, armed.to(torch.long)).ne(0)


def switch_vocabulary(info: TokenizerInfo, triggers: tuple[str, ...], scope: str, namespace: str) -> tuple[SwitchVocabulary, str]:
    """The switch vocabulary with the plan's think markers, and the resolved scope; errors name the key."""
    try:
        vocab = SwitchVocabulary.from_tokenizer(info.tokenizer, triggers)
    except ValueError as err:
        raise ValueError(f"`{namespace}_triggers`: {err}") from None
    if vocab.think != info.markers:
        vocab = vocab.with_think_markers(info.markers)
    try:
        resolved = vocab.resolve_scope(scope)
    except ValueError as err:
        raise ValueError(f"`{namespace}_scope`: {err}") from None
    return vocab, resolved


def _tail_width(vocabulary: SwitchVocabulary) -> int:
    return max((len(m.prefix) for m in vocabulary.multi_token), default=-1) + 1


class TipRule(Rule):
    name = "tip"

    def __init__(self, structure: Hashable, info: TokenizerInfo, namespace: str = "tip") -> None:
        triggers, scope = structure  # type: ignore[misc]
        self.vocabulary, self.scope = switch_vocabulary(info, triggers, scope, namespace)
        self.tail_width = _tail_width(self.vocabulary)

    @classmethod
    def from_vocabulary(cls, vocabulary: SwitchVocabulary, scope: str) -> TipRule:
        """A rule over an already built vocabulary and resolved scope (the TIP-only front)."""
        rule = cls.__new__(cls)
        rule.vocabulary, rule.scope, rule.tail_width = vocabulary, scope, _tail_width(vocabulary)
        return rule

    def compile(self, layout: Layout, width: int, device: torch.device) -> TipTables:
        return TipTables(self, layout, SwitchTables(self.vocabulary, width, device))


class TipTables(RuleTables):
    """TIP's columns and step functions inside one plan."""

    def __init__(self, rule: TipRule, layout: Layout, switch: SwitchTables, prefix: str = "tip") -> None:
        self.rule = rule
        self.layout = layout
        self.switch = switch
        self.think = rule.scope == "think"
        self.token_ids = switch.ids
        self.PSI = layout.add_int(f"{prefix}.psi")
        self.BETA = layout.add_int(f"{prefix}.beta")
        self.ARMED = layout.add_int(f"{prefix}.armed", width=switch.num_patterns)
        self.ALPHA = layout.add_float(f"{prefix}.alpha")

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        return {self.BETA: int(config.beta)}, {self.ALPHA: float(config.alpha)}

    def armed_flags(self, ints: torch.Tensor) -> torch.Tensor:
        return ints[:, self.ARMED : self.ARMED + self.switch.num_patterns].bool()

    def advance_switches(self, step: AdvanceStep) -> torch.Tensor:
        """Move psi (and the armed flags) past one token; returns where a switch was recognised."""
        switch = self.switch
        position = step.position
        switch_at = switch.switch_position(step.tokens, step.safe_tokens, position, self.armed_flags(step.ints))
        switched = switch_at >= 0
        if self.think:
            switched = switched & step.reasoning
        psi = torch.where(switched, switch_at, step.ints[:, self.PSI])
        if self.think:
            psi = torch.where(step.opens, position + 1, psi)
        step.out_ints[:, self.PSI] = psi
        if switch.num_patterns:
            step.out_ints[:, self.ARMED : self.ARMED + switch.num_patterns] = switch.armed(step.new_tail, position + 1).long()
        return switched

    def advance(self, step: AdvanceStep) -> None:
        self.advance_switches(step)

    def in_window(self, ints: torch.Tensor) -> torch.Tensor:
        layout = self.layout
        window = ints[:, layout.POSITION] < ints[:, self.PSI] + ints[:, self.BETA]
        if self.think:
            # A row that is not active has the phase ENDED (the template, `stop_rows`), so the
            # reasoning test also tells that the row is active.
            return window & (ints[:, layout.PHASE] == REASONING)
        return window & (ints[:, layout.ACTIVE] == 1)

    def amount(self, ints: torch.Tensor, alpha: torch.Tensor | float, gate: torch.Tensor | None = None) -> torch.Tensor:
        """(rows, columns) penalty to subtract for the next token (never negative)."""
        window = self.in_window(ints)
        if gate is not None:
            window = window & gate
        row_alpha = torch.where(window, alpha, 0.0)
        # torch.where, not a product: alpha may be inf and inf * 0 would be NaN.
        switch = self.switch
        armed = ints[:, self.ARMED : self.ARMED + switch.num_patterns]  # 0 / 1 as stored, no conversion
        return torch.where(switch.active_columns(armed), row_alpha[:, None], 0.0)

    def contribute(self, step: ApplyStep) -> None:
        if self.token_ids:
            self.bias_into(step, -self.amount(step.ints, step.floats[:, self.ALPHA]))

    def replay(self, config: Any, generated: Sequence[int], trace: PhaseTrace, ints: list[int], floats: list[float]) -> None:
        recognizer = SwitchRecognizer(self.rule.vocabulary, self.rule.scope, trace.prompt_open)
        recognizer.feed(int(t) for t in generated)
        ints[self.PSI] = recognizer.thought_start

    def after_replay(self, ints: torch.Tensor) -> None:
        """Armed flags of replayed rows, from their tails (the same tensor rule as every step)."""
        if self.switch.num_patterns:
            tail = ints[:, self.layout.tail_slice()]
            ints[:, self.ARMED : self.ARMED + self.switch.num_patterns] = self.switch.armed(tail, ints[:, self.layout.POSITION]).long()


def _tip_rule(structure: Hashable, info: TokenizerInfo) -> TipRule:
    return TipRule(structure, info)


_PARSERS = {"alpha": parse_alpha, "beta": parse_beta, "triggers": parse_triggers, "scope": parse_scope}

KIND = Kind(
    name="tip",
    config_type=TIPConfig,
    keys={key: (name, _PARSERS[name]) for key, name in MAPPING_KEYS.items()},
    paper=TIPConfig(),
    structure=lambda c: (c.triggers, c.scope),
    rule=_tip_rule,
    enabled=lambda c: c.enabled,
    to_mapping=lambda c: c.to_mapping(),
    switch_keys=("tip_alpha",),
    bare_key=False,
)
