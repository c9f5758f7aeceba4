"""Engine-neutral request bookkeeping: what every engine adapter needs besides its engine's events.

An engine adapter (vLLM's two model runners, SGLang's custom processor, the llama.cpp and MLX
sequence follower) translates its engine's batch events -- a request added, moved, finished, a
step's new tokens -- into the calls below, and keeps nothing else of its own:

- `prompt_facts`: does the prompt end inside an open think block, and how many of its tokens
  follow the opening marker (the host form of `think_prompt_state`, which does the same for a
  padded batch of prompts on the device);
- `Admission`: a request's settings read once per distinct arguments (a bounded cache keyed by the
  request's arguments), bad arguments turning that request's interventions off with one warning
  per distinct message (`WarnOnce`): a processor that raised would stop the engine;
- `GroupCache`: requests that share a structure share one plan, one table set and one state; a
  group is built on first use and dropped when more than `MAX_IDLE_GROUPS` are idle, so that
  clients sending many distinct settings cannot grow the worker's memory without bound;
- `SlotPool`: state rows handed to requests, growing the state when full;
- `row_index`: consecutive ascending rows as a slice (a view of the logits and the state, no
  gather), any others as given, for the adapter to move to its device (`feeding.device_rows`).

Feeding tokens stays with `InterventionState.update` / `replay_row`: which tokens are new is the one
thing each engine tells differently (a live output list, a device-side history, the whole sequence
on every call). This module imports neither torch nor any engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

#: Idle groups kept for reuse by each adapter; more are dropped (oldest first).
MAX_IDLE_GROUPS = 16
#: Distinct request arguments whose admission is remembered (the cache starts over when full).
MAX_CACHED_SETTINGS = 1024
#: Distinct warning messages remembered (each is logged once); the set is cleared past this.
MAX_WARNINGS = 256

G = TypeVar("G")
A = TypeVar("A")


def prompt_facts(think_start: int, think_end: int, prompt_ids: Sequence[int] | np.ndarray | None) -> tuple[bool, int]:
    """(the prompt ends inside an open think block, how many of its tokens follow the opening marker).

    Open when the last start marker comes after the last end marker (chat templates that end with
    `<think>\\n`). A negative `think_start` (no marker known) is never open. Through numpy on the
    host: a batch of additions costs microseconds a request, not a tensor call each.
    """
    if prompt_ids is None or think_start < 0 or not len(prompt_ids):
        return False, 0
    ids = np.asarray(prompt_ids)
    starts = np.flatnonzero(ids == think_start)
    if not starts.size:
        return False, 0
    last_start = int(starts[-1])
    ends = np.flatnonzero(ids == think_end)
    if ends.size and int(ends[-1]) > last_start:
        return False, 0
    return True, len(ids) - last_start - 1


class WarnOnce:
    """Logs each distinct message once (at most `limit` remembered; the memory starts over past it)."""

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, limit: int = MAX_WARNINGS) -> None:
        self.logger = logger
        self.level = level
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, message: str, *args: Any) -> None:
        text = message % args if args else message
        if text in self.seen:
            return
        if len(self.seen) >= self.limit:
            self.seen.clear()
        self.seen.add(text)
        self.logger.log(self.level, "%s", text)


class Admission(Generic[A]):
    """A request's admission (settings, group, ...) decided once per distinct arguments.

    Args:
        decide: arguments -> what admitting them decides, or None (interventions off); raises
            ValueError / TypeError for arguments that cannot be used.
        warn: where a refusal's message goes (once per distinct message).
        message: the warning's text, with one `%s` for the error.
        limit: distinct arguments remembered.
    """

    def __init__(self, decide: Callable[[Any], A | None], warn: WarnOnce, message: str, limit: int = MAX_CACHED_SETTINGS) -> None:
        self.decide = decide
        self.warn = warn
        self.message = message
        self.limit = limit
        self.cache: dict[Hashable, A | None] = {}

    def cached(self, key: Hashable | None) -> tuple[bool, A | None]:
        """(known, decision) for arguments of this key (None: arguments that cannot be keyed)."""
        if key is not None and key in self.cache:
            return True, self.cache[key]
        return False, None

    def admit(self, key: Hashable | None, arguments: Any) -> A | None:
        """Decide (never raises for bad arguments: they are off, with a warning) and remember."""
        try:
            decided = self.decide(arguments)
        except (ValueError, TypeError) as err:
            self.warn(self.message, err)
            decided = None
        if key is not None:
            if len(self.cache) >= self.limit:
                self.cache.clear()
            self.cache[key] = decided
        return decided


class GroupCache(Generic[G]):
    """Groups by key (a structure, plus whatever else a group's tables depend on), built on first
    use; when one more is built, the oldest idle ones beyond `max_idle - 1` are dropped.

    Args:
        build: key -> a new group (raises ValueError naming a bad setting).
        idle: is a group without members (droppable)?
    """

    def __init__(self, build: Callable[[Hashable], G], idle: Callable[[G], bool], max_idle: int = MAX_IDLE_GROUPS) -> None:
        self.build = build
        self.idle = idle
        self.max_idle = max_idle
        self.by_key: dict[Hashable, G] = {}

    def find(self, key: Hashable) -> G | None:
        """The group of `key` if it exists now (it may have been dropped while idle)."""
        return self.by_key.get(key)

    def get(self, key: Hashable) -> G:
        """The group of `key`, built on first use."""
        group = self.by_key.get(key)
        if group is None:
            group = self.build(key)
            idle = [k for k, g in self.by_key.items() if self.idle(g)]
            for stale in idle[: max(0, len(idle) - self.max_idle + 1)]:
                del self.by_key[stale]
            self.by_key[key] = group
        return group

    def __iter__(self) -> Iterator[G]:
        return iter(list(self.by_key.values()))

    def __len__(self) -> int:
        return len(self.by_key)

    def values(self) -> list[G]:
        return list(self.by_key.values())


class SlotPool:
    """State rows ("slots") handed to requests: the lowest free first; `grow` is called with the new
    capacity (twice the old) when none is free, and must make the state that large."""

    def __init__(self, capacity: int, grow: Callable[[int], None]) -> None:
        self.capacity = capacity
        self.grow = grow
        self.free = list(range(capacity - 1, -1, -1))
        self.taken = 0

    def take(self) -> int:
        if not self.free:
            old = self.capacity
            self.grow(2 * old)
            self.capacity = 2 * old
            self.free = list(range(2 * old - 1, old - 1, -1))
        self.taken += 1
        return self.free.pop()

    def release(self, slot: int) -> None:
        self.taken -= 1
        self.free.append(slot)


def row_index(rows: Sequence[int] | np.ndarray, ascending: bool = False) -> slice | Sequence[int] | np.ndarray | None:
    """Rows as a slice when they are consecutive and ascending (a view, no gather), else as given;
    None for no rows. `ascending`: the rows are known to be sorted and distinct (the first and last
    then decide, O(1)); otherwise every row is checked (request slots come in any order)."""
    if not len(rows):
        return None
    first = int(rows[0])
    if int(rows[-1]) - first == len(rows) - 1 and (ascending or all(v == first + i for i, v in enumerate(rows))):
        return slice(first, first + len(rows))
    return rows
