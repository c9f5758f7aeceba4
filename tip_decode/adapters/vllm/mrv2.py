"""Model Runner V2's side of the processor: request slots, device-side token history, speculative decoding.

`add_request` takes a slot over; `apply_staged_writes` starts the slot's state once its tokens are on
the device (the prompt rule and, after preemption, a replay of the output run there, with lengths
known on the host). Logits rows map to slots through `ctx.expanded_idx_mapping`; under speculative
decoding a request owns one row per draft position (`ctx.expanded_local_pos` 0, 1, ..., k).

Each step, per group:

1. **Commit.** The first row of a request is fed the token at its input position (`ctx.input_ids`),
   the request's newest committed token, when it is the slot's next output token. Under speculative
   decoding the slot may have committed several tokens since the last step (accepted drafts plus
   the token sampled after them): the state of the last accepted draft, kept from the last step,
   is where the slot resumes, so that apply-time decisions made on draft rows (a forced word, gated
   TIP's entropies) are the ones a one-token-at-a-time run would have made.
2. **Drafts.** Row j of a request gets the committed state advanced by the drafts before it
   (`input_ids` of rows 1..j), each step taking the apply-time decisions of the row before, as if
   the drafts had been committed one by one. This runs on scratch rows of the group's state: nothing
   is committed, and a rejected draft's state is never read again.
3. **Write.** Every row's biases and forcing go into the logits at once; row 0's decisions go to the
   committed state, draft rows' states are kept for step 1 of the next step.

All of it is tensor operations with lengths known on the host: no device-to-host synchronisation.

State rows of a group (C = max_num_reqs, K = num_speculative_tokens, see `DraftLayout`): the
committed state of slot s at row s; the state after draft j of slot s at `C + s*K + j - 1`; this
step's per-logits-row scratch after those; one discard row last (writes that must go nowhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tip_decode.adapters.vllm.groups import Group
from tip_decode.adapters.vllm.settings import vocabulary_restricted
from tip_decode.core.interventions import InterventionSet, prompt_state

if TYPE_CHECKING:
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext

#: POSITION of a kept draft state that must never be resumed from (it matches no output index).
INVALID_POSITION = -2


@dataclass(frozen=True)
class DraftLayout:
    """Where a group's state keeps committed, draft, scratch and discard rows (see the module docs)."""

    capacity: int  # request slots (max_num_reqs)
    drafts: int  # num_speculative_tokens (0: no speculative decoding)

    @property
    def draft_base(self) -> int:
        return self.capacity

    @property
    def scratch_base(self) -> int:
        return self.capacity * (1 + self.drafts)

    @property
    def scratch_rows(self) -> int:
        """At most one logits row per request and draft position."""
        return self.capacity * (1 + self.drafts)

    @property
    def discard(self) -> int:
        return self.scratch_base + self.scratch_rows

    @property
    def rows(self) -> int:
        return self.discard + 1

    def draft_row(self, slots: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """State row of the state after draft `index` (1..K) of `slots`."""
        return self.draft_base + slots * self.drafts + (index - 1)


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
            self._forget_drafts(previous, self._to_device([req_idx], torch.long))
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
            group = self._slot_group[slots[0]]
            state = group.state
            prompt_len = rs.prompt_len.np[slots].astype(np.int64)
            output_len = rs.prefill_len.np[slots].astype(np.int64) - prompt_len
            slot_t = self._to_device(slots, torch.long)
            width = int(prompt_len.max(initial=0))
            ids = rs.all_token_ids.gpu[slot_t, :width].to(torch.long)
            opened, thinking = prompt_state(group.tables, ids, self._to_device(prompt_len.tolist(), torch.long))
            state.start_rows(slot_t, [self._slot_settings[s] for s in slots], opened, thinking)
            self._forget_drafts(group, slot_t)
            # Output already present (resumption after preemption): replay it token by token on the
            # device. Lengths are known on the host, so this needs no sync; a placeholder (-1) ends
            # the replay there (the commit step then catches up from the token history).
            steps = int(output_len.max(initial=0))
            if steps:
                lengths = self._to_device(output_len.tolist(), torch.long)
                alive = lengths > 0
                for step in range(steps):
                    cols = self._to_device((prompt_len + np.minimum(step, np.maximum(output_len - 1, 0))).tolist(), torch.long)
                    tokens = rs.all_token_ids.gpu[slot_t, cols].to(torch.long)
                    alive = alive & (lengths > step) & (tokens >= 0)
                    ints, floats = state.ints[slot_t], state.floats[slot_t]
                    new_ints, new_floats = state.advance(ints, floats, tokens)
                    state.ints[slot_t] = torch.where(alive[:, None], new_ints, ints)
                    state.floats[slot_t] = torch.where(alive[:, None], new_floats, floats)

    def _forget_drafts(self, group: Group, slots: torch.Tensor) -> None:
        """Kept draft states of these slots are another occupant's (or another run's): never resume from them."""
        layout = self._layout
        if not layout.drafts:
            return
        index = torch.arange(1, layout.drafts + 1, device=slots.device)
        rows = layout.draft_row(slots[:, None], index[None, :]).reshape(-1)
        group.state.ints[rows, group.state.layout.POSITION] = INVALID_POSITION

    def _apply_v2(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        slots = ctx.expanded_idx_mapping
        # Draft rows exist this step when there are more logits rows than requests (host shapes).
        drafted = slots.shape[0] - len(ctx.idx_mapping_np)
        previous_depth, self._previous_depth = self._previous_depth, min(self._layout.drafts, drafted)
        if not np.any(self._active[ctx.idx_mapping_np]):
            return logits
        slots = slots.to(torch.long)
        local = ctx.expanded_local_pos.to(torch.long) if drafted else None
        tokens = ctx.input_ids.to(torch.long)
        restricted = self._restricted[ctx.idx_mapping_np]
        any_restricted = bool(restricted.any())
        for group in self._groups:  # type: ignore[attr-defined]
            members = group.member_mask[ctx.idx_mapping_np] if group.member_mask is not None else None
            if members is None or not members.any():
                continue
            keep_alive = any_restricted and bool((members & restricted).any())
            self._commit(group, slots, local, tokens, ctx, previous_depth)
            if drafted and self._layout.drafts:
                self._apply_drafts(group, logits, slots, local, tokens, self._previous_depth, keep_alive)
            else:
                # Rows of other requests are inactive in this group's state: they receive nothing.
                group.state.apply(logits, rows=slots, keep_alive=keep_alive)
        return logits

    def _commit(self, group: Group, slots: torch.Tensor, local: torch.Tensor | None, tokens: torch.Tensor, ctx: LogitsContext, previous_depth: int) -> None:
        """Advance each slot's committed state to its newest committed token (step 1 of the module docs).

        A request's first row holds, at sequence position `pos`, its newest committed token: output
        token `pos - prompt_len`. The slot has consumed `POSITION` output tokens; the difference is the
        number of drafts accepted in between (0 without speculative decoding). Prompt tokens (the
        first decode step, chunked prefill), tokens replayed at resumption and placeholders (-1)
        are skipped.
        """
        state, layout = group.state, self._layout
        position_column = state.layout.POSITION
        ints, committed_floats = state.ints[slots], state.floats[slots]
        floats = committed_floats
        out_index = ctx.pos.to(torch.long) - self._req_states.prompt_len.gpu[slots].to(torch.long)
        accepted = out_index - ints[:, position_column]
        ready = (out_index >= 0) & (tokens >= 0)
        if local is not None:
            ready = ready & (local == 0)
        if layout.drafts:
            ints, floats, caught_up = self._resume_after_drafts(group, slots, ints, floats, out_index, accepted, previous_depth)
            ready = ready & ((accepted == 0) | caught_up)
        else:
            ready = ready & (accepted == 0)
        new_ints, new_floats = state.advance(ints, floats, tokens)
        # Only the first row of a ready request writes its slot (a slot owns several rows under
        # speculative decoding); the others write the discard row.
        target = torch.where(ready, slots, layout.discard)
        state.ints[target] = new_ints
        if new_floats is not committed_floats:  # unchanged floats (no rule advances them) need no write
            state.floats[target] = new_floats

    def _resume_after_drafts(
        self,
        group: Group,
        slots: torch.Tensor,
        ints: torch.Tensor,
        floats: torch.Tensor,
        out_index: torch.Tensor,
        accepted: torch.Tensor,
        depth: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The state to feed the newest committed token to: the committed one, or after `accepted`
        drafts, the state kept from the draft row of the last accepted draft; and where that worked.

        A kept state is used only when it is at exactly that output index. Otherwise (not expected
        from vLLM; kept as a safety net) up to `depth` accepted tokens (the last step's longest
        draft chain, known on the host) are replayed from the committed token history, without
        the decisions made on their rows.
        """
        state, layout = group.state, self._layout
        position_column = state.layout.POSITION
        kept_rows = layout.draft_row(slots, accepted.clamp(1, layout.drafts))
        kept_ints, kept_floats = state.ints[kept_rows], state.floats[kept_rows]
        kept = (accepted >= 1) & (kept_ints[:, position_column] == out_index) & (ints[:, state.layout.ACTIVE] == 1)
        ints = torch.where(kept[:, None], kept_ints, ints)
        floats = torch.where(kept[:, None], kept_floats, floats)
        missing = (accepted >= 1) & ~kept
        history = self._req_states.all_token_ids.gpu
        prompt_len = self._req_states.prompt_len.gpu[slots].to(torch.long)
        last = history.shape[1] - 1
        for i in range(depth):
            take = missing & (accepted > i)
            index = (prompt_len + ints[:, position_column]).clamp(0, last)
            token = history[slots, index].to(torch.long)
            new_ints, new_floats = state.advance(ints, floats, token)
            take = take & (token >= 0)
            ints = torch.where(take[:, None], new_ints, ints)
            floats = torch.where(take[:, None], new_floats, floats) if new_floats is not None else floats
        caught_up = kept | (missing & (ints[:, position_column] == out_index))
        return ints, floats, caught_up

    def _apply_drafts(
        self, group: Group, logits: torch.Tensor, slots: torch.Tensor, local: torch.Tensor, tokens: torch.Tensor, depth: int, keep_alive: bool
    ) -> None:
        """Steps 2 and 3 of the module docs for a step with draft rows (`depth`: the longest draft chain)."""
        state, layout = group.state, self._layout
        tables = state.tables
        position_column = state.layout.POSITION
        count = slots.shape[0]
        if count > layout.scratch_rows:
            raise ValueError(f"{count} logits rows for {layout.capacity} request slots and {layout.drafts} speculative tokens")
        ints, floats = state.ints[slots], state.floats[slots]
        previous = (torch.arange(count, device=slots.device) - 1).clamp(min=0)
        valid = torch.ones(count, dtype=torch.bool, device=slots.device)
        decides = state.layout.PENDING_AT is not None  # some rule decides in apply what the next token confirms
        for i in range(1, depth + 1):
            if decides:
                # The decisions each row's own apply would record (read from the logits as received).
                step = tables.contribute(ints, floats, lambda: logits)
                if step.int_writes or step.float_writes:
                    # Into copies: rows without a draft at this depth keep the state as it was.
                    decided_ints, decided_floats = ints.clone(), floats.clone()
                    step.store(decided_ints, decided_floats)
                else:
                    decided_ints, decided_floats = ints, floats
            else:
                decided_ints, decided_floats = ints, floats
            before_ints, before_floats = decided_ints[previous], decided_floats[previous]
            new_ints, new_floats = tables.advance(before_ints, before_floats, tokens)
            if new_floats is None:
                new_floats = before_floats
            # A placeholder draft (-1) is not fed: the row keeps the state before it, marked unusable.
            fed = tokens >= 0
            new_ints = torch.where(fed[:, None], new_ints, before_ints)
            new_floats = torch.where(fed[:, None], new_floats, before_floats)
            take = local >= i
            ints = torch.where(take[:, None], new_ints, ints)
            floats = torch.where(take[:, None], new_floats, floats)
            valid = torch.where(take, valid[previous] & fed, valid)
        scratch = slice(layout.scratch_base, layout.scratch_base + count)
        state.ints[scratch] = ints
        state.floats[scratch] = floats
        state.apply(logits, rows=scratch, keep_alive=keep_alive)
        # Row 0's state (with its decisions) is the committed one; draft rows' are kept for the next step.
        scratch_ints = state.ints[scratch]
        scratch_ints[:, position_column] = torch.where((local == 0) | valid, scratch_ints[:, position_column], INVALID_POSITION)
        target = torch.where(local == 0, slots, layout.draft_row(slots, local.clamp(min=1)))
        state.storage[target] = state.storage[scratch].clone()
