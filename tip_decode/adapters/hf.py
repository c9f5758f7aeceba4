"""Hugging Face `generate` adapter: `TIPLogitsProcessor` over the backend-neutral core.

`generate` hands a processor only `(input_ids, scores)`. The processor therefore works out from
the shapes what happened since its last call (one more token, a new `generate` call, an assisted
decoding rollback) and, because beam search reorders rows without saying so, which previous row
each row continues. It does all of this without reading tensors back to the host on the normal
per-step path.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from tip_decode.core.config import DEFAULT_TRIGGERS, PAPER_ALPHA, PAPER_BETA, TIPConfig
from tip_decode.core.state import PenaltyState, PenaltyTables
from tip_decode.core.vocabulary import SwitchVocabulary

try:
    from transformers import LogitsProcessor
except ImportError as err:  # pragma: no cover - transformers is a core dependency
    raise ImportError('tip_decode.hf needs transformers: pip install "tip-decode"') from err

logger = logging.getLogger(__name__)

_UNSEEN = torch.iinfo(torch.long).max  # "these two rows have not diverged"
#: How many past lengths a batch-of-one generation can roll back to (assisted decoding proposes at
#: most a few dozen tokens per round).
ROLLBACK_DEPTH = 256


class TIPLogitsProcessor(LogitsProcessor):
    r"""Thought-switching penalty (TIP) for `model.generate`.

    Subtracts `alpha` from the logits of thought-switching tokens ("Alternatively", ...) while the
    current thought is younger than `beta` tokens, as in Wang et al., "Thoughts Are All Over the
    Place" (arXiv 2501.18585). Works with greedy search, sampling, `num_return_sequences`, beam
    search and assisted decoding; returns a new tensor and never modifies the scores it is given.

    One instance may serve several `generate` calls one after another: it starts over whenever a
    call's shapes show a new generation (see docs/hf.md for the exact rule); `reset()` forces it.

    Args:
        vocabulary: the switch vocabulary (`SwitchVocabulary.from_tokenizer`).
        alpha: penalty strength (>= 0; `float("inf")` bans switch tokens while the window is open).
        beta: penalty duration in tokens from the start of the current thought (>= 0).
        scope: "think", "all" or "auto" (think markers of the tokenizer decide).

    Example:
        ```python
        >>> from transformers import AutoModelForCausalLM, AutoTokenizer       # doctest: +SKIP
        >>> from tip_decode.hf import TIPLogitsProcessor
        >>> tok = AutoTokenizer.from_pretrained("Qwen/QwQ-32B")                  # doctest: +SKIP
        >>> tip = TIPLogitsProcessor.from_tokenizer(tok, alpha=3.0, beta=600)   # doctest: +SKIP
        >>> out = model.generate(**inputs, logits_processor=[tip])              # doctest: +SKIP
        ```
    """

    def __init__(
        self,
        vocabulary: SwitchVocabulary,
        alpha: float = PAPER_ALPHA,
        beta: int = PAPER_BETA,
        scope: str = "auto",
    ) -> None:
        if not isinstance(vocabulary, SwitchVocabulary):
            raise TypeError(
                "`vocabulary` has to be a SwitchVocabulary (build one with SwitchVocabulary.from_tokenizer, "
                f"or use TIPLogitsProcessor.from_tokenizer), but is {type(vocabulary).__name__}"
            )
        self.config = TIPConfig(alpha=alpha, beta=beta, triggers=vocabulary.triggers, scope=scope)
        self.vocabulary = vocabulary
        self.scope = vocabulary.resolve_scope(self.config.scope)
        self._tables: dict[tuple[int, torch.device], PenaltyTables] = {}
        #: On a GPU, run each step as one captured CUDA graph (set False to run it op by op).
        self.use_cuda_graphs = True
        self.reset()

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        alpha: float = PAPER_ALPHA,
        beta: int = PAPER_BETA,
        triggers: Any = DEFAULT_TRIGGERS,
        scope: str = "auto",
    ) -> TIPLogitsProcessor:
        """Build the processor for `tokenizer` (a Hugging Face tokenizer or `tokenizers.Tokenizer`)."""
        config = TIPConfig(alpha=alpha, beta=beta, triggers=triggers, scope=scope)
        return cls.from_config(tokenizer, config)

    @classmethod
    def from_config(cls, tokenizer: Any, config: TIPConfig) -> TIPLogitsProcessor:
        vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, config.triggers)
        return cls(vocabulary, alpha=config.alpha, beta=config.beta, scope=config.scope)

    def reset(self) -> None:
        """Forget the current generation; the next call starts a new one."""
        self._state: PenaltyState | None = None
        self._prompt: torch.Tensor | None = None
        self._generated = 0
        self._snapshots: dict[int, torch.Tensor] = {}
        self._graph: Any = None

    @property
    def state(self) -> PenaltyState | None:
        """The per-row state of the current generation (for inspection and tests)."""
        return self._state

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.config.enabled:
            return scores.clone()
        batch, length = input_ids.shape
        state = self._state
        if state is None or batch != state.capacity or scores.shape[-1] != state.tables.width:
            self._begin(input_ids, scores)
        else:
            generated = length - self._prompt.shape[1]
            if generated == self._generated + 1:
                self._advance(input_ids)
            elif batch == 1 and 1 <= generated <= self._generated and self._same_prompt(input_ids):
                self._rollback_and_advance(input_ids, generated)
            else:
                self._begin(input_ids, scores)
        return self._write(scores)

    # ----- generation lifecycle -----

    def _tables_for(self, width: int, device: torch.device) -> PenaltyTables:
        key = (width, device)
        if key not in self._tables:
            self._tables[key] = PenaltyTables(self.vocabulary, self.scope, width, device)
        return self._tables[key]

    def _begin(self, input_ids: torch.Tensor, scores: torch.Tensor) -> None:
        self.reset()
        batch = input_ids.shape[0]
        tables = self._tables_for(scores.shape[-1], scores.device)
        device = tables.device
        state = PenaltyState(tables, batch)
        ids = input_ids.to(device)
        state.start_rows(
            torch.arange(batch, device=device),
            alpha=torch.full((batch,), self.config.alpha, device=device),
            beta=torch.full((batch,), self.config.beta, dtype=torch.long, device=device),
            prompt_open=_ends_in_open_think(ids, tables.think_start, tables.think_end),
        )
        self._state = state
        self._prompt = input_ids
        # Static buffers: each step writes into them in place, so that on a GPU the whole step can
        # be one captured CUDA graph (a step is dozens of tiny kernels; launching them one by one
        # would cost more than the penalty itself).
        self._tokens = torch.zeros(batch, dtype=torch.long, device=device)
        self._negative_amount = -state.amount(state.ints, self.config.alpha)
        if batch > 1:
            self._divergence, self._divergent_token = _first_divergence(ids)
            self._gather_at = torch.where(self._divergence != _UNSEEN, self._divergence, 0).flatten()
            self._seen = torch.zeros((batch, batch * batch), dtype=torch.long, device=device)
            self._next_position = torch.tensor(ids.shape[1], device=device)
            self._rows = torch.arange(batch, device=device)
        if self.use_cuda_graphs and device.type == "cuda":
            self._capture()
        self._snapshot()

    def _advance(self, input_ids: torch.Tensor) -> None:
        ids = input_ids.to(self._tokens.device)
        self._tokens.copy_(ids[:, -1])
        if ids.shape[0] > 1:
            torch.index_select(ids, 1, self._gather_at, out=self._seen)
        if self._graph is not None:
            self._graph.replay()
        else:
            self._step()
        self._generated += 1
        self._snapshot()

    def _step(self) -> None:
        """One token per row, on static buffers only (this is what a CUDA graph captures)."""
        state = self._state
        ints = state.ints
        if ints.shape[0] > 1:
            ints = ints[self._parents()]
        advanced = state.advance(ints, self._tokens)
        state.ints.copy_(advanced)
        self._negative_amount.copy_(-state.amount(advanced, self.config.alpha))

    def _write(self, scores: torch.Tensor) -> torch.Tensor:
        out = scores.clone()
        columns = self._state.tables.columns
        if columns.numel():
            # x + (-a) is exactly x - a, and x + (-0.0) is x bit for bit (also for -inf and -0.0).
            out.index_add_(1, columns, self._negative_amount.to(out.dtype))
        return out

    def _capture(self) -> None:
        buffers = [self._state.ints, self._negative_amount]
        if self._state.capacity > 1:
            buffers += [self._divergence, self._divergent_token, self._gather_at, self._next_position]
        saved = [b.clone() for b in buffers]
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._step()  # warm-up outside the capture, as CUDA graphs require
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step()
            self._graph = graph
        except RuntimeError as err:  # e.g. generate itself running under a graph capture
            logger.warning("TIPLogitsProcessor runs without CUDA graphs: %s", err)
            self._graph = None
        for buffer, value in zip(buffers, saved):
            buffer.copy_(value)

    def _same_prompt(self, input_ids: torch.Tensor) -> bool:
        # Only reached when a batch of one got shorter or stayed as long: assisted decoding rolling
        # back rejected candidates, or a new `generate` call. Telling them apart needs one look at
        # the prompt on the host; assisted decoding syncs every round anyway.
        prompt = self._prompt
        return bool(torch.equal(input_ids[:, : prompt.shape[1]], prompt.to(input_ids.device)))

    def _rollback_and_advance(self, input_ids: torch.Tensor, generated: int) -> None:
        snapshot = self._snapshots.get(generated - 1)
        if snapshot is None:
            raise RuntimeError(
                f"TIPLogitsProcessor cannot roll back {self._generated - generated + 1} tokens "
                f"(it keeps the last {ROLLBACK_DEPTH}); create a new processor for this generation"
            )
        self._generated = generated - 1
        self._state.ints.copy_(snapshot)
        for length in [k for k in self._snapshots if k > self._generated]:
            del self._snapshots[length]
        self._advance(input_ids)

    def _snapshot(self) -> None:
        # Only a batch of one can be rolled back (assisted decoding); larger batches skip the copy.
        if self._state.capacity == 1:
            self._snapshots[self._generated] = self._state.ints.clone()
            self._snapshots.pop(self._generated - ROLLBACK_DEPTH, None)

    # ----- which previous row does each row continue? -----

    def _parents(self) -> torch.Tensor:
        """parents[b] = a previous row whose whole sequence equals row b without its newest token.

        For every pair of previous rows we keep the first position where they differ and the token
        each had there. A previous row a is row b's parent exactly when, at the divergence position
        of a with every other row, row b holds a's token: that decides equality of whole sequences by
        looking at one position per pair, so the cost does not grow with the generated length.
        `self._seen` holds those tokens of every row, gathered before the step.
        """
        batch = self._rows.shape[0]
        diverged = self._divergence != _UNSEEN
        seen = self._seen.view(batch, batch, batch)
        match = ((seen == self._divergent_token[None]) | ~diverged[None]).all(dim=2)
        # Prefer the row itself (sampling never reorders); else the first match (beam search).
        parents = torch.where(match.diagonal(), self._rows, match.int().argmax(dim=1))
        inherited = self._divergence[parents][:, parents]
        inherited_token = self._divergent_token[parents][:, parents]
        same_so_far = inherited == _UNSEEN
        tokens = self._tokens
        differ_now = tokens[:, None] != tokens[None, :]
        self._divergence.copy_(torch.where(same_so_far & differ_now, self._next_position, inherited))
        self._divergent_token.copy_(torch.where(same_so_far, tokens[:, None].expand_as(inherited), inherited_token))
        self._gather_at.copy_(torch.where(self._divergence != _UNSEEN, self._divergence, 0).flatten())
        self._next_position += 1
        return parents


def _ends_in_open_think(ids: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Per row: the last think start marker comes after the last end marker (vectorised)."""
    positions = torch.arange(ids.shape[1], device=ids.device)
    last_start = torch.where(ids == start, positions, -1).amax(dim=1)
    last_end = torch.where(ids == end, positions, -1).amax(dim=1)
    return last_start > last_end


def _first_divergence(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every pair of rows: first position where they differ (or `_UNSEEN`), and row a's token there."""
    batch = ids.shape[0]
    divergence = torch.full((batch, batch), _UNSEEN, dtype=torch.long, device=ids.device)
    token_there = torch.zeros((batch, batch), dtype=torch.long, device=ids.device)
    if ids.shape[1] == 0:
        return divergence, token_there
    for a in range(batch):
        differs = ids[a][None, :] != ids
        first = differs.int().argmax(dim=1)
        divergence[a] = torch.where(differs.any(dim=1), first, _UNSEEN)
        token_there[a] = ids[a][first]
    return divergence, token_there

