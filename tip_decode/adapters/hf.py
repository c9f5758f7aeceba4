"""Hugging Face `generate` adapter: `TIPLogitsProcessor` over the backend-neutral core.

`generate` hands a processor only `(input_ids, scores)`. The processor therefore works out from
each call what happened since the last one (one more token, a new `generate` call, an assisted
decoding rollback) and, because beam search reorders rows without saying so, which previous row
each row continues. The per-step path reads nothing back to the host.

What costs what (docs/hf.md, docs/performance.md):
- one token per row: O(rows), whatever the history length;
- rows that share a prompt (beam search, `num_return_sequences`): a pairwise divergence table per
  group of identical prompts, O(rows * group size**2); rows with distinct prompts pay nothing;
- the first call of a generation with more than one row reads back to the host which rows share a
  prompt (once more to confirm when some do); a possible rollback of a batch of one compares the
  input with the tokens seen so far on the host. Nothing else leaves the device.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch

from tip_decode.core.config import DEFAULT_TRIGGERS, PAPER_ALPHA, PAPER_BETA, TIPConfig
from tip_decode.core.state import PenaltyState, PenaltyTables, StateSnapshot, subtract_penalty
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
#: Steps at the start of every generation on which a captured CUDA-graph step is checked against
#: the eager step (the graph path is new; a wrong graph must never go unnoticed).
GRAPH_CHECK_STEPS = 4


class StepGraph(Protocol):
    """A captured processor step: `replay()` has the effect of one call of the step function."""

    def replay(self) -> None: ...


def capture_cuda_graph(step: Callable[[], None], device: torch.device) -> StepGraph | None:
    """Capture `step` (which works on static buffers only) as one CUDA graph; None off CUDA.

    The caller saves and restores the buffers around this call: the warm-up runs the step once.
    Raises RuntimeError when the capture fails (for example inside another capture).
    """
    if device.type != "cuda":
        return None
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        step()  # warm-up outside the capture, as CUDA graphs require
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


class TIPLogitsProcessor(LogitsProcessor):
    r"""Thought-switching penalty (TIP) for `model.generate`.

    Subtracts `alpha` from the logits of thought-switching tokens ("Alternatively", ...) while the
    current thought is younger than `beta` tokens, as in Wang et al., "Thoughts Are All Over the
    Place" (arXiv 2501.18585). Works with greedy search, sampling, `num_return_sequences`, beam
    search and assisted decoding; returns a new tensor and never modifies the scores it is given.

    One instance may serve several `generate` calls one after another: each call gets what a new
    instance would give, except in the cases docs/hf.md lists (a call that continues the token
    sequence of the previous one); `reset()` starts over by hand.

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
        #: Check the graph against the eager step on the first `GRAPH_CHECK_STEPS` steps of each
        #: generation; a mismatch switches this instance to eager steps (with one warning).
        self.check_cuda_graphs = True
        #: Builds the step graph (`capture_cuda_graph`); tests substitute stand-ins, since a real
        #: CUDA graph needs a GPU.
        self.graph_factory: Callable[[Callable[[], None], torch.device], StepGraph | None] = capture_cuda_graph
        self._graph_rejected = False
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
        """Forget the current generation; the next call starts a new one.

        Needed only between `generate` calls that the processor cannot tell apart from one
        generation (see docs/hf.md); the vocabulary and lookup tables are kept, so it is cheap.
        """
        self._state: PenaltyState | None = None
        self._tracker: _RowTracker | None = None
        self._history: _TokenHistory | None = None
        self._prompt_length = 0
        self._length = 0  # length of the newest input seen
        self._snapshots: dict[int, StateSnapshot] = {}
        self._graph: StepGraph | None = None
        self._graph_checks_left = 0
        self._graph_mismatch: torch.Tensor | None = None
        self._graph_verdict: _HostFlag | None = None

    @property
    def state(self) -> PenaltyState | None:
        """The per-row state of the current generation (for inspection and tests)."""
        return self._state

    @property
    def tracks_reordering(self) -> bool:
        """Whether the current generation follows reordered rows (some rows share a prompt)."""
        return self._tracker is not None

    @property
    def graph_active(self) -> bool:
        """Whether the current generation runs its steps as a captured graph."""
        return self._graph is not None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.config.enabled:
            return scores.clone()
        batch, length = input_ids.shape
        state = self._state
        if (
            state is None
            or batch != state.capacity
            or scores.shape[-1] != state.tables.width
            or scores.device != state.tables.device
        ):
            self._begin(input_ids, scores)
        elif length == self._length + 1:
            self._advance(input_ids)
        elif batch == 1 and self._prompt_length < length <= self._length and self._history.starts(input_ids, length - 1):
            self._rollback_and_advance(input_ids)
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
        batch, length = input_ids.shape
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
        self._prompt_length = self._length = length
        # Static buffers: each step writes into them in place, so that on a GPU the whole step can
        # be one captured CUDA graph (a step is dozens of tiny kernels; launching them one by one
        # would cost more than the penalty itself).
        self._tokens = torch.zeros(batch, dtype=torch.long, device=device)
        self._negative_amount = -state.penalty()
        if batch > 1:
            self._tracker = _RowTracker.for_prompts(ids)
        else:
            self._history = _TokenHistory(ids)
        self._prepare_graph(device)
        self._snapshot()

    def _advance(self, input_ids: torch.Tensor) -> None:
        ids = input_ids.to(self._tokens.device)
        self._tokens.copy_(ids[:, -1])
        if self._tracker is not None:
            self._tracker.gather(ids)
        if self._history is not None:
            self._history.write(ids[:, -1:], self._length)
        self._run_step()
        self._length += 1
        self._snapshot()

    def _step(self) -> None:
        """One token per row, on static buffers only (this is what a CUDA graph captures)."""
        state = self._state
        if self._tracker is not None:
            state.select(self._tracker.parents(self._tokens))
        state.update(self._tokens)
        self._negative_amount.copy_(-state.penalty())

    def _write(self, scores: torch.Tensor) -> torch.Tensor:
        out = scores.clone()
        columns = self._state.tables.columns
        if not columns.numel():
            return out
        if math.isinf(self.config.alpha):
            # A ban must give -inf, also on a +inf logit, where adding -inf would give NaN.
            out[:, columns] = subtract_penalty(out[:, columns], -self._negative_amount.to(out.dtype))
        else:
            # x + (-a) is exactly x - a, and x + (-0.0) is x bit for bit (also for -inf and -0.0).
            out.index_add_(1, columns, self._negative_amount.to(out.dtype))
        return out

    def _rollback_and_advance(self, input_ids: torch.Tensor) -> None:
        """Assisted decoding rejected candidates: go back to the state before the newest token."""
        length = input_ids.shape[1]
        snapshot = self._snapshots.get(length - 1)
        if snapshot is None:
            raise RuntimeError(
                f"TIPLogitsProcessor cannot roll back {self._length - length + 1} tokens "
                f"(it keeps the last {ROLLBACK_DEPTH}); create a new processor for this generation"
            )
        self._state.restore(snapshot)
        self._length = length - 1
        for key in [k for k in self._snapshots if k > self._length]:
            del self._snapshots[key]
        self._advance(input_ids)

    def _snapshot(self) -> None:
        # Only a batch of one can be rolled back (assisted decoding); larger batches skip the copy.
        if self._history is not None:
            self._snapshots[self._length] = self._state.snapshot()
            self._snapshots.pop(self._length - ROLLBACK_DEPTH, None)

    # ----- the step as a graph, checked against the eager step -----

    def _prepare_graph(self, device: torch.device) -> None:
        if not self.use_cuda_graphs or self._graph_rejected:
            return
        saved = self._save_step()
        try:
            graph = self.graph_factory(self._step, device)
        except RuntimeError as err:  # e.g. generate itself running under a graph capture
            logger.warning("TIPLogitsProcessor runs without CUDA graphs: %s", err)
            graph = None
        finally:
            self._restore_step(saved)
        self._graph = graph
        if graph is not None and self.check_cuda_graphs:
            self._graph_checks_left = GRAPH_CHECK_STEPS
            self._graph_mismatch = torch.zeros((), dtype=torch.bool, device=device)
            # Allocated here, at the start of a generation: pinned memory is not allocated on
            # the per-step path.
            self._graph_verdict_host = torch.empty((), dtype=torch.bool, pin_memory=device.type == "cuda")

    def _run_step(self) -> None:
        graph = self._graph
        if graph is None:
            self._step()
        elif self._graph_checks_left:
            self._checked_step(graph)
        elif self._graph_verdict is not None:
            # The check's result travels to the host without blocking; until it arrives, steps
            # run eagerly (always right), then the graph takes over or is dropped.
            mismatch = self._graph_verdict.result()
            if mismatch is not None:
                self._graph_verdict = None
                if mismatch:
                    self._reject_graph()
            self._step()
        else:
            graph.replay()

    def _checked_step(self, graph: StepGraph) -> None:
        """Replay the graph, keep its result aside, then run the eager step from the same start.

        The eager result is the one kept, so a wrong graph never reaches the scores; the two are
        compared on the device and the verdict is read on the host later without a sync.
        """
        before = self._save_step()
        graph.replay()
        from_graph = self._save_step()
        self._restore_step(before)
        self._step()
        self._graph_mismatch |= ~self._step_matches(from_graph)
        self._graph_checks_left -= 1
        if not self._graph_checks_left:
            self._graph_verdict = _HostFlag(self._graph_mismatch, self._graph_verdict_host)

    def _reject_graph(self) -> None:
        self._graph = None
        self._graph_rejected = True
        logger.warning(
            "TIPLogitsProcessor: the CUDA-graph step differed from the eager step; this processor "
            "runs its steps eagerly from now on (the penalties given were computed eagerly). "
            "Please report this with your torch version and GPU."
        )

    def _save_step(self) -> tuple[Any, ...]:
        tracker = self._tracker.snapshot() if self._tracker is not None else ()
        return self._state.snapshot(), self._negative_amount.clone(), tracker

    def _restore_step(self, saved: tuple[Any, ...]) -> None:
        state, amount, tracker = saved
        self._state.restore(state)
        self._negative_amount.copy_(amount)
        if self._tracker is not None:
            self._tracker.restore(tracker)

    def _step_matches(self, saved: tuple[Any, ...]) -> torch.Tensor:
        state, amount, tracker = saved
        same = self._state.matches(state)
        same = same & self._negative_amount.view(torch.int32).eq(amount.view(torch.int32)).all()
        if self._tracker is not None:
            same = same & self._tracker.matches(tracker)
        return same


