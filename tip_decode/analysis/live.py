"""Live switch monitoring: feed tokens as they stream, get an event at each thought switch.

`LiveMonitor` wraps the same `SwitchRecognizer` that offline analysis uses, so the events it emits
token by token are exactly the switches `analyze_response` finds afterwards. It accepts token ids
(an HF streamer, a vLLM stream), optionally with the step's log-probabilities (for entropy and the
probability mass on switch tokens, top-k approximations for vLLM), or text deltas from an OpenAI
streaming response, which it re-tokenises (see `push_text`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tip_decode.analysis.signals import entropy_from_top_logprobs, token_id_of
from tip_decode.core.config import PAPER_BETA
from tip_decode.core.recognizer import SwitchRecognizer, check_segmentation_arguments
from tip_decode.core.vocabulary import SwitchVocabulary, TokenizerView

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveSwitchEvent:
    """A switch as it happens.

    `position` is the switch position (first token of the trigger, generated tokens from 0),
    `recognised_at` the token that completed it, `thought_start` the start of the abandoned thought,
    `abandoned_length` its length in tokens, `premature` whether that is below the threshold.
    `mean_entropy` is the abandoned thought's mean per-step entropy when log-probabilities were fed
    (None otherwise), `confident` whether it is below `confident_entropy`.
    """

    position: int
    recognised_at: int
    trigger: str
    thought_start: int
    abandoned_length: int
    premature: bool
    mean_entropy: float | None = None
    confident: bool | None = None


class LiveMonitor:
    """Emit a `LiveSwitchEvent` at every recognised switch of a streamed response.

    Args:
        vocabulary: the switch vocabulary (the one the processor uses).
        scope, prompt_open: as for the processor.
        premature_threshold: an abandoned thought shorter than this (tokens) makes the switch premature.
        tokenizer: needed only for `push_text` (text deltas).
        confident_entropy: an abandoned thought whose mean entropy (nats) is below this is "confident".

    Example:
        >>> monitor = LiveMonitor(vocab, scope="all", premature_threshold=600)   # doctest: +SKIP
        >>> for token_id in stream:                                           # doctest: +SKIP
        ...     for event in monitor.push(token_id):
        ...         print(event.position, event.abandoned_length, event.premature)
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
        self.events: list[LiveSwitchEvent] = []
        self.token_ids: list[int] = []
        self.entropies: list[float] = []  # per token, NaN where no log-probabilities were given
        self.switch_mass: list[float] = []
        self._switch_ids = frozenset(vocabulary.token_ids)
        # Text-delta state: text not yet turned into committed tokens.
        self._pending_text = ""

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

    def push(self, token_id: int, top_logprobs: Mapping[Any, float] | None = None) -> list[LiveSwitchEvent]:
        """Feed one generated token; returns the switch it completed (a list of zero or one event).

        `top_logprobs` (token id -> logprob, the step's top-k) adds that step's entropy (top-k
        approximation, see `tip_decode.analysis.signals`) and the listed mass on switch tokens.
        """
        if isinstance(token_id, bool) or not hasattr(token_id, "__index__"):
            raise TypeError(f"`token_id` has to be an int, but is {token_id!r}")
        token_id = int(token_id)
        if top_logprobs is not None:
            self.entropies.append(entropy_from_top_logprobs(top_logprobs))
            self.switch_mass.append(
                sum(math.exp(v) for k, v in top_logprobs.items() if token_id_of(k) in self._switch_ids)
            )
        else:
            self.entropies.append(math.nan)
            self.switch_mass.append(math.nan)
        self.token_ids.append(token_id)
        event = self._recognizer.push(token_id)
        if event is None:
            return []
        length = event.abandoned_length
        entropy = _nanmean(self.entropies[event.thought_start : event.position])
        live = LiveSwitchEvent(
            position=event.position,
            recognised_at=event.recognised_at,
            trigger=event.trigger,
            thought_start=event.thought_start,
            abandoned_length=length,
            premature=length < self.premature_threshold,
            mean_entropy=entropy,
            confident=None if entropy is None else entropy < self.confident_entropy,
        )
        self.events.append(live)
        return [live]

    def feed(self, token_ids: Iterable[int]) -> list[LiveSwitchEvent]:
        out: list[LiveSwitchEvent] = []
        for token in token_ids:
            out.extend(self.push(token))
        return out

    # ----- text deltas (OpenAI streams) -----

    def push_text(self, delta: str) -> list[LiveSwitchEvent]:
        """Feed a text delta; tokens are committed once the text after them makes them stable.

        An OpenAI stream gives text, not ids, so the text is re-tokenised with `tokenizer`. A token
        at the end of the text received so far may still merge with what comes next ("Alter" +
        "natively"), so it stays pending until more text arrives or `finish()` is called; only
        tokens that decode to exactly a prefix of the pending text are committed. Positions therefore count the re-tokenised text, which equals the
        server's tokens whenever the tokenizer round-trips the text (the usual case for BPE). Text
        is committed up to the last whitespace run, less a margin of `holdback - 1` tokens, so events
        arrive about one word late.
        """
        if not isinstance(delta, str):
            raise TypeError(f"`delta` has to be a string, but is {type(delta).__name__}")
        self._pending_text += delta
        return self._commit(final=False)

    def finish(self) -> list[LiveSwitchEvent]:
        """Commit the text still held back (call once the stream ends)."""
        return self._commit(final=True)

    def _view(self) -> TokenizerView:
        if self._tokenizer is None:
            raise ValueError("`tokenizer` is required for text deltas: pass LiveMonitor(..., tokenizer=...)")
        if not isinstance(self._tokenizer, TokenizerView):
            self._tokenizer = TokenizerView(self._tokenizer)
        return self._tokenizer

    def _commit(self, final: bool) -> list[LiveSwitchEvent]:
        if not self._pending_text:
            return []
        view = self._view()
        text = self._pending_text
        ids = view.encode(text)
        if final:
            limit, keep = len(text), len(ids)
        else:
            # A word still being typed may re-tokenise ("Alter" -> "Alternatively"), and punctuation
            # may merge with the newlines after it (".\n\n"): only text before the last whitespace
            # run is settled, and of its tokens the newest `holdback - 1` stay pending as a margin.
            stripped = text.rstrip()
            word_start = max(stripped.rfind(c) for c in (" ", "\n", "\t", "\r")) if stripped else -1
            limit = len(stripped[: word_start + 1].rstrip()) if word_start >= 0 else 0
            keep = len(ids)
        # Walk back to tokens that decode to exactly a prefix of the settled text (a token that holds
        # half of a multi-byte character does not).
        consumed = 0
        while keep > 0:
            decoded = view.decode(ids[:keep])
            if len(decoded) <= limit and text.startswith(decoded):
                consumed = len(decoded)
                break
            keep -= 1
        if not final and keep > 0:
            keep = max(0, keep - (self.holdback - 1))
            consumed = len(view.decode(ids[:keep])) if keep else 0
        if keep <= 0:
            if final:
                logger.warning("live monitor: %d characters of text could not be tokenised cleanly", len(text))
                self._pending_text = ""
            return []
        events: list[LiveSwitchEvent] = []
        for token in ids[:keep]:
            events.extend(self.push(token))
        self._pending_text = self._pending_text[consumed:]
        return events


def _nanmean(values: list[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


__all__ = ["LiveMonitor", "LiveSwitchEvent", "token_id_of"]
