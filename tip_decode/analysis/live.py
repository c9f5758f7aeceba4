"""Live switch monitoring: feed tokens as they stream, get an event at each thought switch.

`LiveMonitor` wraps the same `SwitchRecognizer` that offline analysis uses, so the events it emits
token by token are exactly the switches `analyze_response` finds afterwards. It accepts token ids
(an HF streamer, a vLLM stream), optionally with the step's log-probabilities (for entropy and the
probability mass on switch tokens, top-k approximations for vLLM), or text deltas from an OpenAI
streaming response, which it re-tokenises (see `push_text`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from tip_decode.analysis.signals import entropy_from_top_logprobs, token_id_of
from tip_decode.core.config import PAPER_BETA
from tip_decode.core.recognizer import REASONING, SwitchEvent, SwitchRecognizer, check_segmentation_arguments
from tip_decode.core.vocabulary import SwitchVocabulary, TokenizerView

#: A switch as it happens: the project's one switch record (`tip_decode.core.recognizer.SwitchEvent`).
#: The monitor fills `premature`; with log-probabilities also `abandoned_mean_entropy` (alias
#: `mean_entropy`), `confident`, `entropy_at_switch` and `switch_mass_at_switch`.
LiveSwitchEvent = SwitchEvent


class LiveMonitor:
    """Emit a `SwitchEvent` at every recognised switch of a streamed response.

    Args:
        vocabulary: the switch vocabulary (the one the processor uses).
        scope, prompt_open: as for the processor.
        premature_threshold: an abandoned thought shorter than this (tokens) makes the switch premature.
        tokenizer: needed only for `push_text` (text deltas).
        confident_entropy: an abandoned thought whose mean entropy (nats) is below this is "confident".
        holdback: for `push_text`, the newest `holdback - 1` safe cuts in the text stay pending as a
            margin (1 commits up to the last word boundary that is safe).

    Example:
        >>> from tokenizers import Tokenizer
        >>> from tip_decode import SwitchVocabulary
        >>> from tip_decode.demo import MODEL_DIR
        >>> tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
        >>> vocab = SwitchVocabulary.from_tokenizer(tok, ["alternatively", "wait"])
        >>> monitor = LiveMonitor(vocab, scope="auto", premature_threshold=5)
        >>> for token_id in tok.encode("<think> 5 +7 12 Wait 5 +3 8 +3 11 Alternatively 5 +2 7").ids:
        ...     for event in monitor.push(token_id):
        ...         print(event.position, event.abandoned_length, event.premature)
        4 3 True
        10 6 False
    """

    def __init__(
        self,
        vocabulary: SwitchVocabulary,
        scope: str = "auto",
        prompt_open: bool = False,
        premature_threshold: int = PAPER_BETA,
        tokenizer: Any = None,
        confident_entropy: float = 1.0,
        holdback: int = 2,
    ) -> None:
        check_segmentation_arguments(vocabulary, scope, premature_threshold)
        if not isinstance(holdback, int) or holdback < 1:
            raise ValueError(f"`holdback` has to be a positive integer, but is {holdback!r}")
        self.vocabulary = vocabulary
        self.premature_threshold = premature_threshold
        self.confident_entropy = float(confident_entropy)
        self.holdback = holdback
        self._recognizer = SwitchRecognizer(vocabulary, scope, prompt_open)
        self.scope = self._recognizer.scope
        self._tokenizer = tokenizer
        self.events: list[SwitchEvent] = []
        self.token_ids: list[int] = []
        self.entropies: list[float] = []  # per token, NaN where no log-probabilities were given
        self.switch_mass: list[float] = []
        self._switch_ids = frozenset(vocabulary.token_ids)
        # Text-delta state: text not yet turned into committed tokens, and the newest cut in it that
        # was already tried (verifying costs three encodings; it is retried only at a new word).
        self._pending_text = ""
        self._last_tried_cut: int | None = None

    @property
    def position(self) -> int:
        """Tokens pushed so far."""
        return self._recognizer.position

    @property
    def thought_start(self) -> int:
        return self._recognizer.thought_start

    @property
    def reasoning_ended(self) -> bool:
        return self._recognizer.reasoning_end is not None

    def push(self, token_id: int, top_logprobs: Mapping[Any, float] | None = None) -> list[SwitchEvent]:
        """Feed one generated token; returns the switch it completed (a list of zero or one event).

        `top_logprobs` (token id -> logprob, the step's top-k) adds that step's entropy (top-k
        approximation, see `tip_decode.analysis.signals`) and the listed mass on the tokens that
        would open a switch at this step, as `AbandonmentDetector` defines it: single-token hits
        and the multi-token completions whose prefix was just generated, 0 outside reasoning.
        """
        if isinstance(token_id, bool) or not hasattr(token_id, "__index__"):
            raise TypeError(f"`token_id` has to be an int, but is {token_id!r}")
        token_id = int(token_id)
        if top_logprobs is not None:
            self.entropies.append(entropy_from_top_logprobs(top_logprobs))
            self.switch_mass.append(self._switch_mass(top_logprobs))
        else:
            self.entropies.append(math.nan)
            self.switch_mass.append(math.nan)
        self.token_ids.append(token_id)
        event = self._recognizer.push(token_id)
        if event is None:
            return []
        entropy = _nanmean(self.entropies[event.thought_start : event.position])
        step = event.recognised_at
        live = replace(
            event,
            premature=event.abandoned_length < self.premature_threshold,
            abandoned_mean_entropy=entropy,
            confident=None if entropy is None else entropy < self.confident_entropy,
            entropy_at_switch=None if math.isnan(self.entropies[step]) else self.entropies[step],
            switch_mass_at_switch=None if math.isnan(self.switch_mass[step]) else self.switch_mass[step],
        )
        self.events.append(live)
        return [live]

    def _switch_mass(self, top_logprobs: Mapping[Any, float]) -> float:
        if self._recognizer.phase != REASONING:
            return 0.0
        active = self._switch_ids | self._recognizer.armed_completions()
        return sum(math.exp(v) for k, v in top_logprobs.items() if token_id_of(k) in active)

    def feed(self, token_ids: Iterable[int]) -> list[SwitchEvent]:
        out: list[SwitchEvent] = []
        for token in token_ids:
            out.extend(self.push(token))
        return out

    # ----- text deltas (OpenAI streams) -----

    def push_text(self, delta: str) -> list[SwitchEvent]:
        """Feed a text delta; tokens are committed once no later text can change them.

        An OpenAI stream gives text, not ids, so the text is re-tokenised with `tokenizer`, and the
        committed ids always equal the tokenizer's encoding of the whole text received, however the
        text was split into deltas (a delta may end inside a word, or between the two tokens of an
        emoji). Text is committed only up to a cut at the start of a whitespace run that is followed
        by more text, and only where encoding the text before and after the cut separately gives the
        encoding of both together; the newest `holdback - 1` such cuts are skipped as a margin, so
        events arrive about one word late. `finish()` commits the rest.
        """
        if not isinstance(delta, str):
            raise TypeError(f"`delta` has to be a string, but is {type(delta).__name__}")
        self._pending_text += delta
        return self._commit(final=False)

    def finish(self) -> list[SwitchEvent]:
        """Commit the text still held back (call once the stream ends)."""
        return self._commit(final=True)

    def _view(self) -> TokenizerView:
        if self._tokenizer is None:
            raise ValueError("`tokenizer` is required for text deltas: pass LiveMonitor(..., tokenizer=...)")
        if not isinstance(self._tokenizer, TokenizerView):
            self._tokenizer = TokenizerView(self._tokenizer)
        return self._tokenizer

    def _commit(self, final: bool) -> list[SwitchEvent]:
        text = self._pending_text
        if not text:
            return []
        view = self._view()
        if final:
            ids, consumed = view.encode(text), len(text)
        else:
            ids, consumed = self._stable_prefix(view, text)
        self._pending_text = text[consumed:]
        events: list[SwitchEvent] = []
        for token in ids:
            events.extend(self.push(token))
        return events

    def _stable_prefix(self, view: TokenizerView, text: str) -> tuple[list[int], int]:
        """Token ids of `text[:cut]` and `cut`, for the latest safe cut (no ids, 0 when there is none).

        A cut must sit where whitespace starts after a non-space character, with a non-space
        character after that whitespace run (a run still growing may re-tokenise, and so may a
        word still arriving); byte-level and SentencePiece tokenizers start a token there. It is
        safe when the two sides encode separately to the encoding of the whole: that rules out
        punctuation merged with the newlines after it (".\n\n"), SentencePiece's `▁` added to a
        text that starts with a newline, and tokens that split a character.
        """
        wanted = self.holdback - 1 + _CUTS_TRIED
        cuts: list[int] = []  # newest first
        end = len(text.rstrip())  # a cut needs a non-space character after its whitespace run
        for c in range(end - 1, 0, -1):
            if text[c].isspace() and not text[c - 1].isspace():
                cuts.append(c)
                if len(cuts) == wanted:
                    break
        cuts = cuts[self.holdback - 1 :]
        if not cuts or cuts[0] == self._last_tried_cut:
            return [], 0  # nothing new to try since the last delta: wait for the next word
        self._last_tried_cut = cuts[0]
        whole: list[int] | None = None
        # The newest few cuts are tried; an older one would only commit less text.
        for cut in cuts:
            left = view.encode(text[:cut])
            if not left:
                continue
            if whole is None:
                whole = view.encode(text)
            if whole[: len(left)] == left and view.encode(text[cut:]) == whole[len(left) :]:
                self._last_tried_cut = None
                return left, cut
        return [], 0


#: How many candidate cuts `push_text` verifies per delta before waiting for more text.
_CUTS_TRIED = 4


def _nanmean(values: list[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


__all__ = ["LiveMonitor", "LiveSwitchEvent", "token_id_of"]
