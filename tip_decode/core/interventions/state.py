"""`InterventionState`: the per-row state of one plan, with the lifecycle every adapter needs.

Rows are independent sequences (a `generate` batch row, a vLLM persistent-batch row or request slot).
Adapters only decide which row receives which token:

    state = InterventionState(plan.tables(width, device), capacity)
    state.start_rows(rows, [settings] * len(rows), prompt_open, prompt_think)    # new sequences
    state.replay_row(row, settings, prompt_open, prompt_think, generated)        # resumed ones
    ... every step:
    state.update(tokens, rows)          # one generated token per row (O(1), no host sync)
    state.apply(logits, rows)           # one write of every intervention's bias (O(1), no host sync)
    ... when the batch changes: stop_rows, select, copy_rows, snapshot / restore

All state is one int64 tensor, `storage`, one row per sequence: the int columns of `tables.layout`
(the view `ints`) followed by the bits of its float32 columns (the view `floats`); reordering,
copying, starting or snapshotting rows is one operation on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tip_decode.core.interventions.base import ENDED, REASONING, WAITING, PhaseTrace
from tip_decode.core.interventions.plan import PlanTables
from tip_decode.core.interventions.settings import InterventionSet

Rows = torch.Tensor | slice | None


class InterventionState:
    """Per-row state of one plan for up to `capacity` rows.

    Args:
        tables: the plan compiled for the logits width and device (`InterventionPlan.tables`).
        capacity: number of rows.
        pin_memory: stage host-to-device copies in pinned memory (CUDA only).
        host: run the per-step rules on numpy views of the state (default: `tables.host`, a CPU
            plan none of whose rules reads the logits); False keeps torch operations.
    """

    def __init__(self, tables: PlanTables, capacity: int, pin_memory: bool = False, host: bool | None = None) -> None:
        self.tables = tables
        self.capacity = capacity
        self.pin_memory = pin_memory and tables.device.type == "cuda"
        self._on_cpu = tables.device.type == "cpu"  # CPU tensors need no `.to(device)` call
        # One int64 tensor holds every row: the int columns, then the float columns' bits (two
        # float32 per int64). Moving, copying or starting rows is then one indexing operation
        # instead of one per tensor; `ints` and `floats` are views of it.
        layout = tables.layout
        self._int_columns = layout.ints
        self._row_width = layout.ints + (layout.floats + 1) // 2
        self._template = self._pack(tables.int_template, tables.float_template)
        self.storage = torch.from_numpy(np.tile(self._template, (capacity, 1))).to(tables.device)
        self.ints, self.floats = self._views(self.storage)
        # The host engine: the same memory seen as numpy arrays (arrays.py tells why).
        self.host = tables.host if host is None else bool(host) and tables.host
        self._host: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if self.host:
            storage = self.storage.numpy()
            self._host = (storage, *self._views(storage))

    def _pack(self, ints: Sequence[int], floats: Sequence[float]) -> np.ndarray:
        """One host row of `storage` holding these int and float column values."""
        row = np.zeros(self._row_width, dtype=np.int64)
        row_ints, row_floats = self._views(row[None, :])
        row_ints[0] = ints
        row_floats[0] = floats
        return row

    def _views(self, rows):
        """The (ints, floats) views of a tensor (or numpy array) of whole rows."""
        first = 2 * self._int_columns
        floats = rows.view(torch.float32) if isinstance(rows, torch.Tensor) else rows.view(np.float32)
        return rows[:, : self._int_columns], floats[:, first : first + self.layout.floats]

    @property
    def layout(self):
        return self.tables.layout

    def column(self, name: str) -> torch.Tensor:
        """A named int column (e.g. "position", "phase", "tip.psi") for inspection and tests."""
        return self.ints[:, self.layout.int_names.index(name)]

    def _to_device(self, values: Sequence, dtype: torch.dtype) -> torch.Tensor:
        tensor = torch.tensor(values, dtype=dtype, pin_memory=self.pin_memory)
        return tensor if self._on_cpu else tensor.to(self.tables.device, non_blocking=True)

    def _array_to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self._on_cpu:
            return tensor
        if self.pin_memory:
            tensor = tensor.pin_memory()
        return tensor.to(self.tables.device, non_blocking=True)

    # ----- row lifecycle (when the batch changes, not every step) -----

    def fresh_row(self, settings: InterventionSet) -> np.ndarray:
        """One row of `storage` for a fresh sequence with `settings`, on the host (the prompt facts
        are set by `start_rows`); callers that admit the same settings over and over keep it."""
        return self._pack(*self.tables.row_values(settings))

    def _index(self, rows):
        """Rows (a slice, an index tensor, a numpy array or a sequence of ints) as this state's
        engine indexes them: numpy in the host engine, a tensor on the device otherwise."""
        if self._host is not None:
            return _host_index(rows)
        if isinstance(rows, (slice, torch.Tensor)):
            return rows
        return self._array_to_device(np.asarray(rows, dtype=np.int64))

    def start_rows(
        self,
        rows: torch.Tensor | Sequence[int],
        settings: Sequence[InterventionSet],
        prompt_open: torch.Tensor | Sequence[bool] | None = None,
        prompt_think: torch.Tensor | Sequence[int] | None = None,
        values: Sequence[np.ndarray] | None = None,
    ) -> None:
        """Begin fresh sequences in `rows` (nothing generated yet), one `InterventionSet` per row.

        `prompt_open` / `prompt_think`: the prompt ends inside an open think block, and how many of
        its tokens follow the opening marker (see `prompt_state`); tensors may live on the device.
        `values`: each row's `fresh_row(settings)` when the caller keeps them.
        """
        count = len(rows)
        if len(settings) != count:
            raise ValueError(f"start_rows got {count} rows but {len(settings)} settings")
        if values is None:
            values = [self.fresh_row(s) for s in settings]
        elif len(values) != count:
            raise ValueError(f"start_rows got {count} rows but {len(values)} row values")
        host = np.array(values, dtype=np.int64).reshape(count, self._row_width)
        if isinstance(prompt_open, torch.Tensor) or isinstance(prompt_think, torch.Tensor):
            if not isinstance(rows, torch.Tensor):
                rows = self._array_to_device(np.asarray(rows, dtype=np.int64))
            ints, floats = self._views(self._array_to_device(host))
            self.start_rows_from(rows, ints, floats, prompt_open, prompt_think)
            return
        # Host facts: every column is set on the host and the rows are written at once.
        layout = self.layout
        if self.tables.think_start < 0:  # no tracked phase: the whole response is reasoning
            opened = np.ones(count, dtype=bool)
            thinking = np.zeros(count, dtype=np.int64)
        else:
            opened = np.zeros(count, dtype=bool) if prompt_open is None else np.asarray(prompt_open, dtype=bool).reshape(count)
            thinking = np.zeros(count, dtype=np.int64) if prompt_think is None else np.asarray(prompt_think, dtype=np.int64).reshape(count)
        host[:, layout.PHASE] = np.where(opened, REASONING, WAITING)
        host[:, layout.REASONING_START] = np.where(opened, 0, -1)
        host[:, layout.PROMPT_THINK] = np.where(opened, thinking, 0)
        self._storage()[self._index(rows)] = host if self._host is not None else self._array_to_device(host)

    def fresh(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Default (ints, floats) of `count` fresh rows on the device, for `start_rows_from`."""
        device = self.tables.device
        ints = torch.tensor(self.tables.int_template, dtype=torch.long, device=device).repeat(count, 1)
        floats = torch.tensor(self.tables.float_template, dtype=torch.float32, device=device).repeat(count, 1)
        ints[:, self.layout.ACTIVE] = 1
        return ints, floats

    def start_rows_from(
        self,
        rows: torch.Tensor,
        ints: torch.Tensor,
        floats: torch.Tensor,
        prompt_open: torch.Tensor | Sequence[bool] | None = None,
        prompt_think: torch.Tensor | Sequence[int] | None = None,
    ) -> None:
        """`start_rows` with the rows' setting columns already in device tensors (no host values)."""
        layout = self.layout
        count = ints.shape[0]
        device = self.tables.device
        opened = _as_tensor(prompt_open, count, torch.bool, device)
        thinking = _as_tensor(prompt_think, count, torch.long, device)
        if self.tables.think_start < 0:
            # No tracked phase: the whole response is reasoning, and no thinking is counted.
            opened = torch.ones_like(opened)
            thinking = torch.zeros_like(thinking)
        ints = ints.clone()
        ints[:, layout.ACTIVE] = 1
        ints[:, layout.PHASE] = torch.where(opened, REASONING, WAITING)
        ints[:, layout.REASONING_START] = torch.where(opened, 0, -1)
        ints[:, layout.PROMPT_THINK] = torch.where(opened, thinking, 0)
        self.ints[rows] = ints
        self.floats[rows] = floats

    def replay_row(self, row: int, settings: InterventionSet, prompt_open: bool, prompt_think: int, generated: Sequence[int]) -> None:
        """Set `row` to the state after `generated` (a request resumed with output already present).

        Runs on the host (the recognizer that trace analysis uses, plus each rule's replay); this
        happens when a batch changes (preemption, resumption), never per step. Apply-time
        statistics that are not in the token history (gated's entropies, a word being forced)
        restart empty.
        """
        tables = self.tables
        layout = self.layout
        generated = [int(t) for t in generated]
        ints, floats = tables.row_values(settings)
        markers = tables.markers
        opened = bool(prompt_open) or not markers.available
        trace = PhaseTrace.run(markers, opened, generated)
        ints[layout.POSITION] = trace.position
        ints[layout.PHASE] = trace.phase
        ints[layout.REASONING_START] = trace.reasoning_start
        ints[layout.PROMPT_THINK] = int(prompt_think) if opened and markers.available else 0
        for name, rule in zip(tables.plan.names, tables.rules):
            rule.replay(getattr(settings, name), generated, trace, ints, floats)
        self.ints[row] = self._to_device(ints, torch.long)
        self.floats[row] = self._to_device(floats, torch.float32)

    def stop_rows(self, rows: torch.Tensor | Sequence[int]) -> None:
        """Turn rows off: `apply` leaves their logits unchanged."""
        if not isinstance(rows, torch.Tensor):
            rows = self._to_device(list(rows), torch.long)
        self.ints[rows, self.layout.ACTIVE] = 0
        self.ints[rows, self.layout.PHASE] = ENDED

    def select(self, order: torch.Tensor) -> None:
        """Reorder rows: row i takes the state of row `order[i]` (beam search)."""
        storage = self._storage()
        storage[: order.shape[0]] = storage[self._index(order)]

    def copy_rows(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        """Row dst[i] takes the state of row src[i] (vLLM moves and swaps); tensors or host arrays."""
        storage = self._storage()
        storage[self._index(dst)] = storage[self._index(src)]

    def snapshot(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A copy of every row's state as (ints, floats) (HF assisted decoding rolls back to one)."""
        return self._views(self.storage.clone())

    def restore(self, snapshot: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.ints.copy_(snapshot[0])
        self.floats.copy_(snapshot[1])

    # ----- per step: O(1) in the history length, no host sync -----

    def update(self, tokens: torch.Tensor, rows: Rows = None, hold: np.ndarray | None = None) -> None:
        """Advance `rows` (default: the first `len(tokens)` rows) by one generated token each.

        `tokens` may be a tensor or a host array, in either engine. `hold` (a host bool array over
        `rows`) marks rows that must not advance this step (no new token yet); their tokens are
        ignored. Holding a few rows of a slice is cheaper than addressing the others by an index:
        the slice advances whole and the held rows are put back.
        """
        if rows is None:
            rows = slice(0, tokens.shape[0])
        if self._host is None and isinstance(tokens, np.ndarray):
            tokens = self._array_to_device(tokens)
        held = None
        if hold is not None and hold.any():
            held = self._index(_held_rows(rows, hold))
            saved = self._storage()[held]  # fancy indexing copies
        floats = self.tables.advances_floats
        all_ints, all_floats = self._arrays()
        rows = self._index(rows)
        if isinstance(rows, slice):
            # A slice is a view: the rows advance where they are (no copy in, no copy back).
            self.tables.advance(all_ints[rows], all_floats[rows] if floats else None, tokens, in_place=True)
        else:
            ints, new_floats = self.tables.advance(all_ints[rows], all_floats[rows] if floats else None, tokens, in_place=True)
            all_ints[rows] = ints
            if floats:
                all_floats[rows] = new_floats
        if held is not None:
            self._storage()[held] = saved

    def _storage(self):
        """The rows' one tensor, as numpy in the host engine."""
        return self._host[0] if self._host is not None else self.storage

    def _arrays(self):
        """The (ints, floats) views the rules run on: numpy in the host engine."""
        return self._host[1:] if self._host is not None else (self.ints, self.floats)

    def advance(self, ints: torch.Tensor, floats: torch.Tensor | None, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The state after one more token per row (pure; for adapters that reorder rows first)."""
        return self.tables.advance(ints, floats, tokens)

    def bias(self, rows: Rows = None) -> torch.Tensor:
        """(rows, plan columns) float32: what the next `apply` adds at `tables.columns` for `rows`
        (default: every row), before any forcing; -0.0 where nothing is added, -inf for a ban.

        For plans whose rules read no logits (TIP, NoWait, CyclicReflex, a budget without a word);
        nothing is recorded. The abandonment detector reads TIP's penalised columns from it.
        """
        tables = self.tables
        if tables.reads_logits:
            raise ValueError("bias() reads no logits, and a rule of this plan needs them; use apply")
        all_ints, all_floats = self._arrays()
        state_rows = self._index(slice(None) if rows is None else rows)

        def no_logits() -> torch.Tensor:  # pragma: no cover - guarded by reads_logits above
            raise RuntimeError("a rule read the logits rows without declaring `reads_logits`")

        step = tables.contribute(all_ints[state_rows], all_floats[state_rows], no_logits)
        count = all_ints[state_rows].shape[0]
        if step.bias is None:
            return torch.full((count, len(tables.token_ids)), -0.0, dtype=torch.float32, device=tables.device)
        return _from_host(step.bias, tables.device) if self._host is not None else step.bias

    def apply(
        self, logits: torch.Tensor, rows: Rows = None, logit_rows: torch.Tensor | slice | None = None, finite: bool = False, keep_alive: bool = False
    ) -> torch.Tensor:
        """Write every intervention's bias into `logits` in place and return it.

        `rows` are the state rows of the logits rows `logit_rows` (default: all logits rows, in
        order; `rows` default: the first `logits.shape[0]` state rows). A slice for `logit_rows`
        avoids copying whole logits rows for the rules that read them (gated, budget's word). Columns outside the plan's
        token ids are never touched; inside them a zero bias leaves the logit bit for bit as it was.
        Apply-time decisions (gated's entropy, budget's forced word) are recorded for the position of
        each row's next token, so a step whose token is discarded (chunked prefill) and repeated
        records the same decision again.

        `finite=True` is the caller's promise that no row's bias is -inf (no ban: e.g. every row's
        TIP alpha is finite, no NoWait, no budget), known on the host when rows are admitted. The
        bias is then added in one pass over the touched entries (`index_add_`) instead of a read,
        a sum and a write, which is the largest part of a step at serving batch sizes; x + (-0.0)
        is x bit for bit, so the result is the same. A step that forces a token takes the general
        path whatever `finite` says.

        A forced token that arrives as -inf leaves its row as it arrived (`PlanTables.combine`).
        `keep_alive=True` also leaves a row as it arrived when this step's bans would leave it with
        no finite logit (another stage, e.g. a grammar, allowed only tokens these rules ban): that
        takes a pass over the whole rows, so callers ask for it only where another stage may mask.
        """
        tables = self.tables
        if rows is None:
            rows = slice(0, logits.shape[0])
        if not tables.token_ids:
            return logits
        columns = tables.columns
        # The logits rows as a view where they can be (a slice), else gathered when a rule asks.
        by_view = logit_rows is None or isinstance(logit_rows, slice)
        view = (logits if logit_rows is None else logits[logit_rows]) if by_view else None

        def full() -> torch.Tensor:
            return view if view is not None else logits[logit_rows]

        all_ints, all_floats = self._arrays()
        state_rows = self._index(rows)
        step = tables.contribute(all_ints[state_rows], all_floats[state_rows], full)
        bias, forced = step.bias, step.forced
        if self._host is not None:
            bias = None if bias is None else _from_host(bias, logits.device)
            forced = None if forced is None else _from_host(forced, logits.device)
        if bias is not None and bias.dtype != logits.dtype:
            bias = bias.to(logits.dtype)
        if finite and forced is None:
            # x + (-0.0) is x: the plan's columns are added to in one pass, never read.
            if bias is not None:
                if view is not None:
                    view.index_add_(1, columns, bias)
                else:
                    logits.index_put_((logit_rows[:, None], columns[None, :]), bias, accumulate=True)
        elif view is not None:
            sub = view.index_select(1, columns)
            new = tables.combine(sub, bias, forced)
            view.index_copy_(1, columns, _keep_alive(view, sub, new) if keep_alive else new)
        else:
            index = (logit_rows[:, None], columns[None, :])
            sub = logits[index]
            new = tables.combine(sub, bias, forced)
            logits[index] = _keep_alive(logits[logit_rows], sub, new) if keep_alive else new
        # Keep the apply-time decisions of `step` (gated's statistics, a pending forced word).
        step.store(all_ints, all_floats, state_rows)
        return logits

    def contribution(self, full: Any = None, rows: Rows = None) -> tuple[Any, Any]:
        """What `apply` would write for `rows` (default: all), for adapters whose engine writes the
        logits itself (MLX arrays): `(bias, forced)` over the plan's columns (`tables.columns`).

        `bias` is float32 `(rows, columns)` or None (nothing added), `forced` the index into the
        plan's columns of each row's forced token (-1: none) or None; numpy arrays in the host
        engine, tensors otherwise. `full` returns the whole logits rows as a float32 tensor, for the
        rules that read them (`reads_logits`). Apply-time decisions are recorded as `apply` does.
        """
        if rows is None:
            rows = slice(0, self.capacity)

        def whole() -> torch.Tensor:
            if full is None:
                raise ValueError("this plan reads the logits rows (gated, budget): pass `full`")
            return full()

        all_ints, all_floats = self._arrays()
        state_rows = self._index(rows)
        step = self.tables.contribute(all_ints[state_rows], all_floats[state_rows], whole)
        step.store(all_ints, all_floats, state_rows)
        return step.bias, step.forced


def _keep_alive(rows: torch.Tensor, sub: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """`new` (the plan's columns after this step), except for rows it would leave with no finite
    logit: those keep `sub`, the columns as they arrived. `rows` are the whole rows as they arrived."""
    alive_in_plan = (new > -math.inf).any(dim=1)
    alive_elsewhere = (rows > -math.inf).sum(dim=1) > (sub > -math.inf).sum(dim=1)
    return torch.where((alive_in_plan | alive_elsewhere)[:, None], new, sub)


def _from_host(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host engine result as a tensor where the logits are (a broadcast view is copied)."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # a broadcast of one row that is already contiguous
        array = array.copy()
    tensor = torch.from_numpy(array)
    return tensor if device.type == "cpu" else tensor.to(device, non_blocking=True)


def _held_rows(rows, hold: np.ndarray) -> np.ndarray:
    """The state rows of `rows` (a slice, or an index tensor / array) where `hold` is true."""
    if isinstance(rows, slice):
        return np.flatnonzero(hold) + (rows.start or 0)
    index = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows, dtype=np.int64)
    return index[hold]


def _host_index(rows) -> np.ndarray | slice:
    """Rows as a numpy index (the host engine): a slice, a CPU tensor or a sequence of ints."""
    if isinstance(rows, (slice, np.ndarray)):
        return rows
    if isinstance(rows, torch.Tensor):
        return rows.numpy()
    return np.asarray(rows, dtype=np.int64)


def _as_tensor(values: torch.Tensor | Sequence | None, count: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if values is None:
        return torch.zeros(count, dtype=dtype, device=device)
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=dtype)
    return torch.tensor(list(values), dtype=dtype).to(device)
