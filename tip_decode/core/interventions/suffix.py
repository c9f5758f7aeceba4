"""The text automaton: where some texts occur in what a row generates, one table lookup per token.

Rules that act on the generated *text* have to see it however the tokenizer cut it: ThinkBrake's
boundary `".\\n\\n"` may be one token, the end of `"].\\n\\n"`, or `"."` then `"\\n\\n"`; so may the
trigger of the thinking intervention (`inject_after`). Comparing token ids cannot do that; reading the
text back on the host would cost a sync per step. This module builds a deterministic automaton over
the *characters* of the patterns (Aho-Corasick: a trie with failure links, completed into a
transition table; a state is the longest end of the text read so far that begins some pattern) and
lifts it to tokens: for every token and every state, where the token's whole text leads. A row keeps
one int, its state; a step reads its tables once, on the device, whatever the text's length:

    state' = next_state[state, class_of(token)]
    ended  = matched[state']                   # the text read so far ends with a pattern (ThinkBrake)
    fired  = fires[state, class_of(token)]     # a pattern ended inside this token's text (inject)

The two questions differ where a pattern ends inside a token and more text follows it in the same
token (`".\\n\\nThe"`): `fires` says yes, `matched` of the state after it says no. Tokens that act
alike on every state (the same next states and the same `fires`) share a class, so the tables are
(states, classes) with a handful of classes, not (states, vocabulary).

Token texts are each token's text in the middle of a sequence (`TokenizerInfo.text_table`, read from
its piece). What breaks the text (no pattern runs over it; the state restarts, nothing fires), as
docs/interventions.md decides for both rules:

- a character whose bytes are cut between two tokens: the automaton reads an unknown character in
  its place (before the text of the token that ends it, after the text of the token that starts it),
  which is no character of any pattern, even of a pattern that holds U+FFFD (the token whose own
  text is the complete character U+FFFD matches that);
- special tokens and think markers (they are no text of the reasoning);
- ids past the vocabulary (padding columns of an output layer) and negative ids.

Torch-free (numpy tables; the rule moves them to its device).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tip_decode.core.interventions.base import TokenizerInfo

__all__ = ["SuffixAutomaton", "build_suffix_automaton", "character_automaton", "suffix_automaton"]


@dataclass(frozen=True)
class CharacterAutomaton:
    """Aho-Corasick over characters: `step(state, char)` and whether a state ends a pattern.

    State 0 is the start (nothing of any pattern read).
    """

    goto: tuple[dict[str, int], ...]  # complete transitions over the patterns' alphabet
    matched: tuple[bool, ...]
    alphabet: frozenset[str]

    @property
    def states(self) -> int:
        return len(self.goto)

    def step(self, state: int, char: str) -> int:
        return self.goto[state].get(char, 0)

    def read(self, state: int, text: str) -> int:
        goto = self.goto
        for char in text:
            state = goto[state].get(char, 0)
        return state


def character_automaton(patterns: Sequence[str]) -> CharacterAutomaton:
    """The Aho-Corasick automaton of `patterns` (non-empty strings), with every transition filled in."""
    if not patterns or any(not isinstance(p, str) or not p for p in patterns):
        raise ValueError(f"patterns have to be non-empty strings, but are {list(patterns)!r}")
    children: list[dict[str, int]] = [{}]
    ends = [False]
    for pattern in patterns:
        node = 0
        for char in pattern:
            if char not in children[node]:
                children[node][char] = len(children)
                children.append({})
                ends.append(False)
            node = children[node][char]
        ends[node] = True
    alphabet = frozenset(c for p in patterns for c in p)
    fail = [0] * len(children)
    goto: list[dict[str, int]] = [dict() for _ in children]
    order = [0]
    for node in order:  # breadth first: a node's failure target is filled in before its children
        for char in alphabet:
            child = children[node].get(char)
            if child is not None:
                fail[child] = goto[fail[node]].get(char, 0) if node else 0
                goto[node][char] = child
                order.append(child)
            else:
                goto[node][char] = goto[fail[node]].get(char, 0) if node else 0
        if node:
            ends[node] = ends[node] or ends[fail[node]]
    # Drop transitions back to the start: `step` reads a missing entry as 0.
    compact = tuple({c: t for c, t in row.items() if t} for row in goto)
    return CharacterAutomaton(compact, tuple(ends), alphabet)


@dataclass(frozen=True)
class SuffixAutomaton:
    """Host tables of the token-level automaton (numpy); a rule moves them to its device.

    `class_of[token + 1]` is the class of `token` for tokens in [-1, width) (index 0: negative ids);
    class 0 restarts the automaton. `next_state[state, class]`; `matched[state]`: the text read so
    far ends with a pattern; `fires[state, class]`: a pattern ends inside the token's text read from
    `state`.
    """

    patterns: tuple[str, ...]
    class_of: np.ndarray  # (width + 1,) int64
    next_state: np.ndarray  # (states, classes) int64
    matched: np.ndarray  # (states,) bool
    fires: np.ndarray  # (states, classes) bool

    @property
    def states(self) -> int:
        return self.next_state.shape[0]

    @property
    def classes(self) -> int:
        return self.next_state.shape[1]

    def for_width(self, width: int) -> SuffixAutomaton:
        """The same automaton for logits of `width` (ids past the vocabulary restart it)."""
        known = self.class_of.shape[0] - 1
        if width == known:
            return self
        class_of = np.zeros(width + 1, dtype=np.int64)
        class_of[: min(width, known) + 1] = self.class_of[: min(width, known) + 1]
        return SuffixAutomaton(self.patterns, class_of, self.next_state, self.matched, self.fires)

    def reachable(self) -> bool:
        """Some sequence of tokens ends with a pattern (else the rule could never act)."""
        used = np.unique(self.class_of)
        seen, frontier = {0}, [0]
        while frontier:
            state = frontier.pop()
            if self.matched[state]:
                return True
            for target in self.next_state[state, used].tolist():
                if target not in seen:
                    seen.add(target)
                    frontier.append(target)
        return False

    def step(self, state: int, token: int) -> tuple[int, bool]:
        """(the state after `token`, whether a pattern ended inside its text) on the host."""
        width = self.class_of.shape[0] - 1
        column = self.class_of[min(max(int(token), -1), width - 1) + 1]
        return int(self.next_state[state, column]), bool(self.fires[state, column])

    def run(self, tokens: Iterable[int], state: int = 0) -> int:
        """The state after `tokens` (host replay of a resumed row)."""
        for token in tokens:
            state = self.step(state, token)[0]
        return state


def suffix_automaton(info: TokenizerInfo, patterns: Sequence[str]) -> SuffixAutomaton:
    """The automaton of `patterns` over the token texts of `info`'s tokenizer (special tokens and
    think markers break the text), for ids below its vocabulary size."""
    texts = info.text_table()
    return build_suffix_automaton(patterns, texts.text, texts.starts_inside, texts.ends_inside, info.excluded_ids(), info.size)


def build_suffix_automaton(
    patterns: Sequence[str],
    texts: Sequence[str],
    starts_inside: Sequence[bool] | np.ndarray,
    ends_inside: Sequence[bool] | np.ndarray,
    excluded: Collection[int],
    width: int,
) -> SuffixAutomaton:
    """The automaton of `patterns` over tokens whose texts are `texts` (ids below `len(texts)`), for
    ids in [0, width). `starts_inside[i]` / `ends_inside[i]`: token i's text is preceded / followed
    by a cut character (an unknown character); ids in `excluded` or past the texts restart it."""
    chars = character_automaton(patterns)
    states = chars.states
    # Characters as columns: 0 is every character outside the patterns (it leads every state to
    # the start), then the alphabet in code point order.
    alphabet = np.array(sorted(ord(c) for c in chars.alphabet), dtype=np.uint32)
    table = np.zeros((states, alphabet.size + 1), dtype=np.int32)  # int32: (tokens, states) arrays below
    for state, row in enumerate(chars.goto):
        for char, target in row.items():
            table[state, int(np.searchsorted(alphabet, ord(char))) + 1] = target
    matched = np.asarray(chars.matched, dtype=bool)

    known = min(width, len(texts))
    lengths = np.fromiter(map(len, texts[:known]), dtype=np.int64, count=known)
    offsets = np.cumsum(lengths) - lengths
    # Every text's characters at once (UTF-32 code points), as columns.
    points = np.frombuffer("".join(texts[:known]).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    found = np.minimum(np.searchsorted(alphabet, points), alphabet.size - 1)
    columns = np.where(alphabet[found] == points, found + 1, 0)
    holding = np.bincount(np.repeat(np.arange(known), lengths)[columns > 0], minlength=known) > 0
    cut_start = np.asarray(starts_inside[:known], dtype=bool)
    cut_end = np.asarray(ends_inside[:known], dtype=bool)
    ordinary = np.ones(known, dtype=bool)
    ordinary[[t for t in excluded if 0 <= t < known]] = False
    # A token with no character of any pattern restarts the automaton (class 0), unless its text is
    # empty and cuts nothing (it leaves every state as it is); only the others are read.
    keeping = ordinary & (lengths == 0) & ~cut_start & ~cut_end
    read = np.flatnonzero(ordinary & holding)

    # Each read token's text as columns, a cut character as column 0 at either end.
    size = lengths[read] + cut_start[read] + cut_end[read]
    starts = np.cumsum(size) - size
    text_lengths = lengths[read]
    within = np.arange(int(text_lengths.sum())) - np.repeat(np.cumsum(text_lengths) - text_lengths, text_lengths)
    codes = np.zeros(int(size.sum()), dtype=np.int64)
    codes[np.repeat(starts + cut_start[read], text_lengths) + within] = columns[np.repeat(offsets[read], text_lengths) + within]
    # Up to its first other character (the head) a token is read from every state; that character
    # leads every state to the start, so the rest is read once, from the start.
    breaks = np.flatnonzero(codes == 0)
    broken, first = np.unique(np.searchsorted(starts, breaks, side="right") - 1, return_index=True)
    head = size.copy()
    head[broken] = breaks[first] - starts[broken]
    state, fired = _read(table, matched, codes, starts, head, np.tile(np.arange(states, dtype=np.int32), (read.size, 1)))
    rest_state, rest_fired = _read(
        table, matched, codes, starts[broken] + head[broken] + 1, size[broken] - head[broken] - 1, np.zeros((broken.size, 1), dtype=np.int32)
    )
    state[broken] = rest_state
    fired[broken] |= rest_fired

    # Classes: distinct (next states, fires) rows; the restart row first, the keeping row if used.
    behaviour = [np.zeros((1, states), dtype=np.int32)]
    if keeping.any():
        behaviour.append(2 * np.arange(states, dtype=np.int32)[None, :])
    first_read = len(behaviour)
    behaviour.append(2 * state + fired)
    unique, inverse = _distinct_rows(np.concatenate(behaviour))  # the restart row is class 0
    class_of = np.zeros(width + 1, dtype=np.int64)  # negative ids and ids past the texts: restart
    if keeping.any():
        class_of[np.flatnonzero(keeping) + 1] = inverse[1]
    class_of[read + 1] = inverse[first_read:]
    next_state = np.ascontiguousarray((unique >> 1).T, dtype=np.int64)
    fires = np.ascontiguousarray((unique & 1).T.astype(bool))
    return SuffixAutomaton(tuple(patterns), class_of, next_state, matched, fires)


def _read(
    table: np.ndarray, matched: np.ndarray, codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, state: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Read row r's columns `codes[starts[r]:starts[r] + lengths[r]]` from each of its states `state[r]`
    at once, one position at a time: (the states after, whether a pattern ended on the way)."""
    order = np.argsort(-lengths, kind="stable")  # longest first: the rows still reading lead
    starts, state = starts[order], state[order]
    fired = np.zeros(state.shape, dtype=bool)
    reading = np.searchsorted(-lengths[order], -np.arange(int(lengths.max(initial=0))), side="left")
    for position, rows in enumerate(reading.tolist()):
        moved = table[state[:rows], codes[starts[:rows] + position][:, None]]
        fired[:rows] |= matched[moved]
        state[:rows] = moved
    back = np.empty_like(order)
    back[order] = np.arange(order.size)
    return state[back], fired[back]


def _distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows of `rows`, each row's index among them), the first row's index 0.

    Rows are told apart by a hash (one int64 each, sorted much faster than whole rows), checked
    exactly; a collision falls back to comparing whole rows."""
    keys = np.zeros(rows.shape[0], dtype=np.uint64)
    for column, weight in enumerate(_row_weights(rows.shape[1])):  # column by column: no (rows, states) uint64 copy
        keys += rows[:, column].astype(np.uint64) * weight
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    unique = rows[first]
    if not np.array_equal(unique[inverse], rows):
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    order = np.arange(unique.shape[0])
    order[[0, inverse[0]]] = order[[inverse[0], 0]]  # the first row's class to the front
    return unique[order], order[inverse]


def _row_weights(count: int) -> np.ndarray:
    """The row hash's weights: odd 64-bit numbers, seeded (every build numbers classes alike)."""
    return np.random.default_rng(0).integers(1, 2**63, size=count, dtype=np.uint64) | np.uint64(1)
