"""Switch recognition on the host: one token at a time, in plain Python.

This is the reading of section 3 of the contract (switches, psi, scope) that trace analysis and the
live monitor use. The batched tensor state in `tip_decode.core.interventions` implements the same rules for
the processors; the tests hold both to one slow reference so that "a switch" means one thing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tip_decode.core.config import parse_scope
from tip_decode.core.tracker import prompt_facts
from tip_decode.core.vocabulary import SwitchVocabulary, ThinkMarkers

WAITING, REASONING, ENDED = 0, 1, 2


@dataclass(frozen=True)
class SwitchEvent:
    """A recognised thought switch: the one record type of the recognizer, trace analysis, the live
    monitor and the in-`generate` detector.

    The recognizer fills the first five fields; each component adds the signals it measures, and a
    signal nobody measured stays None.

    - `position`: the switch position j (the trigger's first token; generated tokens from 0).
    - `recognised_at`: the position of the token that completed it (j for a single-token hit,
      j + k - 1 for a k-token trigger); the step that chose that token is where the switch's
      signals (`entropy_at_switch`, `switch_mass_at_switch`) are read.
    - `trigger`: the (lowercased) trigger word it matched.
    - `thought_start`: where the thought it abandons began; `abandoned_length` = position - thought_start.
    - `abandoned`: the index of that thought (thought 0 starts where reasoning starts).
    - `premature`: the abandoned thought is shorter than the premature threshold (analysis, live, detector).
    - `on_track`: the abandoned thought was judged correct (analysis with a reference answer).
    - `abandoned_mean_entropy`: mean per-step entropy (nats) of the abandoned thought, where
      per-token entropies were given; `confident`: it is below the confident-entropy threshold.
    - `entropy_at_switch`, `switch_mass_at_switch`: entropy and switch-token mass of the step that
      chose the completing token (detector; live monitor with log-probabilities).
    """

    position: int
    recognised_at: int
    trigger: str
    thought_start: int
    abandoned: int = 0
    premature: bool | None = None
    on_track: bool | None = None
    abandoned_mean_entropy: float | None = None
    confident: bool | None = None
    entropy_at_switch: float | None = None
    switch_mass_at_switch: float | None = None

    @property
    def abandoned_length(self) -> int:
        """Length in tokens of the thought this switch abandoned."""
        return max(0, self.position - self.thought_start)

    @property
    def mean_entropy(self) -> float | None:
        """The abandoned thought's mean entropy (the live monitor's name for `abandoned_mean_entropy`)."""
        return self.abandoned_mean_entropy


def check_segmentation_arguments(vocabulary: SwitchVocabulary, scope: str, premature_threshold: int) -> None:
    """The argument checks shared by every component that segments thoughts (analysis, live, detector)."""
    if not isinstance(vocabulary, SwitchVocabulary):
        raise TypeError(f"`vocabulary` has to be a SwitchVocabulary, but is {type(vocabulary).__name__}")
    parse_scope(scope)
    if isinstance(premature_threshold, bool) or not isinstance(premature_threshold, int) or premature_threshold < 0:
        raise ValueError(f"`premature_threshold` has to be a non-negative integer, but is {premature_threshold!r}")


def prompt_ends_in_open_think(prompt_ids: Sequence[int] | None, think: ThinkMarkers) -> bool:
    """True when the last think start marker in the prompt comes after the last end marker."""
    if not prompt_ids or not think.available:
        return False
    return prompt_facts(think.start_id, think.end_id, prompt_ids)[0]


class SwitchRecognizer:
    """Feed generated tokens one at a time; get a `SwitchEvent` back when one completes a switch.

    Args:
        vocabulary: the switch vocabulary (same object the processor uses).
        scope: "auto", "think" or "all" (section 3 of the contract).
        prompt_open: the prompt ends inside an open think block (see `prompt_ends_in_open_think`).

    Example:
        >>> from tokenizers import Tokenizer
        >>> from tip_decode import SwitchVocabulary
        >>> from tip_decode.demo import MODEL_DIR
        >>> tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
        >>> vocab = SwitchVocabulary.from_tokenizer(tok, ["alternatively", "wait"])
        >>> rec = SwitchRecognizer(vocab, scope="auto")
        >>> ids = tok.encode("<think> 5 +7 12 Wait 5 +3 8 +3 11 Alternatively 5 +2 7").ids
        >>> [(event.position, event.trigger) for event in map(rec.push, ids) if event]
        [(4, 'wait'), (10, 'alternatively')]
    """

    def __init__(self, vocabulary: SwitchVocabulary, scope: str = "auto", prompt_open: bool = False) -> None:
        self.vocabulary = vocabulary
        self.scope = vocabulary.resolve_scope(scope)
        self._hits = frozenset(vocabulary.token_ids)
        self._by_completion: dict[int, list] = {}
        for pattern in vocabulary.multi_token:
            self._by_completion.setdefault(pattern.completion, []).append(pattern)
        self._tail: deque[int] = deque(maxlen=vocabulary.max_prefix_length + 1)
        self.position = 0
        if self.scope == "all" or prompt_open:
            self.phase, self.thought_start, self.reasoning_start = REASONING, 0, 0
        else:
            self.phase, self.thought_start, self.reasoning_start = WAITING, 0, None
        self.reasoning_end: int | None = None
        self.events: list[SwitchEvent] = []

    def in_window(self, beta: int) -> bool:
        """Whether the penalty may act on the token chosen next."""
        return self.phase == REASONING and self.position < self.thought_start + beta

    def armed_completions(self) -> set[int]:
        """Completion ids whose multi-token prefix is the current tail (penalised next, if in window)."""
        armed: set[int] = set()
        tail = list(self._tail)
        for completion, patterns in self._by_completion.items():
            if any(self._prefix_matches(tail, p) for p in patterns):
                armed.add(completion)
        return armed

    def _prefix_matches(self, tail: list[int], pattern) -> bool:
        k = len(pattern.prefix)
        if len(tail) < k or tuple(tail[len(tail) - k :]) != pattern.prefix:
            return False
        first = self.position - k  # position of prefix[0]
        if pattern.prefix_starts_with_space or first == 0:
            return True
        before = len(tail) - k - 1
        # A token before prefix[0] that fell out of the bounded tail cannot exist: the tail keeps
        # one more token than the longest prefix.
        return before >= 0 and self.vocabulary.ends_word_at(tail[before])

    def push(self, token_id: int) -> SwitchEvent | None:
        token_id = int(token_id)
        position = self.position
        think = self.vocabulary.think
        event: SwitchEvent | None = None
        if self.phase == REASONING:
            starts: list[tuple[int, str]] = []
            if token_id in self._hits:
                starts.append((position, self.vocabulary.hit_trigger[token_id]))
            tail = list(self._tail)
            for pattern in self._by_completion.get(token_id, ()):
                if self._prefix_matches(tail, pattern):
                    starts.append((position - len(pattern.prefix), pattern.trigger))
            if starts:
                # Two readings can end at one token (a completion that is also a hit); the later
                # start wins, which is what moving psi at each recognised switch in order amounts to.
                switch_at, trigger = max(starts)
                event = SwitchEvent(switch_at, position, trigger, self.thought_start, abandoned=len(self.events))
                self.thought_start = switch_at
                self.events.append(event)
        if self.scope == "think":
            if self.phase == WAITING and token_id == think.start_id:
                self.phase, self.thought_start, self.reasoning_start = REASONING, position + 1, position + 1
            elif self.phase == REASONING and token_id == think.end_id:
                self.phase, self.reasoning_end = ENDED, position
        self._tail.append(token_id)
        self.position += 1
        return event

    def feed(self, token_ids: Iterable[int]) -> list[SwitchEvent]:
        return [e for e in (self.push(t) for t in token_ids) if e is not None]


def find_switches(
    vocabulary: SwitchVocabulary,
    token_ids: Sequence[int],
    scope: str = "auto",
    prompt_open: bool = False,
) -> list[SwitchEvent]:
    """All switches in a generated sequence (positions count generated tokens from 0)."""
    return SwitchRecognizer(vocabulary, scope, prompt_open).feed(token_ids)
