"""The Hugging Face processor's step as one captured CUDA graph, checked against the eager step.

`GraphSteps` is a mixin of `ReasoningInterventionsProcessor` (`tip_decode.adapters.hf`): at the start
of a generation it captures the processor's step on static buffers (`_graph_step`: advance every row,
then one logits write) as a CUDA graph; the first `GRAPH_CHECK_STEPS` steps replay the graph and also
run the eager step from the same start, compare the two on the device and read the verdict on the
host later without a sync. A mismatch switches the instance to eager steps for good (one warning).
Off CUDA there is no graph and nothing here runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import torch

# The processor's logger: one name to filter on for everything the HF adapter reports.
logger = logging.getLogger("tip_decode.adapters.hf")

#: Steps at the start of every generation on which a captured CUDA-graph step is checked against
#: the eager step (a wrong graph must never go unnoticed).
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


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as integers (floats by their bit pattern), for exact comparisons."""
    if tensor.is_floating_point():
        return tensor.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()])
    return tensor


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


class GraphSteps:
    """Mixin of the processor: its step as a checked CUDA graph (attributes set by the processor:
    `_state`, `_tracker`, `_full`, `_sub`, `_written`, `_graph*`, `use_cuda_graphs`,
    `check_cuda_graphs`, `graph_factory`; `_graph_step` is the processor's step on static buffers)."""

    def _prepare_graph(self, scores: torch.Tensor) -> None:
        if not self.use_cuda_graphs or self._graph_rejected:
            return
        tables = self._state.tables
        rows, columns = scores.shape[0], tables.columns.numel()
        device = tables.device
        if tables.reads_logits:
            self._full = torch.zeros_like(scores)
        else:
            self._sub = torch.zeros((rows, columns), dtype=scores.dtype, device=device)
        self._written = torch.zeros((rows, columns), dtype=scores.dtype, device=device)
        saved = self._save_step()
        try:
            graph = self.graph_factory(self._graph_step, device)
        except RuntimeError as err:  # e.g. generate itself running under a graph capture
            logger.warning("%s runs without CUDA graphs: %s", type(self).__name__, err)
            graph = None
        finally:
            self._restore_step(saved)
        self._graph = graph
        if graph is None:
            self._full = self._sub = self._written = None
            return
        if self.check_cuda_graphs:
            self._graph_checks_left = GRAPH_CHECK_STEPS
            self._graph_mismatch = torch.zeros((), dtype=torch.bool, device=device)
            # Allocated here, at the start of a generation: pinned memory is not allocated on
            # the per-step path.
            self._graph_verdict_host = torch.empty((), dtype=torch.bool, pin_memory=device.type == "cuda")

    def _checked_step(self, graph: StepGraph) -> None:
        """Replay the graph, keep its result aside, then run the eager step from the same start.

        The eager result is the one kept, so a wrong graph never reaches the scores; the two (the
        whole state, floats included, and the values written into the logits) are compared on the
        device and the verdict is read on the host later without a sync.
        """
        before = self._save_step()
        graph.replay()
        from_graph = self._save_step()
        self._restore_step(before)
        self._graph_step()
        self._graph_mismatch |= ~self._step_matches(from_graph)
        self._graph_checks_left -= 1
        if not self._graph_checks_left:
            self._graph_verdict = _HostFlag(self._graph_mismatch, self._graph_verdict_host)

    def _read_graph_verdict(self) -> None:
        mismatch = self._graph_verdict.result()
        if mismatch is None:
            return
        self._graph_verdict = None
        if mismatch:
            self._reject_graph()

    def _reject_graph(self) -> None:
        self._graph = None
        self._graph_rejected = True
        self._full = self._sub = self._written = None
        logger.warning(
            "%s: the CUDA-graph step differed from the eager step; this processor runs its steps "
            "eagerly from now on (the scores given were computed eagerly). Please report this with "
            "your torch version and GPU.",
            type(self).__name__,
        )

    def _save_step(self) -> tuple[Any, ...]:
        tracker = self._tracker.snapshot() if self._tracker is not None else ()
        return self._state.snapshot(), self._written.clone(), tracker

    def _restore_step(self, saved: tuple[Any, ...]) -> None:
        state, written, tracker = saved
        self._state.restore(state)
        self._written.copy_(written)
        if self._tracker is not None:
            self._tracker.restore(tracker)

    def _step_matches(self, saved: tuple[Any, ...]) -> torch.Tensor:
        """A 0-dim device bool: the state (ints, floats by their bits), the values written and the
        row tracker all equal `saved` (no host sync)."""
        (ints, floats), written, tracker = saved
        state = self._state
        same = state.ints.eq(ints).all() & _bits(state.floats).eq(_bits(floats)).all()
        same = same & _bits(self._written).eq(_bits(written)).all()
        if self._tracker is not None:
            same = same & self._tracker.matches(tracker)
        return same
