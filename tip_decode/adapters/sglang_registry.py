"""The server side of the SGLang adapter: one registry of tracked requests per scheduler process.

SGLang builds a new processor object for every batch, so the requests' state lives here, keyed by
`rid` (see `tip_decode.adapters.sglang` for how requests are followed). What every engine needs is
the core's: groups with idle eviction, slots, prompt facts and warn-once (`tip_decode.core.tracker`),
catching up a row whose output moved by other than one token and row indices
(`core.interventions.feeding`), groups whose state grows with their requests and the all-or-nothing
logits write (`core.interventions.slots`). The server's default settings and
tokenizer are `tip_decode.adapters.sglang_server`'s. What stays here is SGLang's own: the `__req__`
proxy and its identity, the sweep of finished or freed requests, reading new tokens from
`output_ids`, and the overlap scheduler's one-token lag.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tip_decode.adapters.sglang_server import ServerConfiguration, request_settings
from tip_decode.core.interventions import InterventionSet, plan_for
from tip_decode.core.interventions.feeding import Behind, catch_up, device_rows
from tip_decode.core.interventions.slots import SlotGroup, apply_all
from tip_decode.core.tracker import GroupCache, WarnOnce, prompt_facts

logger = logging.getLogger("tip_decode.adapters.sglang")  # the adapter's logger name, as before the split

#: Requests tracked at once; beyond this the least recently seen are dropped (and rebuilt on return).
MAX_TRACKED_REQUESTS = 16384
#: Calls between two sweeps for finished or freed requests.
SWEEP_EVERY = 64


@dataclass
class _Tracked:
    """One request: its proxy (identity check), its interventions and where its state lives."""

    proxy: Any
    settings: InterventionSet | None  # None: no intervention for this request
    group: SlotGroup | None = None
    slot: int = -1
    prompt_open: bool = False
    prompt_think: int = 0
    seen: int = 0  # output tokens fed to the state
    last_call: int = 0


@dataclass
class _Stats:
    calls: int = 0
    lagging_rows: int = 0
    rows: int = 0
    released: int = 0
    evicted: int = 0
    replays: int = 0  # rows rebuilt or caught up from their output (not one token a step)


class _Registry:
    """All intervention state of one scheduler process (SGLang builds a new processor object per batch)."""

    def __init__(self) -> None:
        self.requests: dict[str, _Tracked] = {}
        # Keyed by (structure, logits width, device): the tables depend on all three.
        self.groups: GroupCache[SlotGroup] = GroupCache(self._build_group, lambda group: group.members == 0)
        self.stats = _Stats()
        self.warn = WarnOnce(logger)
        self.max_tracked = MAX_TRACKED_REQUESTS
        self.server = ServerConfiguration()

    def _build_group(self, key: Any) -> SlotGroup:
        structure, width, device = key
        return SlotGroup(structure, plan_for(self.server.tokenizer(), structure).tables(width, device))

    def drop(self, rid: str) -> None:
        tracked = self.requests.pop(rid, None)
        if tracked is not None and tracked.group is not None:
            tracked.group.slots.release(tracked.slot)

    # ----- per request -----

    def track(self, rid: str, proxy: Any, params: Mapping[str, Any], width: int, device: torch.device) -> _Tracked:
        """Start tracking a request: read its settings once; bad input turns its interventions off.

        A request that arrives with output (back after eviction, or after an error dropped it) is
        rebuilt from it on the host (`replay_row`: once, O(its length)), not fed token by token.
        """
        try:
            settings = request_settings(params, self.server.default())
            if not settings:
                tracked = _Tracked(proxy, None)
            else:
                group = self.groups.get((settings.structure, width, device))
                prompt_open, prompt_think = prompt_facts(group.tables.think_start, group.tables.think_end, proxy.origin_input_ids)
                output = [int(t) for t in proxy.output_ids]  # read before a slot is taken: it may raise
                tracked = _Tracked(proxy, settings, group, group.slots.take(), prompt_open, prompt_think, seen=len(output))
                if output:
                    group.state.replay_row(tracked.slot, settings, prompt_open, prompt_think, output)
                    self.stats.replays += 1
                else:
                    group.state.start_rows([tracked.slot], [settings], [prompt_open], [prompt_think])
        except (ValueError, TypeError) as err:
            self.warn("Interventions are off for a request whose custom_params could not be used: %s", err)
            tracked = _Tracked(proxy, None)
        self.requests[rid] = tracked
        return tracked

    def sweep(self, call: int) -> None:
        """Drop requests that finished or were freed; then, past the bound, the least recently seen."""
        for rid, tracked in list(self.requests.items()):
            if tracked.last_call == call:
                continue
            try:
                gone = bool(tracked.proxy.finished())
            except ReferenceError:  # the scheduler freed the Req
                gone = True
            except Exception:  # noqa: BLE001 - an SGLang without finished(): rely on the proxy only
                gone = False
            if gone:
                self.drop(rid)
                self.stats.released += 1
        excess = len(self.requests) - self.max_tracked
        if excess > 0:
            idle = sorted((t.last_call, rid) for rid, t in self.requests.items() if t.last_call != call)
            for _, rid in idle[:excess]:
                self.drop(rid)
                self.stats.evicted += 1

    # ----- per call -----

    def apply(self, logits: torch.Tensor, params_list: Sequence[Any]) -> torch.Tensor:
        stats = self.stats
        stats.calls += 1
        call = stats.calls
        width, device = logits.shape[-1], logits.device

        def to_device(values: Any) -> torch.Tensor:
            return torch.as_tensor(values, dtype=torch.long, device=device)

        # group id -> (group, logits rows, slots) of this call
        work: dict[int, tuple[SlotGroup, list[int], list[int]]] = {}
        steps: dict[int, tuple[list[int], list[int]]] = {}  # group id -> (slots, tokens) of the one-token rows
        behind: dict[int, list[tuple[_Tracked, Behind]]] = {}  # group id -> rows whose output moved otherwise
        touched: list[str] = []
        try:
            for row, params in enumerate(params_list):
                tracked = self._row(row, params, width, device, call, touched)
                if tracked is None or tracked.group is None:
                    continue
                output = tracked.proxy.output_ids
                count = len(output)
                key = id(tracked.group)
                if count == tracked.seen + 1:
                    slots, tokens = steps.setdefault(key, ([], []))
                    slots.append(tracked.slot)
                    tokens.append(int(output[-1]))
                    tracked.seen = count
                elif count != tracked.seen:  # several new tokens, or fewer (SGLang's retraction discarded output)
                    assert tracked.settings is not None
                    late = Behind(tracked.slot, tracked.settings, tracked.prompt_open, tracked.prompt_think, [int(t) for t in output], tracked.seen)
                    behind.setdefault(key, []).append((tracked, late))
                entry = work.setdefault(key, (tracked.group, [], []))
                entry[1].append(row)
                entry[2].append(tracked.slot)
            for key, rows in behind.items():
                seen = catch_up(work[key][0].state, [late for _, late in rows], to_device)
                for (tracked, _), count in zip(rows, seen):
                    tracked.seen = count
                stats.replays += len(rows)
            for key, (slots, tokens) in steps.items():
                work[key][0].state.update(to_device(tokens), device_rows(slots, to_device))
            # One write per structure, all or nothing.
            apply_all(logits, [(group.state, device_rows(slots, to_device), device_rows(rows, to_device)) for group, rows, slots in work.values()])
        except Exception as err:  # noqa: BLE001 - never take the scheduler down
            logger.exception("intervention processor failed; this step's logits are left unchanged and its requests' state is rebuilt")
            self.warn("intervention processor error: %r", err)
            for rid in touched:
                self.drop(rid)
            raise _Unchanged() from None
        if call % SWEEP_EVERY == 0 or len(self.requests) > self.max_tracked:
            self.sweep(call)
        return logits

    def _row(self, row: int, params: Any, width: int, device: torch.device, call: int, touched: list[str]) -> _Tracked | None:
        if not isinstance(params, Mapping) or "__req__" not in params:
            self.warn(
                "Interventions are off for a request without a custom_params dict (got %s); SGLang hands the "
                "processor the request's tokens only when custom_params is a dict: send at least {}",
                type(params).__name__,
            )
            return None
        proxy = params["__req__"]
        try:
            rid = proxy.rid
        except ReferenceError:
            return None
        tracked = self.requests.get(rid)
        if tracked is None or tracked.proxy is not proxy:
            if tracked is not None:
                self.drop(rid)
            tracked = self.track(rid, proxy, params, width, device)
        tracked.last_call = call
        touched.append(rid)
        self.stats.rows += 1
        if tracked.group is not None:
            self._note_lag(proxy)
        return tracked

    def _note_lag(self, proxy: Any) -> None:
        """Warn once when SGLang's overlap scheduler hands over the output one token late.

        The request's KV cache already holds the token being fed to this step; when it is longer
        than prompt + output, the newest sampled token has not reached `output_ids` yet.
        """
        try:
            position = int(proxy.kv.kv_committed_len) - len(proxy.origin_input_ids)
        except Exception:  # noqa: BLE001 - another SGLang version: no detection
            return
        if position == len(proxy.output_ids) + 1:
            self.stats.lagging_rows += 1
            self.warn(
                "SGLang's overlap scheduler hands the intervention processor each request's output one token late, "
                "so step t gets what the processor computes for step t-1 (docs/sglang.md). Start the server with "
                "SGLANG_ENABLE_DELAY_SAMPLE=1 (tip-decode serve --engine sglang does) or "
                "--disable-overlap-schedule for exact interventions."
            )


class _Unchanged(Exception):
    """Internal: the call failed and the caller returns the logits it was given (restored)."""
