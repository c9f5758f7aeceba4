"""Hugging Face `generate` adapter: one logits processor for every reasoning intervention.

`ReasoningInterventionsProcessor` applies any `InterventionSet` (tip, nowait, cyclic, gated, budget;
docs/interventions.md) over the core's per-row `InterventionState`: per step it advances every row by
its newest token, then makes the plan's one logits write. `TIPLogitsProcessor` is its TIP-only form,
built from a switch vocabulary with the constructor it always had.

`generate` hands a processor only `(input_ids, scores)`. The processor therefore works out from
each call what happened since the last one (one more token, a new `generate` call, an assisted
decoding rollback) and, because beam search reorders rows without saying so, which previous row
each row continues. The per-step path reads nothing back to the host.

What costs what (docs/hf.md, docs/performance.md):
- one token per row: O(rows), whatever the history length; rules that read the logits (gated's
  entropy, budget's forced word) add O(rows x vocabulary), also independent of the history;
- rows that share a prompt (beam search, `num_return_sequences`): a pairwise divergence table per
  group of identical prompts, O(rows * group size**2); rows with distinct prompts pay nothing;
- the first call of a generation with more than one row reads back to the host which rows share a
  prompt (once more to confirm when some do); a possible rollback of a batch of one compares the
  input with the tokens seen so far on the host. Nothing else leaves the device.

The step as a checked CUDA graph lives in `hf_graph.py` (`GraphSteps`), which previous row each row
continues (beam search) and a batch of one's history (rollbacks) in `hf_rows.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch

from tip_decode.adapters.hf_graph import GRAPH_CHECK_STEPS, GraphSteps, StepGraph, _HostFlag, capture_cuda_graph
from tip_decode.adapters.hf_rows import _RowTracker, _TokenHistory
from tip_decode.core.config import DEFAULT_TRIGGERS, PAPER_ALPHA, PAPER_BETA, TIPConfig
from tip_decode.core.interventions import (
    InterventionPlan,
    InterventionSet,
    InterventionState,
    PlanTables,
    plan_for,
    prompt_state,
    tip_only_plan,
)
from tip_decode.core.vocabulary import SwitchVocabulary, view_of

try:
    from transformers import LogitsProcessor
except ImportError as err:  # pragma: no cover - transformers is a core dependency
    raise ImportError('tip_decode.hf needs transformers: pip install "tip-decode"') from err

logger = logging.getLogger(__name__)

#: How many past lengths a batch-of-one generation can roll back to (assisted decoding proposes at
#: most a few dozen tokens per round).
ROLLBACK_DEPTH = 256


def _interventions_from(interventions: Any, configs: dict[str, Any]) -> InterventionSet:
    """One `InterventionSet` from the constructor's arguments (errors name the argument)."""
    keywords = InterventionSet(**configs)  # a TypeError names an unknown keyword or a wrong type
    if interventions is None:
        return keywords
    given = [name for name, config in configs.items() if config is not None]
    if given:
        raise ValueError(
            "give the interventions either as one `interventions` argument or as keyword configurations "
            f"({', '.join(f'{name}=...' for name in given)}), not both"
        )
    if isinstance(interventions, InterventionSet):
        return interventions
    if isinstance(interventions, Mapping):
        return InterventionSet.from_mapping(interventions)
    raise TypeError(
        "`interventions` has to be an InterventionSet or a mapping of flat keys such as "
        f'{{"tip_alpha": 3.0, "budget_min": 200}}, but is {type(interventions).__name__}'
    )


