"""A text-suffix recognizer over tokens: does the text generated so far end with one of some texts?

Rules that act "right after a sentence ends" (ThinkBrake's `".\\n\\n"`) have to see a boundary however
the tokenizer splits it: one token `".\\n\\n"`, `"].\\n\\n"`, or `"."` then `"\\n\\n"`. Comparing token
ids cannot do that; reading the text back on the host would cost a sync per step. This module builds
a deterministic automaton over the *characters* of the patterns (Aho-Corasick: a trie with failure
links, completed into a transition table), and lifts it to tokens: for every token id and every
state, the state after reading the token's whole text. A step then follows one state number per row
with one table lookup, on the device, whatever the text's length:

    state' = next_state[state, class_of(token)]
    ended  = matched[state']            # the text read so far ends with a pattern

Tokens that lead from every state to the same places share a class, so the table is (states,
classes) with a handful of classes, not (states, vocabulary).

Token texts are each token's text in the middle of a sequence (`TokenizerInfo.token_texts`, read
from its piece). Decisions (docs/interventions.md, ThinkBrake):

- a token cut inside a UTF-8 character: at its end, the automaton restarts (the next text begins
  with the rest of a character that is no pattern's); its text starts after an unknown character;
- special tokens and think markers restart the automaton (they are no text of the reasoning);
- ids past the vocabulary (padding columns of an output layer) and negative ids restart it.

Torch-free (numpy tables; the rule moves them to its device).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SuffixAutomaton", "build_suffix_automaton", "character_automaton"]


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
    `next_state[state, class]`; `matched[state]`: the text read so far ends with a pattern.
    """

    patterns: tuple[str, ...]
    class_of: np.ndarray  # (width + 1,) int64
    next_state: np.ndarray  # (states, classes) int64
    matched: np.ndarray  # (states,) bool

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
        return SuffixAutomaton(self.patterns, class_of, self.next_state, self.matched)

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

    def run(self, tokens: Iterable[int], state: int = 0) -> int:
        """The state after `tokens` (host replay of a resumed row)."""
        width = self.class_of.shape[0] - 1
        for token in tokens:
            state = int(self.next_state[state, self.class_of[min(max(int(token), -1), width - 1) + 1]])
        return state


def build_suffix_automaton(
    patterns: Sequence[str],
    texts: Sequence[str],
    starts_inside: Sequence[bool] | np.ndarray,
    ends_inside: Sequence[bool] | np.ndarray,
    excluded: Collection[int],
    width: int,
) -> SuffixAutomaton:
    """The automaton of `patterns` over tokens whose texts are `texts` (ids below `len(texts)`), for
    ids in [0, width); ids in `excluded`, cut at their end, or past the texts restart it."""
    chars = character_automaton(patterns)
    states = chars.states
    # The part of a text that can matter: its longest suffix made of pattern characters. A token
    # with any other character leads every state to where that suffix leads from the start.
    tail = re.compile("[" + "".join(re.escape(c) for c in sorted(chars.alphabet)) + r"]*\Z")
    restart = (0,) * states
    row_of: dict[tuple[int, ...], int] = {restart: 0}
    rows: list[tuple[int, ...]] = [restart]
    class_of = np.zeros(width + 1, dtype=np.int64)  # index 0 (negative ids) and padding: restart
    cache: dict[tuple[str, bool], tuple[int, ...]] = {}
    excluded = frozenset(excluded)
    known = min(width, len(texts))
    for token in range(known):
        if token in excluded or ends_inside[token]:
            continue  # restart: class 0
        text = texts[token]
        suffix = tail.search(text).group()  # type: ignore[union-attr] (`*\Z` always matches)
        # The text is read from the row's state only when all of it is made of pattern characters
        # and nothing before it was cut off.
        from_state = len(suffix) == len(text) and not starts_inside[token]
        key = (suffix, from_state)
        row = cache.get(key)
        if row is None:
            row = tuple(chars.read(s, suffix) for s in range(states)) if from_state else (chars.read(0, suffix),) * states
            cache[key] = row
        index = row_of.get(row)
        if index is None:
            index = row_of[row] = len(rows)
            rows.append(row)
        class_of[token + 1] = index
    next_state = np.ascontiguousarray(np.asarray(rows, dtype=np.int64).T).reshape(states, len(rows))
    return SuffixAutomaton(tuple(patterns), class_of, next_state, np.asarray(chars.matched, dtype=bool))
