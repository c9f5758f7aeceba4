"""Requests grouped by structure: one plan, one table set and one per-row state per group.

Two requests share a group when they ask for the same interventions with the same vocabulary-defining
settings (trigger lists, keywords, scope, forced word); their numbers (alpha, beta, amplitude, budget
limits, ...) live per row. A group's state has a row for every persistent-batch index (V1 runner) or
request slot (Model Runner V2, plus the rows speculative decoding uses: `core.interventions.drafts.DraftLayout`); rows of
other requests stay inactive and receive nothing. `Admitted` is what admitting a request decides,
remembered per distinct arguments by both runners.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tip_decode.core.interventions import InterventionSet, InterventionState, PlanTables, plan_for
from tip_decode.core.tracker import MAX_IDLE_GROUPS, GroupCache
from tip_decode.core.vocabulary import ThinkMarkers

__all__ = ["MAX_IDLE_GROUPS", "Admitted", "Group", "Groups", "bias_is_finite"]


@dataclass(eq=False)
class Group:
    """One structure's tables and state for `capacity` rows or slots."""

    structure: Hashable
    tables: PlanTables
    state: InterventionState
    members: set[int] = field(default_factory=set)
    member_mask: np.ndarray | None = None  # row or slot -> member, on the host
    # V1: the member rows, sorted; a slice when they are consecutive (the usual case: one structure
    # for every request), which makes the state update and the logits write views instead of gathers.
    rows: torch.Tensor | slice | None = None
    outputs: list[list[int]] = field(default_factory=list)  # V1: what the step reads as each member's output
    waiting: set[int] = field(default_factory=set)  # V1: members read as "no output yet" (batch rows)
    row_array: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # V1: the member rows, sorted
    finite: bool = False  # V1: no member's bias can be -inf (the logits write adds in one pass)
    nonfinite: int = 0  # V1: members whose bias can be -inf
    restricted: int = 0  # V1: members another stage may allow only a few tokens (written with `keep_alive`)


class Groups(GroupCache[Group]):
    """The groups of one processor by structure (`GroupCache`: built on first use, evicted when idle)."""

    def __init__(
        self, tokenizer: Any, markers: ThinkMarkers | None, width: int, device: torch.device, capacity: int, pin_memory: bool, state_rows: int | None = None
    ) -> None:
        super().__init__(self._build, lambda group: not group.members)
        self.tokenizer = tokenizer
        self.markers = markers
        self.width = width
        self.device = device
        self.capacity = capacity
        self.state_rows = capacity if state_rows is None else state_rows  # >= capacity: a runner's extra rows
        self.pin_memory = pin_memory

    def _build(self, structure: Hashable) -> Group:
        plan = plan_for(self.tokenizer, structure, self.markers)  # type: ignore[arg-type]
        tables = plan.tables(self.width, self.device)
        state = InterventionState(tables, self.state_rows, pin_memory=self.pin_memory)
        return Group(structure, tables, state, member_mask=np.zeros(self.capacity, dtype=bool))


@dataclass(eq=False)
class Admitted:
    """What admitting a request with given arguments decides, remembered per distinct arguments."""

    settings: InterventionSet
    structure: Any
    finite: bool  # `bias_is_finite(settings)`
    group: Group | None = None  # the structure's group when last looked up (groups are evicted while idle)
    values: np.ndarray | None = None  # a fresh row's state in that group's state

    def use(self, group: Group) -> None:
        self.group = group
        self.values = group.state.fresh_row(self.settings)


@functools.lru_cache(maxsize=1024)
def bias_is_finite(settings: InterventionSet) -> bool:
    """No bias of these settings is ever -inf and none forces a token (each intervention declares
    its effect: `InterventionSet.only_finite`)."""
    return settings.only_finite
