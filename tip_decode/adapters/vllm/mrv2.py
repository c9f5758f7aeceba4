"""Model Runner V2's side of the processor: request slots, the device-side token history, speculative decoding.

`add_request` takes a slot over; `apply_staged_writes` starts the slot's state once its tokens are on
the device (the prompt rule and, after preemption, a replay of the output run there, with lengths
known on the host). Logits rows map to slots through `ctx.expanded_idx_mapping`; under speculative
decoding a request owns one row per draft position (`ctx.expanded_local_pos` 0, 1, ..., k). What
happens to those rows each step (commit, drafts, write) and where each state row lives is the core's
draft chain, `tip_decode/core/interventions/drafts.py`; this module translates vLLM's `req_states`
and `LogitsContext` into it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tip_decode.adapters.vllm.groups import Group
from tip_decode.adapters.vllm.settings import vocabulary_restricted
from tip_decode.core.interventions import InterventionSet
from tip_decode.core.interventions.drafts import DraftLayout, StepRows, apply_step, forget_drafts, start_from_history

if TYPE_CHECKING:
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext


def speculative_tokens(vllm_config: Any) -> int:
    """num_speculative_tokens of the engine (0 without speculative decoding)."""
    spec = getattr(vllm_config, "speculative_config", None)
    if spec is None:
        return 0
    return int(getattr(spec, "num_speculative_tokens", 0) or 0)


class MRV2Runner:
    """Mixin of the processor for Model Runner V2 (shared attributes are set by the processor)."""

    _slot_group: dict[int, Group]
    _slot_settings: dict[int, InterventionSet]
    _pending: list[int]
    _active: np.ndarray
    _layout: DraftLayout
    _req_states: Any
    _to_device: Callable[..., torch.Tensor]

    def _init_mrv2(self, vllm_config: Any, req_states: Any) -> tuple[torch.device, int, int, int]:
        """Runner state; returns (device, capacity, logits width, state rows per group)."""
        self.runner = "v2"
        self._req_states = req_states
        capacity, width = int(req_states.max_num_reqs), int(req_states.vocab_size)
        self._layout = DraftLayout(capacity, speculative_tokens(vllm_config))
        self._slot_group = {}
        self._slot_settings = {}
        self._pending = []
        self._restricted = np.zeros(capacity, dtype=bool)  # slot -> another stage may allow only a few tokens
        self._previous_depth = 0  # the longest draft chain of the last step: at most that many drafts were accepted since
        return torch.device(req_states.device), capacity, width, self._layout.rows

    def add_request(self, req_idx: int, sampling_params: Any) -> bool:
        """Take over slot `req_idx`; its state is built in `apply_staged_writes`. True: this
        processor may change (and mask) the request's logits."""
        previous = self._slot_group.pop(req_idx, None)
        if previous is not None:
            previous.members.discard(req_idx)
            previous.member_mask[req_idx] = False
            previous.state.stop_rows([req_idx])
            forget_drafts(previous.state, self._layout, self._to_device([req_idx], torch.long))
        self._slot_settings.pop(req_idx, None)
        if req_idx in self._pending:
            self._pending.remove(req_idx)
        settings = self._settings_or_off(sampling_params)  # type: ignore[attr-defined]
        self._active[req_idx] = settings is not None
        self._restricted[req_idx] = vocabulary_restricted(sampling_params)
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
        rs = self._req_states
        by_group: dict[int, list[int]] = {}
        for slot in self._pending:
            by_group.setdefault(id(self._slot_group[slot]), []).append(slot)
        self._pending = []
        for slots in by_group.values():
            prompt_len = rs.prompt_len.np[slots].astype(np.int64)
            output_len = rs.prefill_len.np[slots].astype(np.int64) - prompt_len
            settings = [self._slot_settings[s] for s in slots]
            state = self._slot_group[slots[0]].state
            start_from_history(state, self._layout, self._to_device(slots, torch.long), settings, rs.all_token_ids.gpu, prompt_len, output_len)

    def _apply_v2(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        slots = ctx.expanded_idx_mapping
        # Draft rows exist this step when there are more logits rows than requests (host shapes).
        drafted = slots.shape[0] - len(ctx.idx_mapping_np)
        previous_depth, self._previous_depth = self._previous_depth, min(self._layout.drafts, drafted)
        if not np.any(self._active[ctx.idx_mapping_np]):
            return logits
        rs = self._req_states
        slots = slots.to(torch.long)
        prompt_len = rs.prompt_len.gpu[slots].to(torch.long)
        step = StepRows(
            slots=slots,
            local=ctx.expanded_local_pos.to(torch.long) if drafted else None,
            tokens=ctx.input_ids.to(torch.long),
            out_index=ctx.pos.to(torch.long) - prompt_len,
            prompt_len=prompt_len,
            history=rs.all_token_ids.gpu,
            resume_depth=previous_depth,
            depth=self._previous_depth,
        )
        restricted = self._restricted[ctx.idx_mapping_np]
        any_restricted = bool(restricted.any())
        for group in self._groups:  # type: ignore[attr-defined]
            members = group.member_mask[ctx.idx_mapping_np] if group.member_mask is not None else None
            if members is None or not members.any():
                continue
            keep_alive = any_restricted and bool((members & restricted).any())
            apply_step(group.state, self._layout, logits, step, keep_alive)
        return logits
