"""llama-cpp-python adapter: one logits processor for every reasoning intervention.

llama-cpp-python runs the processors of a `LogitsProcessorList` as the first stage of its sampler
chain, once per generated token, with `(input_ids, scores)`: `input_ids` is every token in the
context (the prompt and the tokens generated so far, whatever part of the prompt was reused from an
earlier call), `scores` a float32 numpy view of the raw logits inside llama.cpp's candidate array,
in vocabulary order. The processor writes the interventions' biases into that view in place
(through a zero-copy torch view: no copy of the vocabulary-wide row) and returns it.

Which generation a call belongs to is read from `input_ids` (`tip_decode.adapters.sequence`); the
rules, state and logits write are the core's (`tip_decode.core.interventions`). See docs/llama-cpp.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import llama_cpp
except ImportError:
    raise ImportError('tip_decode.llama_cpp needs llama-cpp-python: pip install "tip-decode[llama-cpp]"') from None

from tip_decode.adapters.gguf import gguf_tokenizer
from tip_decode.adapters.sequence import SequenceFollower, interventions_from
from tip_decode.core.interventions import InterventionSet, plan_for
from tip_decode.core.vocabulary import view_of


def tokenizer_of(source: Any) -> Any:
    """The vocabulary the processor reads: a `Llama`'s GGUF file (or a GGUF path) read from its
    metadata, or a Hugging Face / `tokenizers` tokenizer as given."""
    if isinstance(source, llama_cpp.Llama):
        return gguf_tokenizer(source.model_path)
    if isinstance(source, (str, os.PathLike)):
        return gguf_tokenizer(Path(source))
    view_of(source)  # a TypeError that names the problem for anything but a tokenizer
    return source


class ReasoningInterventionsProcessor:
    r"""Decoding-time reasoning interventions for llama-cpp-python, in any combination.

    TIP, NoWait, CyclicReflex, thinking budgets and gated TIP (docs/interventions.md), from one
    `InterventionSet` or a mapping of its flat keys, as a `llama_cpp.LogitsProcessorList` member.
    Works with `Llama.__call__`, `create_completion`, `create_chat_completion` and `generate`; one
    instance serves any number of calls, each a new generation (read from the tokens it is given).

    Args:
        source: the `llama_cpp.Llama` (its vocabulary is read from its GGUF file), the path of a
            GGUF file, or the model's Hugging Face tokenizer.
        settings: an `InterventionSet` or a mapping of flat keys (`{"tip_alpha": 3.0, "nowait": 1}`).

    Raises:
        TypeError: `source` is none of these, or `settings` has another type.
        ValueError: an invalid setting, or one the vocabulary cannot serve (the message names the
            key); a `Llama` with a draft model (its processors see the drafted tokens).
        GGUFError: the GGUF vocabulary is not byte-level BPE (pass the Hugging Face tokenizer).

    Example:
        >>> import llama_cpp
        >>> from tip_decode.llama_cpp import ReasoningInterventionsProcessor
        >>> llm = llama_cpp.Llama("model.gguf")                                   # doctest: +SKIP
        >>> tip = ReasoningInterventionsProcessor(llm, {"tip_alpha": 3.0, "tip_beta": 600})  # doctest: +SKIP
        >>> llm("Question: ...", logits_processor=llama_cpp.LogitsProcessorList([tip]))  # doctest: +SKIP
    """

    def __init__(self, source: Any, settings: InterventionSet | Mapping[str, Any] | None = None) -> None:
        #: The interventions every generation gets.
        self.interventions = interventions_from(settings)
        if isinstance(source, llama_cpp.Llama) and getattr(source, "draft_model", None) is not None:
            raise ValueError(
                "this Llama has a draft model: llama-cpp-python then calls logits processors with the drafted "
                "tokens after the one being sampled, so no processor can follow the sequence; create the Llama without draft_model"
            )
        #: The vocabulary the plan was built from (a `GGUFTokenizer` for a Llama or GGUF path).
        self.tokenizer = tokenizer_of(source)
        #: The plan (None when no intervention is on: the scores are returned untouched).
        self.plan = plan_for(self.tokenizer, self.interventions) if self.interventions else None
        if self.plan is not None and isinstance(source, llama_cpp.Llama):
            self.plan.tables(source.n_vocab(), "cpu")  # token ids beyond the model's logits fail here, not mid-generation
        self._follower = SequenceFollower(self.plan, self.interventions, rollback_depth=0) if self.plan is not None else None

    def reset(self) -> None:
        """Forget the current generation (the next call starts a new one whatever its tokens)."""
        if self._follower is not None:
            self._follower.reset()

    @property
    def state(self) -> Any:
        """The per-row state of the newest generation (for inspection and tests), or None."""
        if self._follower is None or not self._follower.sequences:
            return None
        return self._follower.sequences[-1].state

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self._follower is None:
            return scores
        sequence = self._follower.observe(input_ids, scores.shape[-1])
        # A (1, vocabulary) torch view of llama.cpp's logits (strided: they sit inside its
        # candidate records); the state writes the plan's columns in place.
        sequence.state.apply(torch.from_numpy(scores)[None], finite=sequence.finite)
        return scores
