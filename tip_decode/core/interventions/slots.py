"""Groups whose state rows are handed to requests, and writing several groups into one logits tensor.

An engine that names its requests by id rather than by a fixed batch index (SGLang's `rid`, a
llama.cpp or MLX server's slots) gives each request a row ("slot") of its structure's state and
cannot know in advance how many requests will be live at once: `SlotGroup` holds one structure's
tables and state, and grows the state (twice the rows, the old rows kept) when every slot is taken
(`tip_decode.core.tracker.SlotPool` does the counting; it is torch-free, the state is not, hence
this module). `apply_all` writes several groups' biases into one logits tensor all or nothing, for
an engine whose processor must never hand back half-written logits.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

import torch

from tip_decode.core.interventions.state import InterventionState
from tip_decode.core.tracker import SlotPool

if TYPE_CHECKING:
    from tip_decode.core.interventions.plan import PlanTables

logger = logging.getLogger(__name__)

#: Rows a group's state starts with; it doubles when full.
INITIAL_CAPACITY = 64


class SlotGroup:
    """The tables and state of one structure; one state row ("slot") per request, taken and released
    through `slots`, the state growing when full."""

    def __init__(self, structure: Hashable, tables: PlanTables, capacity: int = INITIAL_CAPACITY) -> None:
        self.structure = structure
        self.tables = tables
        self.state = InterventionState(tables, capacity)
        self.slots = SlotPool(capacity, self._grow)

    @property
    def members(self) -> int:
        """Slots taken (a group without members may be dropped: `tracker.GroupCache`)."""
        return self.slots.taken

    def _grow(self, capacity: int) -> None:
        old = self.state
        grown = InterventionState(self.tables, capacity)
        grown.ints[: old.capacity] = old.ints
        grown.floats[: old.capacity] = old.floats
        self.state = grown


Rows = slice | torch.Tensor


def apply_all(logits: torch.Tensor, writes: Iterable[tuple[InterventionState, Rows, Rows]]) -> None:
    """Write each (state, state rows, logits rows)'s biases into `logits`, all or nothing.

    Each write's columns are read before it is made, so that when one fails the logits of the
    writes already made are restored and the error is raised again: the caller can hand the
    logits back unchanged. A state whose plan touches no token is skipped.
    """
    saved: list[tuple[Rows, torch.Tensor, torch.Tensor]] = []
    try:
        for state, rows, logit_rows in writes:
            columns = state.tables.columns
            if not state.tables.token_ids:
                continue
            saved.append((logit_rows, columns, _read(logits, logit_rows, columns)))
            state.apply(logits, rows=rows, logit_rows=logit_rows)
    except Exception:
        try:
            for logit_rows, columns, values in saved:
                _write(logits, logit_rows, columns, values)
        except Exception:  # noqa: BLE001 - the first error is the one to report
            logger.exception("could not restore the logits after a failed write")
        raise


def _read(logits: torch.Tensor, rows: Rows, columns: torch.Tensor) -> torch.Tensor:
    if isinstance(rows, slice):
        return logits[rows][:, columns]
    return logits[rows[:, None], columns[None, :]]


def _write(logits: torch.Tensor, rows: Rows, columns: torch.Tensor, values: torch.Tensor) -> None:
    if isinstance(rows, slice):
        logits[rows][:, columns] = values
    else:
        logits[rows[:, None], columns[None, :]] = values
