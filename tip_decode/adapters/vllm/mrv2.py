"""Model Runner V2's side of the processor: request slots, device-side token history.

`add_request` takes a slot over; `apply_staged_writes` starts the slot's state once its tokens are on
the device (the prompt rule and, after preemption, a replay of the output run there, with lengths
known on the host); `apply` feeds each row the token the model was fed at its position when that is
the slot's next output token, then writes each group's biases. Logits rows map to slots through
`ctx.expanded_idx_mapping`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tip_decode.adapters.vllm.groups import Group
from tip_decode.core.interventions import InterventionSet, prompt_state

if TYPE_CHECKING:
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext


class MRV2Runner:
    """Mixin of the processor for Model Runner V2 (state attributes are set by the processor)."""

    _slot_group: dict[int, Group]
    _slot_settings: dict[int, InterventionSet]
    _pending: list[int]
    _active: np.ndarray

    def add_request(self, req_idx: int, sampling_params: Any) -> bool:
        """Take over slot `req_idx`; its state is built in `apply_staged_writes`."""
        previous = self._slot_group.pop(req_idx, None)
        if previous is not None:
            previous.members.discard(req_idx)
            previous.member_mask[req_idx] = False
            previous.state.stop_rows([req_idx])
        self._slot_settings.pop(req_idx, None)
        if req_idx in self._pending:
            self._pending.remove(req_idx)
        settings = self._settings_or_off(sampling_params)  # type: ignore[attr-defined]
        self._active[req_idx] = settings is not None
        if settings is None:
            return False
        group = self._groups.get(settings.structure)  # type: ignore[attr-defined]
        self._slot_group[req_idx] = group
        self._slot_settings[req_idx] = settings
        group.members.add(req_idx)
        group.member_mask[req_idx] = True
        self._pending.append(req_idx)
        return True

    def apply_staged_writes(self) -> None:
        """Start (or, after preemption, replay) the state of slots added this step, on the device."""
        if not self._pending:
            return
        rs = self._req_states  # type: ignore[attr-defined]
        by_group: dict[int, list[int]] = {}
        for slot in self._pending:
            by_group.setdefault(id(self._slot_group[slot]), []).append(slot)
        self._pending = []
        for slots in by_group.values():
            group = self._slot_group[slots[0]]
            prompt_len = rs.prompt_len.np[slots].astype(np.int64)
            output_len = rs.prefill_len.np[slots].astype(np.int64) - prompt_len
            slot_t = self._to_device(slots, torch.long)  # type: ignore[attr-defined]
            width = int(prompt_len.max(initial=0))
            ids = rs.all_token_ids.gpu[slot_t, :width].to(torch.long)
            opened, thinking = prompt_state(group.tables, ids, self._to_device(prompt_len.tolist(), torch.long))  # type: ignore[attr-defined]
            group.state.start_rows(slot_t, [self._slot_settings[s] for s in slots], opened, thinking)
            # Output already present (resumption after preemption): replay it token by token on the
            # device. Lengths are known on the host, so this needs no sync.
            for step in range(int(output_len.max(initial=0))):
                pick = [i for i, n in enumerate(output_len) if n > step]
                rows = self._to_device([slots[i] for i in pick], torch.long)  # type: ignore[attr-defined]
                cols = self._to_device([int(prompt_len[i]) + step for i in pick], torch.long)  # type: ignore[attr-defined]
                group.state.update(rs.all_token_ids.gpu[rows, cols], rows)

    def _apply_v2(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        if not np.any(self._active[ctx.idx_mapping_np]):
            return logits
        slots = ctx.expanded_idx_mapping.to(torch.long)
        for group in self._groups:  # type: ignore[attr-defined]
            if group.member_mask is None or not np.any(group.member_mask[ctx.idx_mapping_np]):
                continue
            self._advance_v2(group, slots, ctx)
            # Rows of other requests are inactive in this group's state: they receive nothing.
            group.state.apply(logits, rows=slots)
        return logits

    def _advance_v2(self, group: Group, slots: torch.Tensor, ctx: LogitsContext) -> None:
        """Feed each slot the token fed to the model at its row, when that is the next output token.

        The row's input token sits at sequence position `pos`; it is output token `pos - prompt_len`.
        It is new exactly when that index equals the tokens the slot has consumed; prompt tokens
        (the first decode step, chunked prefill) and tokens replayed at resumption are skipped.
        """
        state = group.state
        ints, floats = state.ints[slots], state.floats[slots]
        position = ints[:, state.layout.POSITION]
        out_index = ctx.pos.to(torch.long) - self._req_states.prompt_len.gpu[slots].to(torch.long)  # type: ignore[attr-defined]
        is_next = (out_index >= 0) & (out_index == position)
        new_ints, new_floats = state.advance(ints, floats, ctx.input_ids.to(device=ints.device, dtype=torch.long))
        state.ints[slots] = torch.where(is_next[:, None], new_ints, ints)
        if new_floats is not floats:
            state.floats[slots] = torch.where(is_next[:, None], new_floats, floats)