class ReasoningInterventionsProcessor(GraphSteps, LogitsProcessor):
    r"""Decoding-time reasoning interventions for `model.generate`, in any combination.

    Applies the interventions of one `InterventionSet` to every row: `tip` (thought-switching
    penalty, arXiv 2501.18585), `nowait` (NoWait, arXiv 2506.08343), `cyclic` (CyclicReflex, arXiv
    2506.11077), `budget` (minimum / maximum thinking length, s1 budget forcing) and `gated` (TIP
    gated by the thought's confidence; this project's own). Their rules, defaults and sources are in
    docs/interventions.md; several combine in one processor with one logits write per step. Works
    with greedy search, sampling, `num_return_sequences`, beam search and assisted decoding; returns
    a new tensor and never modifies the scores it is given.

    One instance may serve several `generate` calls one after another: each call gets what a new
    instance would give, except in the cases docs/hf.md lists (a call that continues the token
    sequence of the previous one); `reset()` starts over by hand.

    Args:
        tokenizer: the model's tokenizer (a Hugging Face tokenizer or `tokenizers.Tokenizer`).
        interventions: an `InterventionSet`, or a mapping of the flat keys vLLM requests use
            (`{"tip_alpha": 3.0, "nowait": 1, "budget_min": 200}`).
        **configs: or the configurations as keywords, one per registered intervention (`tip=TIPConfig`,
            `nowait=NoWaitConfig`, `cyclic=CyclicConfig`, `gated=GatedConfig`, `budget=BudgetConfig`),
            instead of `interventions`.

    With no intervention turned on, every call returns an unchanged copy of the scores.

    Raises:
        TypeError: `tokenizer` is not a tokenizer, or `interventions` has another type.
        ValueError: an invalid setting, or one the tokenizer cannot serve (a keyword with no
            token, a budget without think markers, ...); the message names the key.

    Example:
        >>> from transformers import AutoTokenizer
        >>> from tip_decode.demo import MODEL_DIR
        >>> from tip_decode.hf import ReasoningInterventionsProcessor
        >>> tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
        >>> processor = ReasoningInterventionsProcessor(tokenizer, {"tip_alpha": 3.0, "budget_min": 20})
        >>> processor.interventions.names
        ('tip', 'budget')
    """

    def __init__(
        self,
        tokenizer: Any,
        interventions: InterventionSet | Mapping[str, Any] | None = None,
        **configs: Any,
    ) -> None:
        settings = _interventions_from(interventions, configs)
        view_of(tokenizer)  # a TypeError that names the problem for anything but a tokenizer
        self._setup(plan_for(tokenizer, settings) if settings else None, settings)

    def _setup(self, plan: InterventionPlan | None, interventions: InterventionSet) -> None:
        #: The interventions every row gets.
        self.interventions = interventions
        # Only finite biases (no ban, no forcing: TIP with a finite alpha, CyclicReflex, ...): each
        # step adds them in one pass (`InterventionState.apply(finite=True)`), the same values.
        self._only_finite = interventions.only_finite
        #: Their plan for this tokenizer (None when nothing is turned on).
        self.plan = plan
        #: On a GPU, run each step as one captured CUDA graph (set False to run it op by op).
        self.use_cuda_graphs = True
        #: Check the graph against the eager step on the first `GRAPH_CHECK_STEPS` steps of each
        #: generation; a mismatch switches this instance to eager steps (with one warning).
        self.check_cuda_graphs = True
        #: Builds the step graph (`capture_cuda_graph`); tests substitute stand-ins, since a real
        #: CUDA graph needs a GPU.
        self.graph_factory: Callable[[Callable[[], None], torch.device], StepGraph | None] = capture_cuda_graph
        self._graph_rejected = False
        self._fresh_rows: dict[int, tuple[list[int], list[float]]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the current generation; the next call starts a new one.

        Needed only between `generate` calls that the processor cannot tell apart from one
        generation (see docs/hf.md); the plan and its lookup tables are kept, so it is cheap.
        """
        self._state: InterventionState | None = None
        self._tracker: _RowTracker | None = None
        self._history: _TokenHistory | None = None
        self._prompt_length = 0
        self._length = 0  # length of the newest input seen
        self._snapshots: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._graph: StepGraph | None = None
        self._graph_checks_left = 0
        self._graph_mismatch: torch.Tensor | None = None
        self._graph_verdict: _HostFlag | None = None
        # Static buffers of the graph step (allocated only while a graph is in use): the scores (the
        # whole rows when a rule reads them, else the plan's columns) and the values written.
        self._full: torch.Tensor | None = None
        self._sub: torch.Tensor | None = None
        self._written: torch.Tensor | None = None

    @property
    def state(self) -> InterventionState | None:
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
        if self.plan is None:
            return scores.clone()
        batch, length = input_ids.shape
        state = self._state
        if state is None or batch != state.capacity or scores.shape[-1] != state.tables.width or scores.device != state.tables.device:
            self._begin(input_ids, scores)
            newest = False
        elif length == self._length + 1:
            newest = True
        elif batch == 1 and self._prompt_length < length <= self._length and self._history.starts(input_ids, length - 1):
            self._roll_back_to(length - 1)  # assisted decoding rejected candidates
            newest = True
        else:
            self._begin(input_ids, scores)
            newest = False
        if newest:
            self._take_newest(input_ids)
        out = self._process(scores, newest)
        self._snapshot()
        return out

    # ----- generation lifecycle -----

    def _begin(self, input_ids: torch.Tensor, scores: torch.Tensor) -> None:
        self.reset()
        batch, length = input_ids.shape
        tables = self.plan.tables(scores.shape[-1], scores.device)
        device = tables.device
        ids = input_ids.to(device)
        state = InterventionState(tables, batch)
        prompt_open, prompt_think = prompt_state(tables, ids)
        ints, floats = self._row_values(tables)
        state.start_rows_from(
            torch.arange(batch, device=device),
            torch.tensor(ints, dtype=torch.long).to(device).repeat(batch, 1),
            torch.tensor(floats, dtype=torch.float32).to(device).repeat(batch, 1),
            prompt_open,
            prompt_think,
        )
        self._state = state
        self._prompt_length = self._length = length
        self._tokens = torch.zeros(batch, dtype=torch.long, device=device)  # static: the newest token per row
        if batch > 1:
            self._tracker = _RowTracker.for_prompts(ids)
        else:
            self._history = _TokenHistory(ids)
        self._prepare_graph(scores)

    def _row_values(self, tables: PlanTables) -> tuple[list[int], list[float]]:
        """Host values of one fresh row of this processor's settings (computed once per tables)."""
        key = id(tables)
        if key not in self._fresh_rows:
            self._fresh_rows[key] = tables.row_values(self.interventions)
        return self._fresh_rows[key]

    def _take_newest(self, input_ids: torch.Tensor) -> None:
        ids = input_ids.to(self._tokens.device)
        self._tokens.copy_(ids[:, -1])
        if self._tracker is not None:
            self._tracker.gather(ids)
        if self._history is not None:
            self._history.write(ids[:, -1:], self._length)
        self._length += 1

    def _roll_back_to(self, length: int) -> None:
        """Go back to the state after the call that saw `length` tokens (its logits write included)."""
        snapshot = self._snapshots.get(length)
        if snapshot is None:
            raise RuntimeError(
                f"{type(self).__name__} cannot roll back {self._length - length} tokens "
                f"(it keeps the last {ROLLBACK_DEPTH}); create a new processor for this generation"
            )
        self._state.restore(snapshot)
        self._length = length
        for key in [k for k in self._snapshots if k > length]:
            del self._snapshots[key]

    def _snapshot(self) -> None:
        # Only a batch of one can be rolled back (assisted decoding); larger batches skip the copy.
        # Taken after the logits write, which records decisions the next token confirms (gated's
        # entropy, a forced word): a rollback to this length keeps them.
        if self._history is not None:
            self._snapshots[self._length] = self._state.snapshot()
            self._snapshots.pop(self._length - ROLLBACK_DEPTH, None)

    # ----- one call: update then apply -----

    def _process(self, scores: torch.Tensor, newest: bool) -> torch.Tensor:
        """Advance the rows by their newest tokens (when `newest`), then write the plan's bias into
        a copy of `scores`."""
        eager_static = False
        if self._graph is not None and newest and self._graph_verdict is not None:
            # The check's verdict travels to the host without blocking; the step that reads it and
            # the steps until it arrives run eagerly (always right), then the graph takes over or
            # is dropped.
            self._read_graph_verdict()
            eager_static = True
        if self._graph is None:
            if newest:
                self._advance_rows()
            return self._state.apply(scores.clone(), finite=self._only_finite)
        if self._full is not None:
            self._full.copy_(scores)
        else:
            torch.index_select(scores, 1, self._state.tables.columns, out=self._sub)
        if not newest:
            self._apply_static()  # the first call of a generation: no token to advance by
        elif self._graph_checks_left:
            self._checked_step(self._graph)
        elif eager_static:
            self._graph_step()
        else:
            self._graph.replay()
        out = scores.clone()
        out.index_copy_(1, self._state.tables.columns, self._written.to(out.dtype))
        return out

    def _advance_rows(self) -> None:
        state = self._state
        if self._tracker is not None:
            state.select(self._tracker.parents(self._tokens))
        state.update(self._tokens)

    def _apply_static(self) -> None:
        """The plan's contribution and one write (as `InterventionState.apply` makes them), on the
        static buffers: the values of the plan's columns go to `_written`."""
        state = self._state
        tables = state.tables
        full = self._full
        sub = full.index_select(1, tables.columns) if full is not None else self._sub
        step = tables.contribute(state.ints, state.floats, self._whole_rows)
        self._written.copy_(tables.combine(sub, step.bias, step.forced))
        step.store(state.ints, state.floats)

    def _whole_rows(self) -> torch.Tensor:
        if self._full is None:  # the plan said no rule reads the logits rows
            raise RuntimeError("a rule read the logits rows without declaring `reads_logits`")
        return self._full

    def _graph_step(self) -> None:
        """One step on static buffers only: what a CUDA graph captures."""
        self._advance_rows()
        self._apply_static()


class TIPLogitsProcessor(ReasoningInterventionsProcessor):
    r"""Thought-switching penalty (TIP) for `model.generate`: the TIP-only `ReasoningInterventionsProcessor`.

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
        >>> from transformers import AutoTokenizer
        >>> from tip_decode.demo import MODEL_DIR
        >>> from tip_decode.hf import TIPLogitsProcessor
        >>> tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
        >>> tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=600)
        >>> tip.scope, tip.config.alpha
        ('think', 3.0)
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
        plan = tip_only_plan(vocabulary, self.scope) if self.config.enabled else None
        self._setup(plan, InterventionSet(tip=self.config))

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


__all__ = ["GRAPH_CHECK_STEPS", "ReasoningInterventionsProcessor", "StepGraph", "TIPLogitsProcessor", "capture_cuda_graph"]
