"""Speculative decoding's draft chain over an `InterventionState`, for engines that keep the token history on the device.

An engine that verifies drafts gives each request one logits row per draft position: row j (its
local position j = 0, 1, ..., k) decides the token after the request's newest committed token and
its first j drafts (the input tokens of rows 1..j). Each step, per group, `apply_step`:

1. **Commit.** The first row of a request is fed its input token, the request's newest committed
   token, when it is the slot's next output token. Under speculative decoding the slot may have
   committed several tokens since the last step (accepted drafts plus the token sampled after
   them): the state of the last accepted draft, kept from the last step, is where the slot resumes,
   so that apply-time decisions made on draft rows (a forced word, gated TIP's entropies) are the
   ones a one-token-at-a-time run would have made.
2. **Drafts.** Row j of a request gets the committed state advanced by the drafts before it, each
   step taking the apply-time decisions of the row before, as if the drafts had been committed one
   by one. This runs on scratch rows of the state: nothing is committed, and a rejected draft's
   state is never read again.
3. **Write.** Every row's biases and forcing go into the logits at once; row 0's decisions go to
   the committed state, draft rows' states are kept for step 1 of the next step.

`start_from_history` starts slots whose prompt (and, after preemption, output) is already in the
token history. All of it is tensor operations with lengths known on the host: no device-to-host
synchronisation.

State rows (`DraftLayout`; C request slots, K drafts per request): the committed state of slot s at
row s; the state after draft j of slot s at `C + s*K + j - 1`; this step's per-logits-row scratch
after those; one discard row last (writes that must go nowhere). The token history has one row per
slot. Used by vLLM's Model Runner V2 (`tip_decode/adapters/vllm/mrv2.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tip_decode.core.interventions.feeding import prompt_state
from tip_decode.core.interventions.settings import InterventionSet
from tip_decode.core.interventions.state import InterventionState

#: POSITION of a kept draft state that must never be resumed from (it matches no output index).
INVALID_POSITION = -2


@dataclass(frozen=True)
class DraftLayout:
    """Where a state keeps committed, draft, scratch and discard rows (see the module docs)."""

    capacity: int  # request slots
    drafts: int  # draft tokens per request and step (0: no speculative decoding)

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


@dataclass(frozen=True)
class StepRows:
    """One step's logits rows, the same for every group (all tensors on the device, one entry per logits row)."""

    slots: torch.Tensor  # the request slot of each row (long)
    local: torch.Tensor | None  # each row's draft position (0: the first row of its request); None: no draft rows
    tokens: torch.Tensor  # each row's input token (long; -1: a placeholder)
    out_index: torch.Tensor  # output index of each row's input token: its sequence position minus the prompt length
    prompt_len: torch.Tensor  # the prompt length of each row's request (long)
    history: torch.Tensor  # the token history, one row per slot: prompt then output (-1: a placeholder)
    resume_depth: int  # the longest draft chain of the last step: at most that many drafts were accepted since
    depth: int  # the longest draft chain of this step (0: no draft rows)


def forget_drafts(state: InterventionState, layout: DraftLayout, slots: torch.Tensor) -> None:
    """Kept draft states of these slots are another occupant's (or another run's): never resume from them."""
    if not layout.drafts:
        return
    index = torch.arange(1, layout.drafts + 1, device=slots.device)
    rows = layout.draft_row(slots[:, None], index[None, :]).reshape(-1)
    state.ints[rows, state.layout.POSITION] = INVALID_POSITION


def start_from_history(
    state: InterventionState,
    layout: DraftLayout,
    slots: torch.Tensor,
    settings: Sequence[InterventionSet],
    history: torch.Tensor,
    prompt_len: np.ndarray,
    output_len: np.ndarray,
) -> None:
    """Start `slots` from their prompts in `history` (the prompt rule, on the device), then replay
    any output already there (resumption after preemption); `prompt_len` / `output_len` on the host."""
    width = int(prompt_len.max(initial=0))
    ids = history[slots, :width].to(torch.long)
    opened, thinking = prompt_state(state.tables, ids, torch.as_tensor(prompt_len, dtype=torch.long, device=slots.device))
    state.start_rows(slots, settings, opened, thinking)
    forget_drafts(state, layout, slots)
    replay_history(state, slots, history, prompt_len, output_len)


def replay_history(state: InterventionState, slots: torch.Tensor, history: torch.Tensor, prompt_len: np.ndarray, output_len: np.ndarray) -> None:
    """Feed each slot's first `output_len` output tokens from `history`, token by token, on the device.

    Lengths are known on the host, so this needs no sync; a placeholder (-1) ends a slot's replay
    there (the commit step then catches up from the token history).
    """
    steps = int(output_len.max(initial=0))
    if not steps:
        return
    lengths = torch.as_tensor(output_len, dtype=torch.long, device=slots.device)
    first = torch.as_tensor(prompt_len, dtype=torch.long, device=slots.device)
    last = (lengths - 1).clamp(min=0)
    alive = lengths > 0
    for step in range(steps):
        tokens = history[slots, first + last.clamp(max=step)].to(torch.long)
        alive = alive & (lengths > step) & (tokens >= 0)
        ints, floats = state.ints[slots], state.floats[slots]
        new_ints, new_floats = state.advance(ints, floats, tokens)
        state.ints[slots] = torch.where(alive[:, None], new_ints, ints)
        state.floats[slots] = torch.where(alive[:, None], new_floats, floats)


