"""The V1 model runner's side of the processor: follow the persistent batch, feed tokens, write logits.

vLLM hands `update_state` the batch changes (`follow_batch_update` applies them) and each added
request's live output list; `apply` reads the newest token of every row from those lists (passed by
name, vLLM fills async-scheduling placeholders before `apply`), advances each group's state by one
token per row and writes the group's biases. Row i of the logits is persistent-batch index i.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tip_decode.adapters.vllm.batch import follow_batch_update
from tip_decode.adapters.vllm.groups import Group
from tip_decode.adapters.vllm.settings import vocabulary_restricted
from tip_decode.core.interventions import InterventionSet
from tip_decode.core.interventions.feeding import Behind, catch_up, device_rows, known_prefix
from tip_decode.core.tracker import prompt_facts

if TYPE_CHECKING:
    from vllm.v1.sample.logits_processor import BatchUpdate


@dataclass(slots=True)
class V1Row:
    """Bookkeeping of one row: its group, settings, prompt facts and the request's live output list.

    How many output tokens the row's state has seen is kept per batch row in the processor's
    `_seen` array, so that a step compares every row's length at once.
    """

    group: Group
    settings: InterventionSet
    output: list[int]
    prompt_open: bool
    prompt_think: int
    finite: bool  # no bias of its settings is ever -inf (see `bias_is_finite`)
    values: np.ndarray | None = None  # a fresh row's state (`InterventionState.fresh_row`)
    restricted: bool = False  # another stage may allow only a few tokens (`settings.vocabulary_restricted`)


class V1Runner:
    """Mixin of the processor for the V1 model runner (shared attributes are set by the processor).

    Only where vLLM still has this runner (0.32, 0.33): the processor leaves the mixin out otherwise.
    """

    _rows: dict[int, V1Row]
    _seen: np.ndarray  # batch row -> output tokens its state has seen
    _outputs: list[list[int] | None]  # batch row -> what the step reads as its output (None: no row of ours)

    def _init_v1(self, vllm_config: Any, device: Any, is_pin_memory: Any) -> tuple[torch.device, int, int, int]:
        """Runner state; returns (device, capacity, logits width, state rows per group)."""
        if getattr(vllm_config, "speculative_config", None) is not None:
            # vLLM 0.32/0.33 refuse this before building the processor; a later V1 runner might not.
            raise ValueError(
                "tip_decode.vllm:ThoughtSwitchPenalty supports speculative decoding on Model Runner V2 only, and vLLM "
                "built it for the V1 model runner: unset VLLM_USE_V2_MODEL_RUNNER=0 (Model Runner V2 is the default on GPUs)"
            )
        self.runner = "v1"
        capacity = int(vllm_config.scheduler_config.max_num_seqs)
        width = int(vllm_config.model_config.get_vocab_size())
        self._rows = {}
        self._seen = np.zeros(capacity, dtype=np.int64)  # output tokens each row's state has seen
        self._outputs = [None] * capacity  # what the step reads as each row's output
        return torch.device(device), capacity, width, capacity

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Follow the persistent batch: removed, then added, then moved (vLLM's order)."""
        if batch_update is None:
            return
        if not self._rows and all(self._admit(added[1]) is None for added in batch_update.added):  # type: ignore[attr-defined]
            return  # nothing tracked and nothing new to track: removals and moves concern no row of ours
        changed: dict[int, Group] = {}
        fresh: dict[int, list[tuple[int, V1Row]]] = {}

        def make(index: int, params: Any, prompt_ids: Sequence[int] | None, output_ids: list[int]) -> V1Row | None:
            admitted = self._admit(params)  # type: ignore[attr-defined]
            if admitted is None:
                return None
            group, settings = admitted.group, admitted.settings
            opened, thinking = prompt_facts(group.tables.think_start, group.tables.think_end, prompt_ids)
            row = V1Row(group, settings, output_ids, opened, thinking, admitted.finite, admitted.values, vocabulary_restricted(params))
            group.members.add(index)
            group.member_mask[index] = True  # type: ignore[index]
            group.nonfinite += not admitted.finite
            group.restricted += row.restricted
            changed[id(group)] = group
            if output_ids:
                self._outputs[index] = output_ids
                known = known_prefix(output_ids)
                self._seen[index] = len(known)
                if known:
                    # A preempted request resumes with output already generated: rebuild its state.
                    group.state.replay_row(index, settings, opened, thinking, known)
                    return row
            else:
                # No output yet (just added): read through a stand-in whose newest token is the
                # placeholder -1 until vLLM puts the first token in the list (see `_advance_v1`).
                self._seen[index] = 0
                self._outputs[index] = _NO_OUTPUT_YET
                group.waiting.add(index)
            fresh.setdefault(id(group), []).append((index, row))
            return row

        def dropped(index: int, row: V1Row) -> None:
            group = row.group
            group.members.discard(index)
            group.waiting.discard(index)
            self._outputs[index] = None
            group.member_mask[index] = False  # type: ignore[index]
            group.nonfinite -= not row.finite
            group.restricted -= row.restricted
            changed[id(group)] = group

        def start_fresh() -> None:
            for entries in fresh.values():
                group = entries[0][1].group
                indices, rows = zip(*entries)
                group.state.start_rows(
                    indices,
                    [r.settings for r in rows],
                    [r.prompt_open for r in rows],
                    [r.prompt_think for r in rows],
                    values=[r.values for r in rows],  # type: ignore[misc]
                )
            fresh.clear()

        def relocated(moves: list[tuple[V1Row, int, int]]) -> None:
            if len(moves) == 2 and moves[0][0].group is moves[1][0].group:
                # A swap inside one group (the usual move): its members stay the same.
                a, b = moves[0][1], moves[0][2]
                seen, outputs = self._seen, self._outputs
                seen[a], seen[b] = seen[b], seen[a]
                outputs[a], outputs[b] = outputs[b], outputs[a]
                group = moves[0][0].group
                waiting = group.waiting
                if (a in waiting) != (b in waiting):
                    waiting.symmetric_difference_update((a, b))
                group.state.copy_rows(np.array((a, b)), np.array((b, a)))
                changed[id(group)] = group
                return
            # All of the record's rows at once (the right side is read first): the two rows of a
            # swap may belong to different groups.
            self._seen[[d for _, _, d in moves]] = self._seen[[s for _, s, _ in moves]]
            outputs = self._outputs
            moved = [(row, d, outputs[s], s in row.group.waiting) for row, s, d in moves]
            for row, s, _ in moves:
                outputs[s] = None
                row.group.waiting.discard(s)
            for row, d, output, waits in moved:
                outputs[d] = output
                if waits:
                    row.group.waiting.add(d)
            by_group: dict[int, list[tuple[V1Row, int, int]]] = {}
            for move in moves:
                by_group.setdefault(id(move[0].group), []).append(move)
            for group_moves in by_group.values():
                group = group_moves[0][0].group
                src = [s for _, s, _ in group_moves]
                dst = [d for _, _, d in group_moves]
                # One copy per record: a swap inside a group exchanges both rows at once.
                group.state.copy_rows(np.array(src), np.array(dst))
                group.members.difference_update(src)
                group.members.update(dst)
                group.member_mask[src] = False  # type: ignore[index]
                group.member_mask[dst] = True  # type: ignore[index]
                changed[id(group)] = group

        follow_batch_update(self._rows, batch_update, make, dropped, relocated, before_moves=start_fresh)
        start_fresh()
        outputs = self._outputs
        for group in changed.values():
            # From the host mask rather than sorting the member set: C loops only, O(capacity).
            group.row_array = np.flatnonzero(group.member_mask)
            group.rows = device_rows(group.row_array, self._array_to_device, ascending=True)  # type: ignore[attr-defined]
            if isinstance(group.rows, slice):
                group.outputs = outputs[group.rows]
            else:
                group.outputs = list(map(outputs.__getitem__, group.row_array.tolist()))
            group.finite = group.nonfinite == 0

    def _apply_v1(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._rows:
            return logits
        for group in self._groups:  # type: ignore[attr-defined]
            if group.rows is None:
                continue
            self._advance_v1(group)
            # One logits write per group; a slice of rows is read through a view, not a copy.
            group.state.apply(logits, rows=group.rows, logit_rows=group.rows, finite=group.finite, keep_alive=group.restricted > 0)
        return logits

    def _advance_v1(self, group: Group) -> None:
        """Feed each row the tokens its request generated since the last step (normally one).

        The output lists are host lists that vLLM fills before `apply` when processors are passed
        by name; an unfilled async-scheduling placeholder (-1) is left for the next step. Each row
        is looked at through its output's length and newest entry only, so a step costs O(rows)
        whatever the outputs' length, and the per-row work is C loops (`map`) plus numpy: the
        Python per row of a loop would cost more than the tensor step at 1,024 rows. A row with no
        new token (just added, a chunked-prefill step, a placeholder) is held back while the others
        advance.
        """
        outputs = group.outputs
        if group.waiting:
            # A waiting row reads its own list again once vLLM has put its first token in it.
            for index in [i for i in group.waiting if self._rows[i].output]:
                output = self._outputs[index] = self._rows[index].output
                rows = group.rows
                position = index - rows.start if isinstance(rows, slice) else int(np.searchsorted(group.row_array, index))
                outputs[position] = output
                group.waiting.discard(index)
        count = len(outputs)
        lengths = np.fromiter(map(len, outputs), dtype=np.int64, count=count)
        rows = group.rows
        seen_index = rows if isinstance(rows, slice) else group.row_array  # a slice reads a view
        new = lengths - self._seen[seen_index]
        one = new == 1
        tokens = np.fromiter(map(itemgetter(-1), outputs), dtype=np.int64, count=count)
        advancing = one & (tokens >= 0)  # an unfilled placeholder waits for the next step
        if advancing.all():
            self._seen[seen_index] = lengths
            group.state.update(tokens, rows)
            return
        if advancing.any():
            self._seen[seen_index] += advancing
            group.state.update(tokens, rows, hold=~advancing)
        irregular = group.row_array[(new != 0) & ~one]
        if irregular.size:
            self._catch_up_v1(group, irregular.tolist())

    def _catch_up_v1(self, group: Group, indices: list[int]) -> None:
        """Rows with several new tokens, or fewer tokens than already seen (tokens discarded after a
        KV-load failure: the row is rebuilt from its output)."""
        rows = [self._rows[i] for i in indices]
        behind = [Behind(i, r.settings, r.prompt_open, r.prompt_think, r.output, int(self._seen[i])) for i, r in zip(indices, rows)]
        self._seen[indices] = catch_up(group.state, behind, lambda values: self._to_device(values, torch.long))  # type: ignore[attr-defined]


#: What a row without output reads: one placeholder (-1, "no token yet"), as async scheduling writes.
_NO_OUTPUT_YET: list[int] = [-1]