class _TokenHistory:
    """The tokens a batch of one has seen so far (prompt and generated), to recognise a rollback.

    Each step writes its newest token at its position (O(1), on the device, no sync); the buffer
    doubles when full. Only a rollback reads it back, to compare with the new input.
    """

    def __init__(self, ids: torch.Tensor) -> None:
        length = ids.shape[1]
        self.tokens = torch.empty((1, max(64, 2 * length)), dtype=torch.long, device=ids.device)
        self.tokens[:, :length] = ids

    def write(self, token: torch.Tensor, position: int) -> None:
        if position >= self.tokens.shape[1]:
            self.tokens = torch.cat((self.tokens, torch.empty_like(self.tokens)), dim=1)
        self.tokens[:, position : position + 1].copy_(token)

    def starts(self, input_ids: torch.Tensor, length: int) -> bool:
        """The first `length` tokens of `input_ids` are the first `length` seen (one host sync)."""
        return bool(torch.equal(input_ids[:, :length].to(self.tokens.device), self.tokens[:, :length]))


class _RowTracker:
    """Which previous row each row continues, for rows that share a prompt (beam search).

    `generate` reorders rows only among the rows of one batch item: beam search moves beams
    within an item, and every other strategy never moves rows. Rows whose first-call inputs are
    identical form a group; a row's parent is searched in its group only, and rows with a prompt
    of their own keep their place at no cost.

    Within a group, for every pair of rows we keep the first position where their sequences
    differ and the token each had there. A previous row a is row b's parent exactly when, at the
    divergence position of a with every other row of the group, row b holds a's token: that
    decides equality of whole sequences by looking at one position per pair, so the cost does
    not grow with the generated length. Groups are padded to one size by repeating their first
    row (a repeated row is identical to itself, so it never changes an answer).
    """

    def __init__(self, groups: list[list[int]], rows: int, length: int, device: torch.device) -> None:
        size = max(len(g) for g in groups)
        padded = [g + [g[0]] * (size - len(g)) for g in groups]
        count = len(groups)
        self.slots = torch.tensor(padded, dtype=torch.long, device=device)  # (groups, size) -> row
        self._row_index = self.slots[:, :, None]
        self._group_index = torch.arange(count, device=device)[:, None, None]
        self._slot_ids = torch.arange(size, device=device)
        # Identical at the first call: no pair has diverged yet.
        self.divergence = torch.full((count, size, size), _UNSEEN, dtype=torch.long, device=device)
        self.divergent_token = torch.zeros((count, size, size), dtype=torch.long, device=device)
        self.gather_at = torch.zeros((count, 1, size * size), dtype=torch.long, device=device)
        self.seen = torch.zeros((count, size, size * size), dtype=torch.long, device=device)
        self.next_position = torch.tensor(length, dtype=torch.long, device=device)
        self.parent_rows = torch.arange(rows, device=device)

    @classmethod
    def for_prompts(cls, ids: torch.Tensor) -> _RowTracker | None:
        """A tracker for the groups of identical rows of a first call; None when all rows differ."""
        groups = [g for g in _identical_row_groups(ids) if len(g) > 1]
        if not groups:
            return None
        return cls(groups, ids.shape[0], ids.shape[1], ids.device)

    def _buffers(self) -> tuple[torch.Tensor, ...]:
        return (self.divergence, self.divergent_token, self.gather_at, self.next_position, self.parent_rows)

    def snapshot(self) -> tuple[torch.Tensor, ...]:
        return tuple(b.clone() for b in self._buffers())

    def restore(self, saved: tuple[torch.Tensor, ...]) -> None:
        for buffer, value in zip(self._buffers(), saved, strict=True):
            buffer.copy_(value)

    def matches(self, saved: tuple[torch.Tensor, ...]) -> torch.Tensor:
        same = torch.ones((), dtype=torch.bool, device=self.slots.device)
        for buffer, value in zip(self._buffers(), saved, strict=True):
            same = same & buffer.eq(value).all()
        return same

    def gather(self, ids: torch.Tensor) -> None:
        """Read, for every row of a group, its tokens at the group's divergence positions (outside
        the graph: `ids` is a new tensor every call)."""
        self.seen.copy_(ids[self._row_index, self.gather_at])

    def parents(self, tokens: torch.Tensor) -> torch.Tensor:
        """parents[b] = a previous row whose whole sequence equals row b without its newest token."""
        count, size = self.slots.shape
        diverged = self.divergence != _UNSEEN
        seen = self.seen.view(count, size, size, size)  # [group, new row, previous row a, other row]
        match = ((seen == self.divergent_token[:, None]) | ~diverged[:, None]).all(dim=3)
        # Prefer the row itself (sampling never reorders); else the first match (beam search).
        own = match.diagonal(dim1=1, dim2=2)
        parent_slot = torch.where(own, self._slot_ids, match.int().argmax(dim=2))
        pick = (self._group_index, parent_slot[:, :, None], parent_slot[:, None, :])
        inherited = self.divergence[pick]
        inherited_token = self.divergent_token[pick]
        same_so_far = inherited == _UNSEEN
        slot_tokens = tokens[self.slots]
        differ_now = slot_tokens[:, :, None] != slot_tokens[:, None, :]
        self.divergence.copy_(torch.where(same_so_far & differ_now, self.next_position, inherited))
        self.divergent_token.copy_(torch.where(same_so_far, slot_tokens[:, :, None].expand_as(inherited), inherited_token))
        self.gather_at.copy_(torch.where(self.divergence != _UNSEEN, self.divergence, 0).view(count, 1, size * size))
        self.next_position += 1
        # A padded slot repeats a row and computes the same parent for it, so duplicate writes agree.
        self.parent_rows[self.slots.flatten()] = self.slots.gather(1, parent_slot).flatten()
        return self.parent_rows


