"""Telling a row's state what its sequence holds: the prompt's think facts, and catching up.

Every engine adapter feeds its rows one token per step through `InterventionState.update`; what
differs between engines is only how it learns a row's tokens. Two cases are not one token per step
and are the same on every engine, so they live here:

- the prompt: does it end inside an open think block, and how many of its tokens follow the opening
  marker (`think_prompt_state` / `prompt_state` on the device, for a padded batch of prompts;
  `tip_decode.core.tracker.prompt_facts` is the host form for one prompt);
- a row whose output moved by other than one token since its state last saw it (`catch_up`):
  several new tokens (tracking began mid-request, a step the engine skipped) are fed in order,
  batched across rows; fewer tokens than seen (the engine discarded output: SGLang's retraction,
  vLLM's KV-load failure) rebuild the row from its output. Async scheduling's placeholder (-1, "no
  token yet") ends what is known of an output (`known_prefix`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from tip_decode.core.tracker import row_index

if TYPE_CHECKING:
    from tip_decode.core.interventions.plan import PlanTables
    from tip_decode.core.interventions.settings import InterventionSet
    from tip_decode.core.interventions.state import InterventionState


def known_prefix(output: Sequence[int]) -> list[int]:
    """The output tokens up to the first async-scheduling placeholder (a negative id)."""
    known = list(output)
    for i, token in enumerate(known):
        if token < 0:
            return known[:i]
    return known


@dataclass(frozen=True, slots=True)
class Behind:
    """A row whose output moved by other than one token since its state last saw it."""

    row: int  # its row of the state
    settings: InterventionSet
    prompt_open: bool
    prompt_think: int
    output: Sequence[int]  # the request's whole output so far (placeholders allowed at its end)
    seen: int  # output tokens the row's state has seen


def catch_up(state: InterventionState, rows: Sequence[Behind], to_device: Callable[[list[int]], torch.Tensor]) -> list[int]:
    """Bring each row's state to its output's known prefix; returns how many tokens each has now seen.

    Rows with fewer known tokens than seen are rebuilt from their output (`replay_row`); the others
    get their new tokens one step at a time, every row that has a token at that step in one
    `update`. `to_device`: a list of ints as a long tensor where the state lives.
    """
    seen_now: list[int] = []
    pending: dict[int, list[int]] = {}
    for behind in rows:
        if len(behind.output) < behind.seen:
            known = known_prefix(behind.output)
            state.replay_row(behind.row, behind.settings, behind.prompt_open, behind.prompt_think, known)
            seen_now.append(len(known))
            continue
        new = known_prefix(behind.output[behind.seen :])
        if new:
            pending[behind.row] = new
        seen_now.append(behind.seen + len(new))
    step = 0
    while pending:
        ready = [row for row, new in pending.items() if len(new) > step]
        if not ready:
            break
        state.update(to_device([pending[row][step] for row in ready]), to_device(ready))
        step += 1
    return seen_now


def device_rows(rows: Sequence[int] | np.ndarray, to_device: Callable[[np.ndarray], torch.Tensor], ascending: bool = False) -> slice | torch.Tensor | None:
    """Rows as a slice when consecutive and ascending (a view of the logits and the state, no
    gather), else as an index tensor from `to_device`; None for no rows. `ascending`: the rows are
    known to be sorted and distinct (`tip_decode.core.tracker.row_index`)."""
    index = row_index(rows, ascending)
    if index is None or isinstance(index, slice):
        return index
    return to_device(np.asarray(rows, dtype=np.int64))


def think_prompt_state(ids: torch.Tensor, start: int, end: int, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of prompt ids: does the prompt end inside an open think block, and how many prompt
    tokens follow the opening marker.

    The prompt is open when its last start marker comes after its last end marker (chat templates
    that end with `<think>\\n`). `lengths` gives each row's prompt length when `ids` is padded on
    the right. Markers that are `NO_MARKER` never match: such prompts are never open.
    """
    rows, width = ids.shape
    if width == 0:
        zeros = torch.zeros(rows, dtype=torch.long, device=ids.device)
        return zeros.bool(), zeros
    positions = torch.arange(width, device=ids.device)
    if lengths is None:
        lengths = torch.full((rows,), width, dtype=torch.long, device=ids.device)
    inside = positions[None, :] < lengths[:, None]
    last_start = torch.where(inside & (ids == start), positions, -1).amax(dim=1)
    last_end = torch.where(inside & (ids == end), positions, -1).amax(dim=1)
    is_open = last_start > last_end
    thinking = torch.where(is_open, lengths - last_start - 1, 0)
    return is_open, thinking


def prompt_state(tables: PlanTables, prompt_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`think_prompt_state` with the plan's markers: (prompt ends in an open think block, tokens inside)."""
    return think_prompt_state(prompt_ids, tables.think_start, tables.think_end, lengths)
