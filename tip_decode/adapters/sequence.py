"""Following sequences from the whole token history an engine passes on every call.

llama-cpp-python's `LogitsProcessorList` and mlx-lm's `logits_processors` call a processor with
`(tokens, logits)` only: the tokens are the sequence so far (prompt and generated), and nothing says
whether this call continues the previous one, starts a new generation, rolls back (mlx-lm's
speculative decoding) or, for one processor shared by the rows of an mlx-lm batch, which row it is.
`SequenceFollower` works that out from the tokens and keeps one `InterventionState` row per sequence:

- a call with one token more than a followed sequence, whose previous tokens end like that
  sequence's (the last `TAIL` tokens are compared, O(1) in the length; the whole histories only
  when several sequences end alike), continues it: the sequence advances by its newest token;
- a call whose tokens are a followed sequence's first n - 1 tokens plus one (a rejected draft) goes
  back to the state that sequence had after n - 1 tokens (kept for the last `rollback_depth` lengths);
- anything else starts a new sequence whose prompt is the tokens given.

Like the Hugging Face processor (docs/hf.md), a new generation whose prompt is the previous
sequence plus exactly one token is taken as its continuation. Sequences not called for a while
(twice as many calls as there are sequences, plus two) are dropped.

Prompt facts come from the core's request tracker (`tip_decode.core.tracker.prompt_facts`); what
stays here is how these engines' calls tell sequences apart (continuation, rollback, new prompt),
which no other engine needs. The llama.cpp and MLX adapters use only `SequenceFollower.observe`
and the returned `FollowedSequence`'s `state` and `finite`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tip_decode.core.interventions import InterventionPlan, InterventionSet, InterventionState, PlanTables
from tip_decode.core.tracker import prompt_facts

#: Tokens compared at the end of a history to recognise the sequence it continues.
TAIL = 32
#: Lengths a sequence can roll back to (mlx-lm drafts at most a few tokens per round).
ROLLBACK_DEPTH = 64


class FollowedSequence:
    """One sequence: its tokens so far (on the host) and its row of the interventions' state."""

    def __init__(self, tables: PlanTables, fresh: np.ndarray, settings: InterventionSet, prompt: np.ndarray, finite: bool) -> None:
        #: The per-row state (one row) the adapter applies to the logits.
        self.state = InterventionState(tables, 1)
        #: No bias of the settings is ever -inf (the logits write may add in one pass).
        self.finite = finite
        opened, thinking = prompt_facts(tables.think_start, tables.think_end, prompt)
        self.state.start_rows([0], [settings], [opened], [thinking], values=[fresh])
        self.prompt_length = self.length = len(prompt)
        self._tokens = np.empty(max(64, 2 * len(prompt)), dtype=np.int64)
        self._tokens[: len(prompt)] = prompt
        self._snapshots: dict[int, Any] = {}
        self.last_call = 0

    def tail_matches(self, history: np.ndarray, length: int) -> bool:
        """The last `TAIL` of this sequence's first `length` tokens equal the history's."""
        start = max(0, length - TAIL)
        return bool(np.array_equal(self._tokens[start:length], history[start:length]))

    def starts(self, history: np.ndarray, length: int) -> bool:
        """This sequence's first `length` tokens equal the history's (O(length))."""
        return bool(np.array_equal(self._tokens[:length], history[:length]))

    def advance(self, token: int) -> None:
        if self.length >= len(self._tokens):
            self._tokens = np.concatenate((self._tokens, np.empty_like(self._tokens)))
        self._tokens[self.length] = token
        self.length += 1
        self.state.update(np.array([token], dtype=np.int64))

    def can_roll_back_to(self, length: int) -> bool:
        return self.prompt_length <= length < self.length and length in self._snapshots

    def roll_back_to(self, length: int) -> None:
        """Back to the state after the call that saw `length` tokens (its logits write included)."""
        self.state.restore(self._snapshots[length])
        self.length = length
        for key in [k for k in self._snapshots if k > length]:
            del self._snapshots[key]

    def keep_snapshot(self, depth: int) -> None:
        """Remember the state after this call (after its logits write) for a later rollback."""
        self._snapshots[self.length] = self.state.snapshot()
        self._snapshots.pop(self.length - depth, None)


