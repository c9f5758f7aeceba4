"""Where a text occurs in what a row generates: a finite automaton over token classes (host tables).

A rule that acts "right after the text X" (thinking intervention's trigger) has to find X in the
generated text however the tokenizer cut it: `".\\n\\n"` may be one token, or `"."` then `"\\n\\n"`,
or the end of `"].\\n\\n"`. Reading the text back on the host each step is a sync; instead each row
keeps one int, the state of the Knuth-Morris-Pratt automaton of X over characters (how many leading
characters of X the generated text ends with), and a token moves it by its whole text at once:

    state' = next_state[state, class_of(token)]
    fired  = fires[state, class_of(token)]      # X ends inside this token's text

Tokens with the same effect on every state share a class, so the tables are small (tokens holding
no character of X all reset the state; a few hundred classes for a sentence). The token texts are
those the intervention family matches everywhere (`TokenizerInfo.token_texts`: each token's text as
it reads in the middle of a sequence); a character whose bytes are split between tokens is unknown
(it matches nothing), and special tokens and think markers break the text (state 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["TextAutomaton", "build_text_automaton"]

#: Stands for a character no pattern holds (a split character, an excluded token).
UNKNOWN = "\ufffd"


@dataclass(frozen=True)
class TextAutomaton:
    """Host tables (numpy). `class_of[token + 1]` for tokens in [-1, width) (index 0: negative ids,
    which break the text). State 0: nothing of the pattern matched; `states - 1` is never kept (a
    full match moves on to the longest proper border)."""

    pattern: str
    class_of: np.ndarray  # (width + 1,) int64
    next_state: np.ndarray  # (states, classes) int64
    fires: np.ndarray  # (states, classes) bool

    @property
    def states(self) -> int:
        return self.next_state.shape[0]

    def run(self, tokens: Iterable[int], state: int = 0) -> tuple[int, bool]:
        """(state after `tokens`, whether the pattern ended inside the last of them) on the host."""
        width = self.class_of.shape[0] - 1
        fired = False
        for token in tokens:
            c = self.class_of[min(max(int(token), -1), width - 1) + 1]
            state, fired = int(self.next_state[state, c]), bool(self.fires[state, c])
        return state, fired


def _character_table(pattern: str) -> tuple[dict[str, int], np.ndarray]:
    """KMP's automaton over characters: (alphabet -> column, table[state, column]) where column 0
    is every character outside the pattern and state m = len(pattern) is a full match."""
    m = len(pattern)
    alphabet = {c: k + 1 for k, c in enumerate(dict.fromkeys(pattern))}
    border = _borders(pattern)
    table = np.zeros((m + 1, len(alphabet) + 1), dtype=np.int64)
    for q in range(m + 1):
        for c, column in alphabet.items():
            if q < m and pattern[q] == c:
                table[q, column] = q + 1
            else:
                table[q, column] = table[border[q], column] if q else 0
    return alphabet, table


def build_text_automaton(texts: Sequence[str], pattern: str, width: int, excluded: Iterable[int] = ()) -> TextAutomaton:
    """The automaton of `pattern` for token texts `texts` (index = id) and logits of `width`.

    Ids at or past `len(texts)` (padding columns of an output layer) and `excluded` ids break the
    text like an unknown character. The states' numbering is the KMP state 0..len(pattern)-1: a
    completed match is reported by `fires` and continues from its longest proper border.
    """
    if not pattern:
        raise ValueError("a text automaton needs a non-empty pattern")
    m = len(pattern)
    alphabet, table = _character_table(pattern)
    excluded = set(excluded)
    count = min(width, len(texts))
    # Per token: its text as alphabet columns (0 for any other character).
    words = [UNKNOWN if (i in excluded) else texts[i] for i in range(count)]
    relevant = [i for i, text in enumerate(words) if any(c in alphabet for c in text)]
    empty = [i for i, text in enumerate(words) if not text]
    longest = max((len(words[i]) for i in relevant), default=0)
    codes = np.zeros((len(relevant), max(longest, 1)), dtype=np.int64)
    lengths = np.zeros(len(relevant), dtype=np.int64)
    for row, i in enumerate(relevant):
        text = words[i]
        lengths[row] = len(text)
        codes[row, : len(text)] = [alphabet.get(c, 0) for c in text]
    # Run every relevant token from every state at once, one character position at a time.
    states = np.broadcast_to(np.arange(m, dtype=np.int64), (len(relevant), m)).copy()
    fired = np.zeros((len(relevant), m), dtype=bool)
    for j in range(codes.shape[1]):
        live = (j < lengths)[:, None]
        moved = table[states, codes[:, j : j + 1]]
        fired |= live & (moved == m)
        states = np.where(live, moved, states)
    # A full match continues from its border (state m is never kept).
    states = np.where(states == m, _borders(pattern)[m], states)
    # Classes: 0 resets (no character of the pattern), 1 keeps the state (an empty text), then
    # one per distinct (next states, fires) behaviour among the relevant tokens.
    behaviours = np.concatenate((states, fired.astype(np.int64)), axis=1)
    if relevant:
        unique, inverse = np.unique(behaviours, axis=0, return_inverse=True)
    else:
        unique, inverse = np.zeros((0, 2 * m), dtype=np.int64), np.zeros(0, dtype=np.int64)
    inverse = np.asarray(inverse).reshape(-1)
    classes = 2 + unique.shape[0]
    next_state = np.zeros((m, classes), dtype=np.int64)
    fires = np.zeros((m, classes), dtype=bool)
    next_state[:, 1] = np.arange(m)
    next_state[:, 2:] = unique[:, :m].T
    fires[:, 2:] = unique[:, m:].T.astype(bool)
    class_of = np.zeros(width + 1, dtype=np.int64)  # negative ids and ids past the texts reset
    for i in empty:
        class_of[i + 1] = 1
    class_of[np.asarray(relevant, dtype=np.int64) + 1] = inverse + 2
    return TextAutomaton(pattern=pattern, class_of=class_of, next_state=next_state, fires=fires)


def _borders(pattern: str) -> list[int]:
    """border[q]: the length of the longest proper border of pattern[:q] (where a match continues)."""
    m = len(pattern)
    border = [0] * (m + 1)
    k = 0
    for q in range(1, m):
        while k and pattern[q] != pattern[k]:
            k = border[k]
        if pattern[q] == pattern[k]:
            k += 1
        border[q + 1] = k
    return border
