"""mlx-lm adapter: one logits processor for every reasoning intervention.

mlx-lm calls each of `logits_processors` once per step with `(tokens, logits)`: `tokens` is the
sequence so far (the prompt given to this call and the tokens generated since), `logits` an MLX
array `(1, vocabulary)`. Its batched generation (`BatchGenerator`, `batch_generate`) calls a processor
once per row with that row's tokens and logits row, so one instance also serves a whole batch: the
rows are told apart by their tokens (`tip_decode.adapters.sequence`).

The per-row state runs on the host (numpy, or torch on the CPU when a rule reads the logits); what
goes back to MLX is the plan's few columns: a scatter-add of the biases (TIP alone with a finite
alpha) or the combined values of those columns put into the row. The vocabulary-wide logits are
read only by the rules that need them (gated TIP's entropy, the budget's check of the most likely
token), through a zero-copy numpy view of the evaluated MLX array. See docs/mlx.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

try:
    import mlx.core as mx
except ImportError:
    raise ImportError('tip_decode.mlx needs MLX: pip install "tip-decode[mlx]" (Linux: mlx[cpu]; plus mlx-lm to generate)') from None

from tip_decode.adapters.sequence import SequenceFollower, as_host, interventions_from
from tip_decode.core.interventions import FORCED_LOGIT, InterventionSet, PlanTables, plan_for
from tip_decode.core.vocabulary import view_of


def tokenizer_of(tokenizer: Any) -> Any:
    """The Hugging Face tokenizer inside mlx-lm's `TokenizerWrapper`, or the tokenizer as given."""
    inner = getattr(tokenizer, "_tokenizer", None)
    if inner is not None and type(tokenizer).__name__ == "TokenizerWrapper":
        tokenizer = inner
    view_of(tokenizer)  # a TypeError that names the problem for anything but a tokenizer
    return tokenizer


class ReasoningInterventionsProcessor:
    r"""Decoding-time reasoning interventions for mlx-lm, in any combination.

    TIP, NoWait, CyclicReflex, thinking budgets and gated TIP (docs/interventions.md), from one
    `InterventionSet` or a mapping of its flat keys, as a member of `logits_processors` for
    `mlx_lm.generate`, `stream_generate` and `BatchGenerator` / `batch_generate`. One instance serves
    any number of calls, each a new generation, and every row of a batch.

    Args:
        tokenizer: what `mlx_lm.load` returns (a `TokenizerWrapper`), or a Hugging Face tokenizer.
        settings: an `InterventionSet` or a mapping of flat keys (`{"tip_alpha": 3.0, "nowait": 1}`).

    Raises:
        TypeError: `tokenizer` is not a tokenizer, or `settings` has another type.
        ValueError: an invalid setting, or one the tokenizer cannot serve (the message names the key).

    Example:
        >>> from mlx_lm import load, generate
        >>> from tip_decode.mlx import ReasoningInterventionsProcessor
        >>> model, tokenizer = load("mlx-community/QwQ-32B-4bit")                    # doctest: +SKIP
        >>> tip = ReasoningInterventionsProcessor(tokenizer, {"tip_alpha": 3.0, "tip_beta": 600})  # doctest: +SKIP
        >>> generate(model, tokenizer, "How many primes are below 100?", logits_processors=[tip])  # doctest: +SKIP
    """

    def __init__(self, tokenizer: Any, settings: InterventionSet | Mapping[str, Any] | None = None) -> None:
        #: The interventions every generation gets.
        self.interventions = interventions_from(settings)
        #: The Hugging Face tokenizer the plan was built from.
        self.tokenizer = tokenizer_of(tokenizer)
        #: The plan (None when no intervention is on: the logits are returned untouched).
        self.plan = plan_for(self.tokenizer, self.interventions) if self.interventions else None
        self._follower = SequenceFollower(self.plan, self.interventions) if self.plan is not None else None
        self._columns: tuple[PlanTables, mx.array] | None = None

    def reset(self) -> None:
        """Forget every sequence (the next call starts a new one whatever its tokens)."""
        if self._follower is not None:
            self._follower.reset()

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if self._follower is None:
            return logits
        if logits.ndim != 2 or logits.shape[0] != 1:
            raise ValueError(f"expected logits of shape (1, vocabulary) (one row per call), got {tuple(logits.shape)}")
        # Reading the tokens waits for the newest sampled token (the state advances on the host).
        sequence = self._follower.observe(np.asarray(tokens), logits.shape[-1])
        bias, forced = sequence.state.contribution(full=lambda: _whole_row(logits))
        self._follower.after_apply(sequence)
        return self._write(logits, sequence.state.tables, as_host(bias), as_host(forced), sequence.finite)

    def _write(self, logits: mx.array, tables: PlanTables, bias: np.ndarray | None, forced: np.ndarray | None, finite: bool) -> mx.array:
        """The logits with the plan's columns written: biases added once (x + -0.0 is x), bans kept
        at -inf, a forced token at `FORCED_LOGIT`, and a row whose forced token arrived as -inf (an
        earlier processor banned it) left as it arrived (the rule of `PlanTables.combine`)."""
        forcing = forced is not None and int(forced[0]) >= 0
        if bias is None and not forcing:
            return logits
        columns = self._columns_of(tables)
        if finite and not forcing:
            return logits.at[:, columns].add(mx.array(bias).astype(logits.dtype))
        if forcing and logits.dtype == mx.float16:
            logits = logits.astype(mx.float32)  # FORCED_LOGIT overflows float16
        arrived = mx.take(logits, columns, axis=-1)
        values = arrived
        if bias is not None:
            add = mx.array(bias).astype(logits.dtype)
            values = mx.where(mx.isneginf(add), add, values + add)
        if forcing:
            at = int(forced[0])
            values = mx.where(mx.arange(values.shape[-1]) == at, mx.array(FORCED_LOGIT, dtype=logits.dtype), values)
            # Lazy like the rest: no wait for the logits to decide.
            values = mx.where(mx.isneginf(arrived[:, at : at + 1]), arrived, values)
        return mx.put_along_axis(logits, columns[None, :], values, axis=-1)

    def _columns_of(self, tables: PlanTables) -> mx.array:
        if self._columns is None or self._columns[0] is not tables:
            self._columns = (tables, mx.array(np.asarray(tables.token_ids, dtype=np.int32)))
        return self._columns[1]


def _whole_row(logits: mx.array) -> torch.Tensor:
    """The logits row as a float32 torch tensor, for the rules that read it: a zero-copy view of the
    evaluated MLX array (MLX casts other dtypes to float32 first)."""
    if logits.dtype != mx.float32:
        logits = logits.astype(mx.float32)
    return torch.from_numpy(np.asarray(logits))
