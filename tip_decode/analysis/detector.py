"""`AbandonmentDetector`: a logits processor that watches, and changes nothing.

Only a processor sees the whole next-token distribution, so this one records, for every row and
step, the entropy of the distribution and the probability mass on the tokens that would open a
thought switch right now (single-token switch hits, and multi-token completions whose prefix was
just generated: the tokens `TIPLogitsProcessor` would penalise, ignoring its window). Recording is a
few batched tensor operations into preallocated tensors that double when full; nothing is read back
to the host until `report()` is called after `generate`.

Placement in the `logits_processor` list (transformers runs custom processors in list order, before
temperature / top-k / top-p):
- before `TIPLogitsProcessor`: the model's own distribution (what it wanted to do);
- after it: the penalised distribution that decoding continues from (what TIP let it do).

Supports greedy search and sampling (`num_return_sequences` included). Beam search reorders rows
between steps; `report()` detects that (the tokens it saw no longer match the output) and raises
`ValueError` rather than return signals attributed to the wrong rows. Assisted decoding is not
supported (it starts a new recording whenever the shapes jump).

This module imports only the core (not `tip_decode.hf`), which re-exports the class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from tip_decode.analysis.trace import analyze_response
from tip_decode.core.config import DEFAULT_TRIGGERS, MAX_BETA, PAPER_BETA, TIPConfig
from tip_decode.core.interventions import InterventionSet, InterventionState, PlanTables, prompt_state, tip_only_plan
from tip_decode.core.recognizer import SwitchEvent, check_segmentation_arguments
from tip_decode.core.vocabulary import SwitchVocabulary

try:
    from transformers import LogitsProcessor
except ImportError as err:  # pragma: no cover - transformers is a core dependency
    raise ImportError('tip_decode.analysis.detector needs transformers: pip install "tip-decode"') from err

logger = logging.getLogger(__name__)

#: beta that never closes the window: the switch mass covers every step of the reasoning.
_ALWAYS = MAX_BETA


@dataclass(frozen=True)
class ThoughtSignal:
    """Signals of one thought: positions `[start, end)`, mean entropy (nats) and switch mass over
    its steps, and `switch_mass_before`: the switch-token mass at the step that chose the token
    completing the switch that ends it (the switch's `recognised_at`; None for the last thought)."""

    index: int
    start: int
    end: int
    mean_entropy: float | None
    mean_switch_mass: float | None
    switch_mass_before: float | None

    @property
    def length(self) -> int:
        return self.end - self.start


#: One switch with the detector's signals: the project's one switch record
#: (`tip_decode.core.recognizer.SwitchEvent`) with `premature`, `confident`,
#: `abandoned_mean_entropy`, `entropy_at_switch` and `switch_mass_at_switch` filled.
SwitchSignal = SwitchEvent


@dataclass(frozen=True)
class DetectionReport:
    """Per-row result of `AbandonmentDetector.report`."""

    row: int
    token_ids: list[int]
    entropies: list[float]
    switch_mass: list[float]
    thoughts: list[ThoughtSignal]
    events: list[SwitchEvent]


class AbandonmentDetector(LogitsProcessor):
    r"""Record per-step entropy and switch-token mass during `generate`; report thoughts and switches.

    The logits are not changed: `__call__` returns the very tensor it was given, unmodified. Put it
    before `TIPLogitsProcessor` to measure the model's own distribution, after it to measure the
    penalised one. Greedy search and sampling only (see the module docstring).

    Args:
        vocabulary: the switch vocabulary (the one `TIPLogitsProcessor` uses).
        scope: "auto", "think" or "all", as for the processor.
        premature_threshold: a switch is premature when the thought it ends is shorter (tokens).
        confident_entropy: an abandoned thought with mean entropy below this (nats) is "confident".
        initial_steps: steps preallocated per generation (doubled when exceeded).

    Example:
        ```python
        >>> from tip_decode.hf import AbandonmentDetector, TIPLogitsProcessor     # doctest: +SKIP
        >>> detector = AbandonmentDetector.from_tokenizer(tok, premature_threshold=600)  # doctest: +SKIP
        >>> out = model.generate(**inputs, logits_processor=[detector])            # doctest: +SKIP
        >>> [e.position for e in detector.report(out)[0].events]                   # doctest: +SKIP
        ```
    """

    def __init__(
        self,
        vocabulary: SwitchVocabulary,
        scope: str = "auto",
        premature_threshold: int = PAPER_BETA,
        confident_entropy: float = 1.0,
        initial_steps: int = 256,
    ) -> None:
        check_segmentation_arguments(vocabulary, scope, premature_threshold)
        if not isinstance(confident_entropy, (int, float)) or math.isnan(confident_entropy):
            raise ValueError(f"`confident_entropy` has to be a number, but is {confident_entropy!r}")
        if not isinstance(initial_steps, int) or initial_steps < 1:
            raise ValueError(f"`initial_steps` has to be a positive integer, but is {initial_steps!r}")
        self.vocabulary = vocabulary
        self.scope = vocabulary.resolve_scope(scope)
        self.premature_threshold = premature_threshold
        self.confident_entropy = float(confident_entropy)
        self.initial_steps = initial_steps
        # TIP's state with a window that never closes: its penalised set at a step is exactly the
        # set of tokens that would open a switch there.
        self._plan = tip_only_plan(vocabulary, self.scope)
        self._watch = InterventionSet(tip=TIPConfig(alpha=1.0, beta=_ALWAYS, triggers=vocabulary.triggers, scope=self.scope))
        self.reset()

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, triggers: Any = DEFAULT_TRIGGERS, **kwargs: Any) -> AbandonmentDetector:
        return cls(SwitchVocabulary.from_tokenizer(tokenizer, triggers), **kwargs)

    def reset(self) -> None:
        """Forget the current recording; the next call starts a new one."""
        self._state: InterventionState | None = None
        self._prompt: torch.Tensor | None = None
        self._prompt_open: torch.Tensor | None = None
        self._steps = 0
        self._entropy: torch.Tensor | None = None
        self._mass: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None  # tokens seen in input_ids, to detect reordering

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def entropy(self) -> torch.Tensor:
        """(rows, steps) entropy in nats of the distribution each step's token was chosen from."""
        if self._entropy is None:
            raise ValueError("AbandonmentDetector has recorded nothing yet: run generate with it first")
        return self._entropy[:, : self._steps]

    @property
    def switch_mass(self) -> torch.Tensor:
        """(rows, steps) probability mass on tokens that would open a switch at that step."""
        if self._mass is None:
            raise ValueError("AbandonmentDetector has recorded nothing yet: run generate with it first")
        return self._mass[:, : self._steps]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch, length = input_ids.shape
        state = self._state
        if state is None or batch != state.capacity or scores.shape[-1] != state.tables.width or length != self._prompt.shape[1] + self._steps:
            self._begin(input_ids, scores)
            state = self._state
        step = self._steps
        if step > 0:
            newest = input_ids[:, -1].to(state.tables.device)
            state.update(newest)
            self._seen[:, step - 1] = newest
        if step >= self._entropy.shape[1]:
            self._grow()
        logits = scores.detach().float()
        probs = torch.softmax(logits, dim=-1)
        # -inf logits (masked tokens) have p = 0; clamping their log-probability keeps 0 * log 0 at 0.
        logp = torch.log_softmax(logits, dim=-1).clamp(min=torch.finfo(torch.float32).min)
        # Row softmaxes plus one batched dot product: measured 3-4x faster on CPU than exp/entr/sum
        # as separate element-wise passes (benchmarks/bench_analysis.py).
        self._entropy[:, step] = -(probs.unsqueeze(1) @ logp.unsqueeze(2)).view(-1)
        columns = state.tables.columns
        if columns.numel():
            # With alpha 1 and a window that never closes, TIP's bias is -1 exactly where a token
            # would open a switch now, and -0.0 (!= 0 is False) elsewhere.
            active = state.bias().to(probs.device) != 0
            self._mass[:, step] = (probs[:, columns] * active).sum(dim=-1)
        else:
            self._mass[:, step] = 0.0
        self._steps = step + 1
        return scores

    def _begin(self, input_ids: torch.Tensor, scores: torch.Tensor) -> None:
        self.reset()
        batch = input_ids.shape[0]
        tables: PlanTables = self._plan.tables(scores.shape[-1], scores.device)
        state = InterventionState(tables, batch)
        ids = input_ids.to(tables.device)
        prompt_open, _ = prompt_state(tables, ids)
        state.start_rows(torch.arange(batch, device=tables.device), [self._watch] * batch, prompt_open)
        self._state = state
        self._prompt = input_ids
        self._prompt_open = prompt_open
        self._entropy = torch.zeros((batch, self.initial_steps), dtype=torch.float32, device=scores.device)
        self._mass = torch.zeros_like(self._entropy)
        self._seen = torch.full((batch, self.initial_steps), -1, dtype=torch.long, device=tables.device)

    def _grow(self) -> None:
        # Doubling keeps the amortised cost O(1) per step; the step count is a host int, so the
        # decision needs no device read.
        self._entropy = torch.cat((self._entropy, torch.zeros_like(self._entropy)), dim=1)
        self._mass = torch.cat((self._mass, torch.zeros_like(self._mass)), dim=1)
        self._seen = torch.cat((self._seen, torch.full_like(self._seen, -1)), dim=1)

    def report(
        self,
        sequences: Any,
        eos_token_id: int | Sequence[int] | None = None,
    ) -> list[DetectionReport]:
        """Per-row thoughts and switch events of the last generation.

        Args:
            sequences: `generate`'s output (prompt + generated ids), or a `GenerateOutput` with
                `.sequences`. Rows must be the rows the detector saw (greedy / sampling).
            eos_token_id: a row's generation is cut after its first eos (padding after it in a
                batch is not part of the response).

        Raises:
            ValueError: nothing was recorded, the sequences do not match the recording (beam
                search reorders rows; `num_return_sequences` smaller than the beam count drops them).
        """
        if self._state is None or self._prompt is None:
            raise ValueError("AbandonmentDetector has recorded nothing yet: run generate with it first")
        sequences = getattr(sequences, "sequences", sequences)
        if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2:
            raise TypeError(f"`sequences` has to be a 2-D tensor of token ids, but is {type(sequences).__name__}")
        batch, prompt_len, steps = self._state.capacity, self._prompt.shape[1], self._steps
        if sequences.shape[0] != batch or sequences.shape[1] < prompt_len + steps - 1:
            raise ValueError(
                f"`sequences` has shape {tuple(sequences.shape)}, but the detector recorded {batch} rows of "
                f"{prompt_len} prompt + {steps} generated tokens; AbandonmentDetector supports greedy search "
                "and sampling only (beam search reorders and drops rows)"
            )
        generated = sequences[:, prompt_len : prompt_len + steps].cpu()
        seen = self._seen[:, : max(steps - 1, 0)].cpu()
        if not torch.equal(seen, generated[:, : seen.shape[1]]):
            raise ValueError(
                "the rows of `sequences` do not continue the rows the detector saw (beam search reorders "
                "rows between steps); AbandonmentDetector supports greedy search and sampling only"
            )
        eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
        entropy = self.entropy.cpu().tolist()
        mass = self.switch_mass.cpu().tolist()
        # Decided once, at the first call, by the core's prompt rule (False for scope "all").
        prompt_open = self._prompt_open.cpu().tolist()
        reports = []
        for row in range(batch):
            ids = generated[row].tolist()
            cut = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
            ids, row_entropy, row_mass = ids[:cut], entropy[row][:cut], mass[row][:cut]
            reports.append(self._row_report(row, ids, row_entropy, row_mass, prompt_open[row]))
        return reports

    def _row_report(self, row: int, ids: list[int], entropy: list[float], mass: list[float], prompt_open: bool) -> DetectionReport:
        # One truth for thoughts: the same segmentation as offline analysis.
        analysis = analyze_response(
            ids,
            vocabulary=self.vocabulary,
            scope=self.scope,
            prompt_open=prompt_open,
            premature_threshold=self.premature_threshold,
            token_entropies=entropy,
        )
        # A switch's signals are read at the step that chose the token completing it
        # (`recognised_at`): for a multi-token trigger that is its last token, the one TIP penalises.
        completed_at = {s.abandoned: s.recognised_at for s in analysis.switches}
        thoughts = [
            ThoughtSignal(
                index=t.index,
                start=t.start,
                end=t.end,
                mean_entropy=t.mean_entropy,
                mean_switch_mass=sum(mass[t.start : t.end]) / t.n_tokens if t.n_tokens else None,
                switch_mass_before=mass[completed_at[t.index]] if t.index in completed_at else None,
            )
            for t in analysis.thoughts
        ]
        events = [
            replace(
                s,
                confident=None if s.abandoned_mean_entropy is None else s.abandoned_mean_entropy < self.confident_entropy,
                entropy_at_switch=entropy[s.recognised_at],
                switch_mass_at_switch=mass[s.recognised_at],
            )
            for s in analysis.switches
        ]
        return DetectionReport(row, ids, entropy, mass, thoughts, events)


__all__ = ["AbandonmentDetector", "DetectionReport", "SwitchSignal", "ThoughtSignal"]