class _HostFlag:
    """A device boolean on its way to the host without blocking (a copy into pinned memory and an
    event on CUDA; `host` is a 0-dim bool CPU tensor, pinned for a CUDA flag)."""

    def __init__(self, flag: torch.Tensor, host: torch.Tensor) -> None:
        self._event = None
        self._host = host
        self._host.copy_(flag, non_blocking=flag.device.type == "cuda")
        if flag.device.type == "cuda":
            self._event = torch.cuda.Event()
            self._event.record()

    def result(self) -> bool | None:
        """The value, or None while the copy is still on its way."""
        if self._event is not None and not self._event.query():
            return None
        return bool(self._host)


def _ends_in_open_think(ids: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Per row: the last think start marker comes after the last end marker (vectorised)."""
    positions = torch.arange(ids.shape[1], device=ids.device)
    last_start = torch.where(ids == start, positions, -1).amax(dim=1) if ids.shape[1] else torch.full((ids.shape[0],), -1, device=ids.device)
    last_end = torch.where(ids == end, positions, -1).amax(dim=1) if ids.shape[1] else torch.full((ids.shape[0],), -1, device=ids.device)
    return last_start > last_end


def _identical_row_groups(ids: torch.Tensor) -> list[list[int]]:
    """Rows of `ids` grouped by equal content, in order of first appearance.

    Rows are first grouped by three integer checksums (exact integer arithmetic: equal rows always
    agree), then the rows of every group of two or more are compared with the group's first row;
    only if two different rows collided on all three sums does it sort whole rows instead. Reads
    the group labels back to the host (one sync), plus one more when some rows share a group.
    """
    rows, length = ids.shape
    if length == 0:
        return [list(range(rows))]
    positions = torch.arange(1, length + 1, device=ids.device)
    mixed = (positions * 2_654_435_761) % 2_147_483_647
    features = torch.stack((ids.sum(dim=1), _row_dot(ids, positions), _row_dot(ids, mixed)), dim=1)
    labels = torch.unique(features, dim=0, return_inverse=True)[1].tolist()
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels):
        groups.setdefault(label, []).append(row)
    shared = [g for g in groups.values() if len(g) > 1]
    if shared:
        members = torch.tensor([r for g in shared for r in g], device=ids.device)
        firsts = torch.tensor([g[0] for g in shared for _ in g], device=ids.device)
        if not bool((ids[members] == ids[firsts]).all()):  # a collision of the sums: sort whole rows
            labels = torch.unique(ids, dim=0, return_inverse=True)[1].tolist()
            groups = {}
            for row, label in enumerate(labels):
                groups.setdefault(label, []).append(row)
    return list(groups.values())


def _row_dot(ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ids @ weights in int64 (wrapping on overflow, the same for equal rows); `mv` on the CPU
    avoids a (rows, length) temporary, CUDA has no integer `mv`."""
    if ids.device.type == "cpu":
        return torch.mv(ids.long(), weights)
    return (ids.long() * weights).sum(dim=1)