def apply_step(state: InterventionState, layout: DraftLayout, logits: torch.Tensor, step: StepRows, keep_alive: bool) -> None:
    """Steps 1 to 3 of the module docs for one state (rows of other requests are inactive in it: they receive nothing)."""
    _commit(state, layout, step)
    if step.depth and layout.drafts:
        _apply_drafts(state, layout, logits, step, keep_alive)
    else:
        state.apply(logits, rows=step.slots, keep_alive=keep_alive)


def _commit(state: InterventionState, layout: DraftLayout, step: StepRows) -> None:
    """Advance each slot's committed state to its newest committed token (step 1 of the module docs).

    A request's first row holds its newest committed token, output token `out_index`. The slot has
    consumed `POSITION` output tokens; the difference is the number of drafts accepted in between
    (0 without speculative decoding). Prompt tokens (the first decode step, chunked prefill),
    tokens replayed at resumption and placeholders (-1) are skipped.
    """
    slots, tokens = step.slots, step.tokens
    ints, committed_floats = state.ints[slots], state.floats[slots]
    floats = committed_floats
    accepted = step.out_index - ints[:, state.layout.POSITION]
    ready = (step.out_index >= 0) & (tokens >= 0)
    if step.local is not None:
        ready = ready & (step.local == 0)
    if layout.drafts:
        ints, floats, caught_up = _resume_after_drafts(state, layout, step, ints, floats, accepted)
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
    state: InterventionState, layout: DraftLayout, step: StepRows, ints: torch.Tensor, floats: torch.Tensor, accepted: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The state to feed the newest committed token to: the committed one, or after `accepted`
    drafts, the state kept from the draft row of the last accepted draft; and where that worked.

    A kept state is used only when it is at exactly that output index. Otherwise (not expected
    from vLLM; kept as a safety net) up to `step.resume_depth` accepted tokens (known on the host)
    are replayed from the committed token history, without the decisions made on their rows.
    """
    slots, out_index = step.slots, step.out_index
    position_column = state.layout.POSITION
    kept_rows = layout.draft_row(slots, accepted.clamp(1, layout.drafts))
    kept_ints, kept_floats = state.ints[kept_rows], state.floats[kept_rows]
    kept = (accepted >= 1) & (kept_ints[:, position_column] == out_index) & (ints[:, state.layout.ACTIVE] == 1)
    ints = torch.where(kept[:, None], kept_ints, ints)
    floats = torch.where(kept[:, None], kept_floats, floats)
    missing = (accepted >= 1) & ~kept
    history = step.history
    last = history.shape[1] - 1
    for i in range(step.resume_depth):
        take = missing & (accepted > i)
        index = (step.prompt_len + ints[:, position_column]).clamp(0, last)
        token = history[slots, index].to(torch.long)
        new_ints, new_floats = state.advance(ints, floats, token)
        take = take & (token >= 0)
        ints = torch.where(take[:, None], new_ints, ints)
        floats = torch.where(take[:, None], new_floats, floats) if new_floats is not None else floats
    caught_up = kept | (missing & (ints[:, position_column] == out_index))
    return ints, floats, caught_up


def _apply_drafts(state: InterventionState, layout: DraftLayout, logits: torch.Tensor, step: StepRows, keep_alive: bool) -> None:
    """Steps 2 and 3 of the module docs for a step with draft rows."""
    slots, local, tokens = step.slots, step.local, step.tokens
    if local is None:
        raise ValueError("a step with draft rows needs each row's draft position (StepRows.local)")
    tables = state.tables
    position_column = state.layout.POSITION
    count = slots.shape[0]
    if count > layout.scratch_rows:
        raise ValueError(f"{count} logits rows for {layout.capacity} request slots and {layout.drafts} speculative tokens")
    ints, floats = state.ints[slots], state.floats[slots]
    previous = (torch.arange(count, device=slots.device) - 1).clamp(min=0)
    valid = torch.ones(count, dtype=torch.bool, device=slots.device)
    decides = state.layout.PENDING_AT is not None  # some rule decides in apply what the next token confirms
    for i in range(1, step.depth + 1):
        if decides:
            # The decisions each row's own apply would record (read from the logits as received).
            decisions = tables.contribute(ints, floats, lambda: logits)
            if decisions.int_writes or decisions.float_writes:
                # Into copies: rows without a draft at this depth keep the state as it was.
                decided_ints, decided_floats = ints.clone(), floats.clone()
                decisions.store(decided_ints, decided_floats)
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