class SequenceFollower:
    """The sequences one processor serves, recognised from each call's tokens (see the module doc).

    Args:
        plan: the settings' plan for the tokenizer (`plan_for`).
        settings: the interventions every sequence gets.
        rollback_depth: lengths each sequence can go back to (0: never roll back; llama.cpp).
    """

    def __init__(self, plan: InterventionPlan, settings: InterventionSet, rollback_depth: int = ROLLBACK_DEPTH) -> None:
        self.plan = plan
        self.settings = settings
        self.rollback_depth = rollback_depth
        self.finite = settings.only_finite
        self.sequences: list[FollowedSequence] = []
        self._tables: PlanTables | None = None
        self._fresh: np.ndarray | None = None
        self._calls = 0

    def reset(self) -> None:
        """Forget every sequence; the next call starts a new one."""
        self.sequences = []

    def observe(self, history: np.ndarray, width: int) -> FollowedSequence:
        """The sequence `history` (1-D integer array, prompt and generated tokens) belongs to, brought
        up to date: advanced by the newest token, rolled back, or started from `history` as prompt."""
        self._calls += 1
        tables = self._tables_for(width)
        n = len(history)
        sequence = self._continued(history, n)
        if sequence is not None:
            sequence.advance(int(history[n - 1]))
        else:
            sequence = self._rolled_back(history, n)
            if sequence is None:
                sequence = FollowedSequence(tables, self._fresh, self.settings, np.asarray(history, dtype=np.int64), self.finite)
                self.sequences.append(sequence)
        sequence.last_call = self._calls
        self._evict()
        return sequence

    def after_apply(self, sequence: FollowedSequence) -> None:
        """Called once the logits are written: keeps the rollback snapshot when rollbacks are on."""
        if self.rollback_depth:
            sequence.keep_snapshot(self.rollback_depth)

    def _tables_for(self, width: int) -> PlanTables:
        if self._tables is None or self._tables.width != width:
            self.sequences = []
            self._tables = self.plan.tables(width, "cpu")
            self._fresh = InterventionState(self._tables, 1).fresh_row(self.settings)
        return self._tables

    def _continued(self, history: np.ndarray, n: int) -> FollowedSequence | None:
        found = [s for s in self.sequences if s.length == n - 1 and s.tail_matches(history, n - 1)]
        if len(found) > 1:  # several end alike: only the whole history tells them apart
            found = [s for s in found if s.starts(history, n - 1)]
        return found[0] if found else None

    def _rolled_back(self, history: np.ndarray, n: int) -> FollowedSequence | None:
        if not self.rollback_depth:
            return None
        for sequence in self.sequences:
            if sequence.can_roll_back_to(n - 1) and sequence.starts(history, n - 1):
                sequence.roll_back_to(n - 1)
                sequence.advance(int(history[n - 1]))
                return sequence
        return None

    def _evict(self) -> None:
        horizon = self._calls - 2 * len(self.sequences) - 2
        if any(s.last_call < horizon for s in self.sequences):
            self.sequences = [s for s in self.sequences if s.last_call >= horizon]


def interventions_from(settings: Any) -> InterventionSet:
    """An `InterventionSet` from an `InterventionSet`, a mapping of flat keys, or None (nothing on)."""
    if settings is None:
        return InterventionSet()
    if isinstance(settings, InterventionSet):
        return settings
    if isinstance(settings, Mapping):
        return InterventionSet.from_mapping(settings)
    raise TypeError(
        f'`settings` has to be an InterventionSet or a mapping of flat keys such as {{"tip_alpha": 3.0, "budget_min": 200}}, but is {type(settings).__name__}'
    )


def as_host(values: Any) -> np.ndarray | None:
    """A step's bias or forcing (numpy in the host engine, a CPU tensor otherwise) as numpy."""
    if values is None or isinstance(values, np.ndarray):
        return values
    return values.numpy()
