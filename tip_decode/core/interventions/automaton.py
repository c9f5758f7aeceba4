"""The switch recognizer as a finite automaton over token classes (host tables, no torch).

`SwitchRecognizer` (core/recognizer.py) reads the tail of generated tokens to tell whether a token
completes a switch: a single-token hit, or a multi-token completion whose prefix was just generated
with `prefix[0]` starting a word. Only a bounded amount of the past matters for that decision: which
multi-token prefixes are partly matched right now (each with the word-start test already passed),
and whether the newest token ends a word (so that a prefix could start at the next one). This
module enumerates those situations as the states of a deterministic automaton, so that the tensor
step follows one state number per row with two table lookups instead of comparing a window of
tokens against every pattern (section 2 of the behaviour contract, docs/penalty.md):

    state' = next_state[state, class_of(token)]
    back   = switch_back[state, class_of(token)]     # -1, or how many tokens before this one the
                                                     # switch it completes starts
    active = active_columns[state']                  # the columns penalisable for the next token

Tokens that appear in no prefix, completion or hit only matter through "does it end a word", so
they fall into two classes; each token that does appear gets its own class. The automaton is exact:
tests run it against `SwitchRecognizer` on every shared tokenizer (tests/test_penalty.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tip_decode.core.vocabulary import MultiTokenTrigger

#: Class of tokens outside every table that do not end a word, that do, and of negative ids
#: (never a real token; treated like an id past the vocabulary, which ends a word).
OTHER_INSIDE, OTHER_ENDS_WORD, NEGATIVE = 0, 1, 2


@dataclass(frozen=True)
class SwitchAutomaton:
    """Host tables of the automaton (numpy); `SwitchTables` moves them to the device.

    `class_of[token + 1]` is the class of `token` for tokens in [-1, width) (index 0: negative ids).
    State 0 is the start of a generation (a prefix may begin at the first generated token).
    """

    class_of: np.ndarray  # (width + 1,) int64
    next_state: np.ndarray  # (states, classes) int64
    switch_back: np.ndarray  # (states, classes) int64, -1 where the token completes no switch
    active_columns: np.ndarray  # (states, columns) bool, for the columns of `ids`
    ids: tuple[int, ...]  # penalised ids, in column order

    @property
    def states(self) -> int:
        return self.next_state.shape[0]

    @property
    def classes(self) -> int:
        return self.next_state.shape[1]

    def run(self, tokens: Iterable[int], state: int = 0) -> int:
        """The state after `tokens` (host replay of a resumed row)."""
        width = self.class_of.shape[0] - 1
        class_of, next_state = self.class_of, self.next_state
        for token in tokens:
            state = int(next_state[state, class_of[min(max(int(token), -1), width - 1) + 1]])
        return state


def build_automaton(hits: Sequence[int], patterns: Sequence[MultiTokenTrigger], ids: Sequence[int], ends_word: np.ndarray, width: int) -> SwitchAutomaton:
    """The automaton of single-token `hits` and multi-token `patterns` for logits of `width`.

    `ids` are the penalised columns (hits and completions, sorted); `ends_word[token]` (bool, for
    ids below its length; ids past it end a word) tells whether a token's text ends a word.
    Every id in `hits`, `patterns` and `ids` is below `width`.
    """
    prefix_tokens = sorted({t for p in patterns for t in p.prefix})
    named = sorted(set(prefix_tokens) | set(ids) | set(hits))
    known = min(width, len(ends_word))

    def token_ends_word(token: int) -> bool:
        return bool(ends_word[token]) if token < known else True

    # Classes: the three fixed ones, then one per named token.
    class_ids = [None, None, None, *named]
    class_ends = [False, True, True, *(token_ends_word(t) for t in named)]
    class_of = np.empty(width + 1, dtype=np.int64)
    class_of[0] = NEGATIVE
    ends = np.ones(width, dtype=bool)
    ends[:known] = np.asarray(ends_word[:known], dtype=bool)
    class_of[1:] = np.where(ends, OTHER_ENDS_WORD, OTHER_INSIDE)
    for c, token in enumerate(named, start=3):
        class_of[token + 1] = c

    hit_set = set(hits)
    column_of = {token: c for c, token in enumerate(ids)}
    hit_columns = np.zeros(len(ids), dtype=bool)
    for token in hit_set:
        hit_columns[column_of[token]] = True
    lengths = [len(p.prefix) for p in patterns]
    starts_by_token: dict[int, list[int]] = {}
    for index, p in enumerate(patterns):
        starts_by_token.setdefault(p.prefix[0], []).append(index)

    # A state: (partial matches as sorted (pattern, matched) pairs, the newest token ends a word).
    # `matched == len(prefix)` means the pattern is armed: its completion is penalisable next.
    State = tuple[tuple[tuple[int, int], ...], bool]
    start: State = ((), True)
    number: dict[State, int] = {start: 0}
    order: list[State] = [start]
    transitions: list[list[int]] = []
    backs: list[list[int]] = []
    classes = len(class_ids)
    for state in order:  # grows while new states are found
        matches, boundary = state
        row_next: list[int] = []
        row_back: list[int] = []
        for c in range(classes):
            token, token_ends = class_ids[c], class_ends[c]
            # Which switch this token completes from `state` (the later start wins: a hit, else
            # the shortest armed prefix whose completion it is).
            back = -1
            if token is not None:
                if token in hit_set:
                    back = 0
                else:
                    armed = [lengths[p] for p, m in matches if m == lengths[p] and patterns[p].completion == token]
                    back = min(armed) if armed else -1
            following: set[tuple[int, int]] = set()
            if token is not None:
                for p, m in matches:
                    if m < lengths[p] and patterns[p].prefix[m] == token:
                        following.add((p, m + 1))
                for p in starts_by_token.get(token, ()):
                    if boundary or patterns[p].prefix_starts_with_space:
                        following.add((p, 1))
            target: State = (tuple(sorted(following)), token_ends)
            if target not in number:
                number[target] = len(order)
                order.append(target)
            row_next.append(number[target])
            row_back.append(back)
        transitions.append(row_next)
        backs.append(row_back)

    active = np.repeat(hit_columns[None, :], len(order), axis=0)
    for s, (matches, _) in enumerate(order):
        for p, m in matches:
            if m == lengths[p]:
                active[s, column_of[patterns[p].completion]] = True
    return SwitchAutomaton(
        class_of=class_of,
        next_state=np.asarray(transitions, dtype=np.int64).reshape(len(order), classes),
        switch_back=np.asarray(backs, dtype=np.int64).reshape(len(order), classes),
        active_columns=active,
        ids=tuple(ids),
    )
