"""`tip`: the thought-switching penalty (Wang et al., arXiv 2501.18585), as the intervention family runs it.

While reasoning is open and the current thought is younger than `beta` tokens, `alpha` is
subtracted from the logits of the switch vocabulary (single-token hits, and multi-token completions
whose prefix was just generated at a word start). The rules are section 1-3 of the behaviour
contract and docs/penalty.md; `SwitchTables` is the switch vocabulary as device tensors, shared with
`gated`.

Columns: PSI (start of the current thought), BETA, RECOGNIZER (the switch automaton's state, see
automaton.py) (ints); ALPHA (float).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tip_decode.core.config import MAX_COMMAND_LINE_BETA, TIPConfig, parse_alpha, parse_beta, parse_scope, parse_triggers
from tip_decode.core.interventions.automaton import build_automaton
from tip_decode.core.interventions.base import (
    REASONING,
    AdvanceStep,
    ApplyStep,
    Layout,
    PhaseTrace,
    Rule,
    RuleTables,
    TokenizerInfo,
)
from tip_decode.core.interventions.registry import Intervention, Key
from tip_decode.core.recognizer import SwitchRecognizer
from tip_decode.core.vocabulary import MultiTokenTrigger, SwitchVocabulary

if TYPE_CHECKING:
    import torch

    from tip_decode.core.interventions.arrays import ArrayOps, TableBuilder


class SwitchTables:
    """The switch vocabulary as device tensors for logits of width `width`: the recognizer's automaton.

    Each row's recognizer state is one int (`automaton.py`): a token moves it with two table
    lookups and tells where the switch it completes starts; the state tells which columns are
    penalisable for the next token.
    """

    def __init__(self, vocabulary: SwitchVocabulary, width: int, tables: TableBuilder) -> None:
        self.vocabulary = vocabulary
        self.width = width
        self.device = tables.device
        ids = [i for i in vocabulary.penalised_ids if i < width]
        self.ids = tuple(ids)
        self.columns = tables.ints(ids)
        patterns = [m for m in vocabulary.multi_token if m.completion < width and max(m.prefix) < width]
        self.patterns: tuple[MultiTokenTrigger, ...] = tuple(patterns)
        self.num_patterns = len(patterns)
        hits = [i for i in vocabulary.token_ids if i < width]
        self.automaton = automaton = build_automaton(hits, patterns, ids, vocabulary.ends_word, width)
        states = automaton.states
        # Tables flattened class-major, with each token's class premultiplied by the number of
        # states: a step adds the row's state to its token's entry and reads both tables there.
        self.class_offset = tables.array(automaton.class_of * states)
        self.next_state = tables.array(np.ascontiguousarray(automaton.next_state.T).reshape(-1))
        self.switch_back = tables.array(np.ascontiguousarray(automaton.switch_back.T).reshape(-1))
        # One more row, all false: where rows outside the penalty's window look (see `penalised`).
        self.inactive = states
        self.active = tables.array(np.concatenate((automaton.active_columns, np.zeros((1, len(ids)), dtype=bool))))

    def step(self, states: torch.Tensor, tokens: torch.Tensor, position: torch.Tensor, ops: ArrayOps) -> tuple[torch.Tensor, torch.Tensor]:
        """(each row's next state, where the switch completed by `tokens` starts or -1)."""
        flat = ops.table(self.class_offset)[ops.clip(tokens, -1, self.width - 1) + 1] + states
        back = ops.table(self.switch_back)[flat]
        return ops.table(self.next_state)[flat], ops.where(back >= 0, position - back, -1)

    def active_columns(self, states: torch.Tensor, ops: ArrayOps) -> torch.Tensor:
        """(rows, columns): which switch columns are penalisable for the next token."""
        return ops.table(self.active)[states]


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


class TipRule(Rule):
    name = "tip"

    def __init__(self, structure: Hashable, info: TokenizerInfo, namespace: str = "tip") -> None:
        triggers, scope = structure  # type: ignore[misc]
        self.vocabulary, self.scope = switch_vocabulary(info, triggers, scope, namespace)

    @classmethod
    def from_vocabulary(cls, vocabulary: SwitchVocabulary, scope: str) -> TipRule:
        """A rule over an already built vocabulary and resolved scope (the TIP-only front)."""
        rule = cls.__new__(cls)
        rule.vocabulary, rule.scope = vocabulary, scope
        return rule

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> TipTables:
        return TipTables(self, layout, SwitchTables(self.vocabulary, width, tables))


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
        self.RECOGNIZER = layout.add_int(f"{prefix}.recognizer")  # the automaton's state (0: start)
        self.ALPHA = layout.add_float(f"{prefix}.alpha")

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        return {self.BETA: int(config.beta)}, {self.ALPHA: float(config.alpha)}

    def advance_switches(self, step: AdvanceStep) -> torch.Tensor:
        """Move psi and the recognizer past one token; returns where a switch was recognised."""
        ops, position = step.ops, step.position
        recognizer, switch_at = self.switch.step(step.ints[:, self.RECOGNIZER], step.tokens, position, ops)
        switched = switch_at >= 0
        if self.think:
            switched = switched & step.reasoning
        psi = ops.where(switched, switch_at, step.ints[:, self.PSI])
        if self.think:
            psi = ops.where(step.opens, position + 1, psi)
        step.out_ints[:, self.PSI] = psi
        step.out_ints[:, self.RECOGNIZER] = recognizer
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

    def penalised(self, ints: torch.Tensor, ops: ArrayOps, gate: torch.Tensor | None = None) -> torch.Tensor:
        """(rows, columns) bool: the penalty acts on this column for the next token."""
        window = self.in_window(ints)
        if gate is not None:
            window = window & gate
        # A row outside the window reads the table's all-false row: a choice per row instead of a
        # (rows, columns) mask.
        return self.switch.active_columns(ops.where(window, ints[:, self.RECOGNIZER], self.switch.inactive), ops)

    def bias(self, ints: torch.Tensor, alpha: torch.Tensor, ops: ArrayOps, gate: torch.Tensor | None = None) -> torch.Tensor:
        """(rows, columns): -alpha where the penalty acts on the next token, -0.0 (adds nothing, bit
        for bit) elsewhere. A where, not a product: alpha may be inf and inf * 0 would be NaN."""
        return ops.where(self.penalised(ints, ops, gate), -alpha[:, None], -0.0)

    def contribute(self, step: ApplyStep) -> None:
        if self.token_ids:
            self.bias_into(step, self.bias(step.ints, step.floats[:, self.ALPHA], step.ops))

    def replay(self, config: Any, generated: Sequence[int], trace: PhaseTrace, ints: list[int], floats: list[float]) -> None:
        recognizer = SwitchRecognizer(self.rule.vocabulary, self.rule.scope, trace.prompt_open)
        recognizer.feed(int(t) for t in generated)
        ints[self.PSI] = recognizer.thought_start
        ints[self.RECOGNIZER] = self.switch.automaton.run(generated)


def _finite(config: TIPConfig) -> bool:
    return math.isfinite(config.alpha)


def _structure(config: TIPConfig) -> Hashable:
    return (config.triggers, config.scope)


INTERVENTION = Intervention(
    name="tip",
    title="thought-switching penalty (Wang et al., arXiv 2501.18585)",
    config_type=TIPConfig,
    keys={
        "tip_alpha": Key("alpha", parse_alpha),
        "tip_beta": Key("beta", parse_beta, command_line_max=MAX_COMMAND_LINE_BETA),
        "tip_triggers": Key("triggers", parse_triggers),
        "tip_scope": Key("scope", parse_scope),
    },
    paper=TIPConfig(),
    structure=_structure,
    rule=TipRule,
    finite=_finite,  # subtracts alpha; alpha = inf is a ban
    order=10,
    bare_key=False,
    switch_keys=("tip_alpha",),  # only tip_alpha turns TIP on, as it always did
)
