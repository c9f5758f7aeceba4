"""TIP alone as batched tensor operations, for the tests: `PenaltyTables` / `PenaltyState`.

A thin TIP-only front of the library's one generic state (`tip_decode.core.interventions`): the
tensor rules live once, in `core/interventions/tip.py`. The adapters moved onto the generic state and
this front left the package; the TIP state tests (tests/test_penalty.py, tests/test_analysis.py) keep
reading the state through it (alpha and beta given as tensors, `ints` with `position` / `psi` /
`phase` / `beta` / `recognizer` views, `advance` / `amount` as pure functions of packed rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tip_decode.core.interventions.base import NO_MARKER
from tip_decode.core.interventions.plan import InterventionPlan, PlanTables
from tip_decode.core.interventions.state import InterventionState
from tip_decode.core.interventions.tip import SwitchTables, TipRule, TipTables
from tip_decode.core.vocabulary import SwitchVocabulary, ThinkMarkers


def subtract_penalty(logits: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """`logits - amount`, except that an infinite amount (alpha = inf, a ban) gives -inf whatever the
    logit is: `+inf - inf` would be NaN, and a ban must win over a logit another processor forced up.
    A zero amount leaves the logit bit for bit as it was."""
    return torch.where(torch.isposinf(amount), -math.inf, logits - amount)


@dataclass(frozen=True)
class StateSnapshot:
    """A copy of a `PenaltyState`'s per-row tensors (opaque: made by `snapshot`, read by `restore`)."""

    tensors: tuple[torch.Tensor, ...]


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as integers (floats by their bit pattern), for exact comparisons."""
    if tensor.is_floating_point():
        return tensor.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()])
    return tensor


class PenaltyTables:
    """Device-side lookup tables of one switch vocabulary and scope, for logits of width `width`."""

    def __init__(self, vocabulary: SwitchVocabulary, scope: str, width: int, device: torch.device | str) -> None:
        self.vocabulary = vocabulary
        self.scope = vocabulary.resolve_scope(scope)
        self.width = width
        self.device = torch.device(device)
        # Scope "all" ignores think markers altogether: reasoning starts at 0 and never ends.
        markers = vocabulary.think if self.scope == "think" else ThinkMarkers()
        rule = TipRule.from_vocabulary(vocabulary, self.scope)
        plan = InterventionPlan(markers, (("tip", (vocabulary.triggers, self.scope)),), [rule])
        self.plan_tables: PlanTables = plan.tables(width, self.device)
        self.tip: TipTables = self.plan_tables.rules[0]  # type: ignore[assignment]
        self.switch: SwitchTables = self.tip.switch
        self.columns = self.switch.columns
        self.think_start = self.plan_tables.think_start
        self.think_end = self.plan_tables.think_end

    def __getattr__(self, name: str) -> Any:
        # ids, columns, patterns, num_patterns, automaton, ...
        if name in ("switch", "tip", "plan_tables"):
            raise AttributeError(name)
        return getattr(self.switch, name)


@dataclass(frozen=True)
class _TipSettings:
    alpha: float
    beta: int


@dataclass(frozen=True)
class _Settings:
    tip: _TipSettings


class PenaltyState:
    """Per-row TIP state for up to `capacity` rows, updated one token per row per step.

    Rows are independent: each has its own alpha and beta (0 turns a row off), its own reasoning
    phase and its own thought start. Backends call `start_rows` when a sequence begins (or
    `replay_row` to rebuild from tokens already generated), `update` with each step's new tokens,
    and `apply` to subtract the penalty from the logits.

    All integer state lives in one (capacity, fields) tensor, so that reordering rows, copying a
    row or taking a snapshot is a single operation; `position`, `psi`, `phase`, `beta` and
    `recognizer` are column views of it.
    """

    def __init__(self, tables: PenaltyTables, capacity: int) -> None:
        self.tables = tables
        self.capacity = capacity
        self.generic = InterventionState(tables.plan_tables, capacity)
        self._tip = tables.tip
        self._layout = tables.plan_tables.layout

    @property
    def ints(self) -> torch.Tensor:
        return self.generic.ints

    @property
    def alpha(self) -> torch.Tensor:
        return self.generic.floats[:, self._tip.ALPHA]

    @property
    def position(self) -> torch.Tensor:
        return self.ints[:, self._layout.POSITION]

    @property
    def psi(self) -> torch.Tensor:
        return self.ints[:, self._tip.PSI]

    @property
    def phase(self) -> torch.Tensor:
        return self.ints[:, self._layout.PHASE]

    @property
    def beta(self) -> torch.Tensor:
        return self.ints[:, self._tip.BETA]

    @property
    def recognizer(self) -> torch.Tensor:
        return self.ints[:, self._tip.RECOGNIZER]

    # ----- row lifecycle (called when the batch changes, not every step) -----

    def start_rows(self, rows: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, prompt_open: torch.Tensor) -> None:
        """Begin fresh sequences in `rows` (nothing generated yet)."""
        ints, floats = self.generic.fresh(len(rows))
        ints[:, self._tip.BETA] = beta.to(ints.device, torch.long)
        floats[:, self._tip.ALPHA] = alpha.to(floats.device, torch.float32)
        self.generic.start_rows_from(rows, ints, floats, prompt_open)

    def replay_row(self, row: int, alpha: float, beta: int, prompt_open: bool, generated: Sequence[int]) -> None:
        """Set `row` to the state after `generated` (a request resumed with output already present)."""
        self.generic.replay_row(row, _Settings(_TipSettings(float(alpha), int(beta))), prompt_open, 0, generated)  # type: ignore[arg-type]

    def stop_rows(self, rows: torch.Tensor) -> None:
        """Turn rows off (their logits are left unchanged by `apply`)."""
        self.generic.stop_rows(rows)
        self.generic.floats[rows, self._tip.ALPHA] = 0.0

    def select(self, order: torch.Tensor) -> None:
        """Reorder rows: row i takes the state of row `order[i]` (beam search, vLLM moves)."""
        self.generic.select(order)

    def copy_rows(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        self.generic.copy_rows(src, dst)

    def _row_tensors(self) -> tuple[torch.Tensor, ...]:
        """Every tensor that holds per-row state; snapshots copy exactly these."""
        return (self.generic.ints, self.generic.floats)

    def snapshot(self) -> StateSnapshot:
        """A copy of every row's state, for `restore` and `matches` (device copies, no host sync)."""
        return StateSnapshot(tuple(t.clone() for t in self._row_tensors()))

    def restore(self, snapshot: StateSnapshot) -> None:
        """Put every row back to `snapshot`, in place (the tensors keep their storage, so a
        captured CUDA graph that reads them stays valid)."""
        for tensor, saved in zip(self._row_tensors(), snapshot.tensors, strict=True):
            tensor.copy_(saved)

    def matches(self, snapshot: StateSnapshot) -> torch.Tensor:
        """A 0-dim bool tensor on the state's device: every row equals `snapshot` bit for bit.

        Stays on the device (no host sync); floats are compared by their bits, so -0.0 and 0.0
        differ and inf equals inf.
        """
        same = torch.ones((), dtype=torch.bool, device=self.ints.device)
        for tensor, saved in zip(self._row_tensors(), snapshot.tensors, strict=True):
            same = same & _bits(tensor).eq(_bits(saved)).all()
        return same

    # ----- per step -----

    def update(self, tokens: torch.Tensor, rows: torch.Tensor | slice | None = None) -> None:
        """Advance `rows` (default: the first `len(tokens)` rows) by one generated token each."""
        self.generic.update(tokens, rows)

    def advance(self, ints: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The packed state after one more token per row (pure: returns a new tensor)."""
        return self.tables.plan_tables.advance(ints, None, tokens)[0]

    def penalty(self, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
        """(rows, columns) amounts to subtract at `tables.columns` for the next token."""
        if rows is None:
            rows = slice(None)
        return self.amount(self.ints[rows], self.alpha[rows])

    def amount(self, ints: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
        """Penalty per (row, column) for packed state `ints` (pure)."""
        return self._tip.amount(ints, alpha)

    def apply(self, scores: torch.Tensor, rows: torch.Tensor | slice | None = None, inplace: bool = False) -> torch.Tensor:
        """Subtract the penalty from `scores` (rows of `scores` are `rows` of the state).

        A zero penalty leaves a logit bit for bit as it was, and the penalty is never negative, so
        no logit is raised.
        """
        out = scores if inplace else scores.clone()
        return self.generic.apply(out, rows)


__all__ = ["NO_MARKER", "PenaltyState", "PenaltyTables", "StateSnapshot", "subtract_penalty"]
