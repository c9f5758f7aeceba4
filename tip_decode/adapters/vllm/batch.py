"""The V1 runner's persistent-batch bookkeeping, written once: removed, then added, then moved.

vLLM hands a processor `BatchUpdate` records (see docs/vllm.md): an added or moved entry may overwrite
a live index; a move is one-way (the source becomes empty) or a swap. `follow_batch_update` applies
one record to a dict of per-row entries and reports what happened through three callbacks, so that
the processor only says what a new entry is and what dropping or relocating one means for its state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

T = TypeVar("T")


def follow_batch_update(
    entries: dict[int, T],
    update: BatchUpdate,
    make: Callable[[int, Any, Sequence[int] | None, list[int]], T | None],
    dropped: Callable[[int, T], None],
    relocated: Callable[[list[tuple[T, int, int]]], None],
    before_moves: Callable[[], None] | None = None,
) -> None:
    """Apply `update` to `entries` (row index -> entry) in vLLM's order.

    Args:
        make: builds the entry of an added request `(index, params, prompt_ids, output_ids)`, or
            None when this processor does nothing for it.
        dropped: an entry left the batch (removed, or its index was overwritten).
        relocated: the entries of one move record changed rows, as `(entry, src, dst)`; a swap
            gives two, which must be applied at once.
        before_moves: called after the additions, before the first move (state of added rows
            has to exist before a move copies it).
    """
    for index in update.removed:
        _drop(entries, index, dropped)
    for index, params, prompt_ids, output_ids in update.added:
        _drop(entries, index, dropped)
        entry = make(index, params, prompt_ids, output_ids)
        if entry is not None:
            entries[index] = entry
    if before_moves is not None:
        before_moves()
    for a, b, direction in update.moved:
        entry_a = entries.pop(a, None)
        if direction == MoveDirectionality.SWAP:
            entry_b = entries.pop(b, None)
            moves = [(e, src, dst) for e, src, dst in ((entry_a, a, b), (entry_b, b, a)) if e is not None]
        else:
            _drop(entries, b, dropped)
            moves = [(entry_a, a, b)] if entry_a is not None else []
        for entry, _, dst in moves:
            entries[dst] = entry
        if moves:
            relocated(moves)


def _drop(entries: dict[int, T], index: int, dropped: Callable[[int, T], None]) -> None:
    entry = entries.pop(index, None)
    if entry is not None:
        dropped(index, entry)
