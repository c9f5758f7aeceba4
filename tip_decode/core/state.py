"""The penalty as batched tensor operations: per-row state and the logits write.

`PenaltyTables` turns a `SwitchVocabulary` into device tensors once; `PenaltyState` holds, for a
fixed number of rows, everything the penalty of the next step depends on (tokens generated so far,
psi, the reasoning phase, a short tail of tokens, which multi-token prefixes are armed) and updates
it in O(1) per step: nothing here looks at the whole history, and nothing reads a tensor back to
the host. Backends (HF, vLLM) only decide which rows receive which token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tip_decode.core.recognizer import ENDED, REASONING, WAITING, SwitchRecognizer
from tip_decode.core.vocabulary import SwitchVocabulary

_NO_TOKEN = -1
_NO_MARKER = -2  # never equal to a real token nor to the empty-tail filler
# Columns of the packed integer state; the tail and the armed flags follow.
_POSITION, _PSI, _PHASE, _BETA = 0, 1, 2, 3


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
    """Device-side lookup tables of one switch vocabulary, for logits of width `width`."""

    def __init__(self, vocabulary: SwitchVocabulary, scope: str, width: int, device: torch.device | str) -> None:
        self.vocabulary = vocabulary
        self.scope = vocabulary.resolve_scope(scope)
        self.width = width
        self.device = torch.device(device)
        ids = [i for i in vocabulary.penalised_ids if i < width]
        hits = set(vocabulary.token_ids)
        self.columns = torch.tensor(ids, dtype=torch.long, device=self.device)
        self.column_is_hit = torch.tensor([i in hits for i in ids], dtype=torch.bool, device=self.device)
        self.is_hit = torch.zeros(width, dtype=torch.bool, device=self.device)
        self.is_hit[[i for i in vocabulary.token_ids if i < width]] = True
        # Ids past the tokenizer's vocabulary (padding rows of the output layer) end a word: they
        # decode to nothing.
        ends_word = torch.ones(width, dtype=torch.bool)
        known = min(width, len(vocabulary.ends_word))
        ends_word[:known] = torch.from_numpy(vocabulary.ends_word[:known].copy())
        self.ends_word = ends_word.to(self.device)

        patterns = [m for m in vocabulary.multi_token if m.completion < width and max(m.prefix) < width]
        self.prefix_width = max((len(m.prefix) for m in patterns), default=0)
        k = self.prefix_width
        # Prefixes are right-aligned so that a pattern compares against the newest tokens of the tail.
        prefixes = torch.full((len(patterns), k), _NO_TOKEN, dtype=torch.long)
        for row, m in enumerate(patterns):
            prefixes[row, k - len(m.prefix) :] = torch.tensor(m.prefix)
        self.prefixes = prefixes.to(self.device)
        self.prefix_mask = self.prefixes != _NO_TOKEN
        self.prefix_len = torch.tensor([len(m.prefix) for m in patterns], dtype=torch.long, device=self.device)
        # Index in the tail (prefix_width + 1 newest tokens) of the token just before each prefix.
        self.before_index = k - self.prefix_len
        self.prefix_space = torch.tensor([m.prefix_starts_with_space for m in patterns], dtype=torch.bool, device=self.device)
        self.completion = torch.tensor([m.completion for m in patterns], dtype=torch.long, device=self.device)
        column_of = {c: i for i, c in enumerate(ids)}
        to_column = torch.zeros((len(patterns), len(ids)), dtype=torch.float32)
        for row, m in enumerate(patterns):
            to_column[row, column_of[m.completion]] = 1.0
        self.pattern_to_column = to_column.to(self.device)
        self.num_patterns = len(patterns)
        think = vocabulary.think
        use_markers = self.scope == "think"
        self.think_start = think.start_id if use_markers and think.start_id is not None else _NO_MARKER
        self.think_end = think.end_id if use_markers and think.end_id is not None else _NO_MARKER


class PenaltyState:
    """Per-row TIP state for up to `capacity` rows, updated one token per row per step.

    Rows are independent: each has its own alpha and beta (0 turns a row off), its own reasoning
    phase and its own thought start. Backends call `start_rows` when a sequence begins (or
    `replay_row` to rebuild from tokens already generated), `update` with each step's new tokens,
    and `apply` to subtract the penalty from the logits.

    All integer state lives in one (capacity, fields) tensor, so that reordering rows, copying a
    row or taking a snapshot is a single operation; `position`, `psi`, `phase`, `beta`, `tail` and
    `armed` are column views of it.
    """

    def __init__(self, tables: PenaltyTables, capacity: int) -> None:
        self.tables = tables
        self.capacity = capacity
        device = tables.device
        self._tail_start = 4
        self._armed_start = self._tail_start + tables.prefix_width + 1
        self.ints = torch.zeros((capacity, self._armed_start + tables.num_patterns), dtype=torch.long, device=device)
        self.ints[:, _PHASE] = ENDED
        self.ints[:, self._tail_start : self._armed_start] = _NO_TOKEN
        self.alpha = torch.zeros(capacity, dtype=torch.float32, device=device)

    @property
    def position(self) -> torch.Tensor:
        return self.ints[:, _POSITION]

    @property
    def psi(self) -> torch.Tensor:
        return self.ints[:, _PSI]

    @property
    def phase(self) -> torch.Tensor:
        return self.ints[:, _PHASE]

    @property
    def beta(self) -> torch.Tensor:
        return self.ints[:, _BETA]

    @property
    def tail(self) -> torch.Tensor:
        return self.ints[:, self._tail_start : self._armed_start]

    @property
    def armed(self) -> torch.Tensor:
        return self.ints[:, self._armed_start :].bool()

    # ----- row lifecycle (called when the batch changes, not every step) -----

    def start_rows(self, rows: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, prompt_open: torch.Tensor) -> None:
        """Begin fresh sequences in `rows` (nothing generated yet)."""
        fresh = torch.zeros((len(rows), self.ints.shape[1]), dtype=torch.long, device=self.ints.device)
        if self.tables.scope == "all":
            fresh[:, _PHASE] = REASONING
        else:
            fresh[:, _PHASE] = torch.where(prompt_open.to(fresh.device), REASONING, WAITING)
        fresh[:, _BETA] = beta.to(fresh.device, torch.long)
        fresh[:, self._tail_start : self._armed_start] = _NO_TOKEN
        self.ints[rows] = fresh
        self.alpha[rows] = alpha.to(self.alpha.device, self.alpha.dtype)

    def replay_row(self, row: int, alpha: float, beta: int, prompt_open: bool, generated: Sequence[int]) -> None:
        """Set `row` to the state after `generated` (a request resumed with output already present).

        Runs on the host through the same recognizer that trace analysis uses; this happens when a
        batch changes (preemption, resumption), never per step.
        """
        recognizer = SwitchRecognizer(self.tables.vocabulary, self.tables.scope, prompt_open)
        recognizer.feed(int(t) for t in generated)
        width = self._armed_start - self._tail_start
        tail = ([_NO_TOKEN] * width + [int(t) for t in generated])[-width:] if width else []
        values = [recognizer.position, recognizer.thought_start, recognizer.phase, int(beta), *tail]
        row_ints = torch.tensor(values + [0] * self.tables.num_patterns, dtype=torch.long, device=self.ints.device)
        row_ints = row_ints[None]
        row_ints[:, self._armed_start :] = self._armed(row_ints[:, self._tail_start : self._armed_start], row_ints[:, _POSITION]).long()
        self.ints[row] = row_ints[0]
        self.alpha[row] = float(alpha)

    def stop_rows(self, rows: torch.Tensor) -> None:
        """Turn rows off (their logits are left unchanged by `apply`)."""
        self.alpha[rows] = 0.0
        self.ints[rows, _PHASE] = ENDED

    def select(self, order: torch.Tensor) -> None:
        """Reorder rows: row i takes the state of row `order[i]` (beam search, vLLM moves)."""
        count = order.shape[0]
        self.ints[:count] = self.ints[order]
        self.alpha[:count] = self.alpha[order]

    def copy_rows(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        self.ints[dst] = self.ints[src]
        self.alpha[dst] = self.alpha[src]

    # ----- whole-state copies (rollbacks, checks of a captured step) -----

    def _row_tensors(self) -> tuple[torch.Tensor, ...]:
        """Every tensor that holds per-row state; snapshots copy exactly these."""
        return (self.ints, self.alpha)

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
        if rows is None:
            rows = slice(0, tokens.shape[0])
        self.ints[rows] = self.advance(self.ints[rows], tokens.to(device=self.tables.device, dtype=torch.long))

    def advance(self, ints: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The packed state after one more token per row (pure: returns a new tensor)."""
        t = self.tables
        position, psi, phase = ints[:, _POSITION], ints[:, _PSI], ints[:, _PHASE]
        reasoning = phase == REASONING
        switch_at = torch.where(t.is_hit[tokens.clamp(0, t.width - 1)] & (tokens >= 0), position, -1)
        if t.num_patterns:
            completed = ints[:, self._armed_start :].bool() & (tokens[:, None] == t.completion[None, :])
            multi_at = torch.where(completed, position[:, None] - t.prefix_len[None, :], -1).amax(dim=1)
            switch_at = torch.maximum(switch_at, multi_at)
        psi = torch.where(reasoning & (switch_at >= 0), switch_at, psi)
        opens = (phase == WAITING) & (tokens == t.think_start)
        closes = reasoning & (tokens == t.think_end)
        psi = torch.where(opens, position + 1, psi)
        phase = torch.where(opens, REASONING, torch.where(closes, ENDED, phase))
        tail = torch.cat((ints[:, self._tail_start + 1 : self._armed_start], tokens[:, None]), dim=1)
        position = position + 1
        parts = [position[:, None], psi[:, None], phase[:, None], ints[:, _BETA : _BETA + 1], tail]
        if t.num_patterns:
            parts.append(self._armed(tail, position).long())
        return torch.cat(parts, dim=1)

    def _armed(self, tail: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """(rows, patterns): the tail ends with the pattern's prefix, and prefix[0] starts a word."""
        t = self.tables
        if not t.num_patterns:
            return torch.zeros((tail.shape[0], 0), dtype=torch.bool, device=tail.device)
        newest = tail[:, 1:]
        same = ((newest[:, None, :] == t.prefixes[None]) | ~t.prefix_mask[None]).all(dim=2)
        before = tail[:, t.before_index]
        first_generated = (position[:, None] - t.prefix_len[None, :]) == 0
        boundary = t.prefix_space[None, :] | first_generated | t.ends_word[before.clamp(0, t.width - 1)]
        return same & boundary

    def penalty(self, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
        """(rows, columns) amounts to subtract at `tables.columns` for the next token."""
        if rows is None:
            rows = slice(None)
        return self.amount(self.ints[rows], self.alpha[rows])

    def amount(self, ints: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
        """Penalty per (row, column) for packed state `ints` (pure)."""
        t = self.tables
        in_window = (ints[:, _PHASE] == REASONING) & (ints[:, _POSITION] < ints[:, _PSI] + ints[:, _BETA])
        row_alpha = torch.where(in_window, alpha, 0.0)
        active = t.column_is_hit[None, :]
        if t.num_patterns:
            active = active | ((ints[:, self._armed_start :].float() @ t.pattern_to_column) > 0)
        # torch.where, not a product: alpha may be inf and inf * 0 would be NaN.
        return torch.where(active, row_alpha[:, None], 0.0)

    def apply(self, scores: torch.Tensor, rows: torch.Tensor | slice | None = None, inplace: bool = False) -> torch.Tensor:
        """Subtract the penalty from `scores` (rows of `scores` are `rows` of the state).

        A zero penalty leaves a logit bit for bit as it was (x - 0.0 == x, -inf stays -inf), and the
        penalty is never negative, so no logit is raised. With alpha = inf a penalised logit becomes
        -inf, also a +inf one (`subtract_penalty`): never NaN.
        """
        if rows is None:
            rows = slice(0, scores.shape[0])
        out = scores if inplace else scores.clone()
        columns = self.tables.columns
        if columns.numel():
            amount = self.penalty(rows).to(out.dtype)
            out[:, columns] = subtract_penalty(out[:, columns], amount)
        return out
