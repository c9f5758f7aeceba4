"""`deepconf`: DeepConf's online stop (Fu et al., arXiv 2508.15260): a window of token confidences
below a threshold ends the trace.

The authors' processor (facebookresearch/deepconf@675529d, `deepconf/processors.py` l.15-55,
`ConfPerReqLogitsProcessor`), operation for operation on the device: at every step, from the logits
this processor receives,

    C_t  = -(1/k) * sum of the k largest log-probabilities        (log-softmax at temperature 1)
    mean = the mean of C over the last n steps, step t included
    once n confidences are in the window and mean < threshold:  force the end-of-sequence token

with k = `topk` (20), n = `window` (2048). C_t is computed as logsumexp(z) - mean of the k largest
z (one top-k and one logsumexp per row). The window is a ring of n float32 columns per row (the
confidence of step t is written when the token of step t arrives, as gated's entropy is); its mean
is the ring's sum with the oldest entry replaced by C_t, summed afresh each step (no running sum
that drifts over long traces). Nothing is read back to the host.

Every generated token counts, the answer's too (the authors' processor runs to the end). The
confidences are not in the token history: a request resumed after preemption restarts its window
empty. Where a stage before this rule banned the end-of-sequence token (the logits arrived with it at
-inf, or another intervention of the request bans it, a thinking budget's minimum), no stop is
forced at that step. The threshold comes from warm-up traces (`tip-decode calibrate`,
tip_decode/harness/calibrate.py). docs/interventions.md has every reading.

Columns: COUNT (confidences in the window so far) (int); THRESHOLD, PENDING (the confidence of the
pending step), WINDOW (n floats, a ring indexed by COUNT mod n) (floats).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tip_decode.core.interventions.base import (
    AdvanceStep,
    ApplyStep,
    Layout,
    Rule,
    RuleTables,
    TokenizerInfo,
    bad_value,
    parse_count,
    parse_number,
)
from tip_decode.core.interventions.registry import Intervention, Key

if TYPE_CHECKING:
    from tip_decode.core.interventions.arrays import TableBuilder

#: The authors' defaults: `conf_group_size` (wrapper.py window_size) and `conf_topk`.
PAPER_WINDOW = 2048
PAPER_TOPK = 20
#: Bounds of the structure: the window is `window` float32 columns per row of every request that
#: shares the plan (64 KiB per row at the largest), the top-k is one torch.topk per step.
MAX_WINDOW = 16384
MAX_TOPK = 1024
#: A confidence that is not a finite number (fewer than k finite logits: some log-probability is
#: -inf) is stored as this, so that the window's sum stays finite and no stop happens while it is in
#: the window (the authors' mean would be +inf there).
LARGEST_CONFIDENCE = 1e30


def _bounded(value: Any, key: str, largest: int) -> int:
    requirement = f"has to be an integer from 1 to {largest}"
    try:
        number = parse_count(value, key)
    except ValueError:
        raise bad_value(key, value, requirement) from None
    if not 1 <= number <= largest:
        raise bad_value(key, value, requirement)
    return number


def _parse_threshold(value: Any, key: str) -> float:
    # C_t >= 0 (log-probabilities are <= 0): a threshold <= 0 could never stop anything.
    return parse_number(value, key, positive=True)


def _parse_window(value: Any, key: str) -> int:
    return _bounded(value, key, MAX_WINDOW)


def _parse_topk(value: Any, key: str) -> int:
    return _bounded(value, key, MAX_TOPK)


@dataclass(frozen=True)
class DeepConfConfig:
    """DeepConf online settings.

    Args:
        threshold: stop once the window's mean confidence is below this (> 0; no default: it is
            calibrated on warm-up traces, `tip-decode calibrate`). None: not set (off).
        window: n, the number of steps the mean is taken over (1 to 16384).
        topk: k, the number of largest log-probabilities a confidence averages (1 to 1024).

    Example:
        >>> DeepConfConfig(threshold=12.5).window
        2048
    """

    threshold: float | None = None
    window: int = PAPER_WINDOW
    topk: int = PAPER_TOPK

    def __post_init__(self) -> None:
        if self.threshold is not None:
            object.__setattr__(self, "threshold", _parse_threshold(self.threshold, "deepconf_threshold"))
        object.__setattr__(self, "window", _parse_window(self.window, "deepconf_window"))
        object.__setattr__(self, "topk", _parse_topk(self.topk, "deepconf_topk"))

    @property
    def enabled(self) -> bool:
        return self.threshold is not None

    def to_mapping(self) -> dict[str, Any]:
        return {"deepconf_threshold": self.threshold, "deepconf_window": self.window, "deepconf_topk": self.topk}


class DeepConfRule(Rule):
    name = "deepconf"
    needs_pending = True  # a step's confidence joins the window when its token arrives

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        window, topk = structure  # type: ignore[misc]
        self.window: int = window
        self.topk: int = topk
        if not info.eos_ids:
            raise ValueError("`deepconf_threshold`: the tokenizer has no end-of-sequence token for DeepConf to force")
        # The authors force `tokenizer.eos_token_id`; a tokenizer with several takes the first.
        self.eos_id = int(info.eos_ids[0])
        if topk > info.size:
            raise bad_value("deepconf_topk", topk, f"has to be at most the vocabulary size ({info.size})")
        self.token_ids = (self.eos_id,)

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> DeepConfTables:
        return DeepConfTables(self, layout, width)


class DeepConfTables(RuleTables):
    reads_logits = True  # a top-k and a logsumexp of the whole row
    advances_floats = True  # the window is written when a step's token arrives

    def __init__(self, rule: DeepConfRule, layout: Layout, width: int) -> None:
        if rule.eos_id >= width or rule.topk > width:
            raise ValueError(f"`deepconf`: the end-of-sequence id {rule.eos_id} or top-k {rule.topk} does not fit the logits width {width}")
        self.rule = rule
        self.layout = layout
        self.eos_id = rule.eos_id
        self.window = rule.window
        self.topk = rule.topk
        self.token_ids = (rule.eos_id,)
        self.COUNT = layout.add_int("deepconf.count")
        self.THRESHOLD = layout.add_float("deepconf.threshold")
        self.PENDING = layout.add_float("deepconf.pending")
        self.WINDOW = layout.add_float("deepconf.window", width=rule.window)

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        return {}, {self.THRESHOLD: float(config.threshold)}

    def _slot(self, ops: Any, count: Any) -> Any:
        """The float column of the ring entry the next confidence goes to (the oldest one once full)."""
        return ops.remainder(count, self.window) + self.WINDOW

    def advance(self, step: AdvanceStep) -> None:
        ops = step.ops
        count = step.ints[:, self.COUNT]
        slot = self._slot(ops, count)
        # The pending confidence joins the window only where its step's token arrived (a step whose
        # token was discarded and is repeated records it again).
        value = ops.where(step.pending, step.floats[:, self.PENDING], ops.take_columns(step.floats, slot))
        ops.put_columns(step.out_floats, slot, value)
        step.out_ints[:, self.COUNT] = ops.where(step.pending, count + 1, count)

    def contribute(self, step: ApplyStep) -> None:
        ops, ints, floats = step.ops, step.ints, step.floats
        logits = step.logits()
        confidence = ops.logsumexp(logits) - ops.top_k(logits, self.topk).sum(1) / self.topk
        confidence = ops.where(confidence < LARGEST_CONFIDENCE, confidence, LARGEST_CONFIDENCE)  # +inf, NaN
        count = ints[:, self.COUNT]
        slot = self._slot(ops, count)
        ring = floats[:, self.WINDOW : self.WINDOW + self.window]
        # The window after this step: the ring with its oldest entry (0 while not full) replaced.
        total = ring.sum(1) - ops.take_columns(floats, slot) + confidence
        full = count + 1 >= self.window
        stop = step.active & full & (total / self.window < floats[:, self.THRESHOLD])
        column = self.plan_columns[0]
        stop = stop & (ops.floats(logits[:, self.eos_id]) != -math.inf)  # banned before it arrived
        if step.bias is not None:
            stop = stop & (step.bias[:, column] != -math.inf)  # an earlier rule of the plan banned it
        step.force(ops.where(stop, column, -1))
        step.write_int(self.layout.PENDING_AT, step.position)
        step.write_float(self.PENDING, confidence)

    # No `replay`: a resumed row starts with an empty window (the confidences are not in the token
    # history), which is what a fresh row's values are.


def _structure(config: DeepConfConfig) -> Hashable:
    return (config.window, config.topk)


INTERVENTION = Intervention(
    name="deepconf",
    title="DeepConf online: stop a trace once its windowed token confidence drops below a threshold (Fu et al., arXiv 2508.15260)",
    config_type=DeepConfConfig,
    keys={
        "deepconf_threshold": Key("threshold", _parse_threshold),
        "deepconf_window": Key("window", _parse_window),
        "deepconf_topk": Key("topk", _parse_topk),
    },
    paper=DeepConfConfig(),
    structure=_structure,
    rule=DeepConfRule,
    order=93,  # forces the end of sequence: after the rules that ban, before thinkbrake (a stop wins)
    needs="`deepconf_threshold` (a number > 0, calibrated on warm-up traces: tip-decode calibrate)",
    example="threshold=12.5",
    required=("deepconf_threshold",),
)
