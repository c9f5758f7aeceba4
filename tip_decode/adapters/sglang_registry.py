"""The server side of the SGLang adapter: one registry of tracked requests per scheduler process.

SGLang builds a new processor object for every batch, so the requests' state lives here, keyed by
`rid` (see `tip_decode.adapters.sglang` for how requests are followed). Admission, groups with idle
eviction, slots, prompt facts and warn-once are the core's request tracker (`tip_decode.core.tracker`);
what stays here is SGLang's own: the `__req__` proxy, the sweep of finished requests, catching up
from `output_ids` and the overlap scheduler's one-token lag.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tip_decode.core.interventions import InterventionSet, InterventionState, PlanTables, plan_for
from tip_decode.core.server_defaults import ENV_TOKENIZER, server_settings
from tip_decode.core.tracker import GroupCache, SlotPool, WarnOnce, prompt_facts, row_index

logger = logging.getLogger("tip_decode.adapters.sglang")  # the adapter's logger name, as before the split

#: Requests tracked at once; beyond this the least recently seen are dropped (and rebuilt on return).
MAX_TRACKED_REQUESTS = 16384
#: Calls between two sweeps for finished or freed requests.
SWEEP_EVERY = 64
#: Rows a group's state starts with; it doubles when full.
INITIAL_CAPACITY = 64


def request_settings(params: Mapping[str, Any], default: InterventionSet) -> InterventionSet:
    """A request's interventions: its namespaced custom params over the server default.

    Raises:
        ValueError / TypeError: a bad value or an unknown key inside a namespace (the message names it).
    """
    return InterventionSet.from_mapping(params, default=default)


_TOKENIZERS: dict[str, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def _server_tokenizer_path() -> tuple[str, bool, str | None]:
    """(path, trust_remote_code, revision) of the tokenizer to build plans with."""
    path = os.environ.get(ENV_TOKENIZER)
    trust, revision = False, None
    try:  # SGLang >= 0.5: the scheduler process publishes its server arguments here.
        from sglang.srt.runtime_context import get_server_args

        args = get_server_args()
        path = path or args.tokenizer_path or args.model_path
        trust = bool(getattr(args, "trust_remote_code", False))
        revision = getattr(args, "revision", None)
    except Exception:  # noqa: BLE001 - not in a scheduler, or another SGLang version
        pass
    if not path:
        raise ValueError(f"no tokenizer to build the interventions' vocabularies with; set {ENV_TOKENIZER}")
    return path, trust, revision


def _load_tokenizer() -> Any:
    path, trust, revision = _server_tokenizer_path()
    with _TOKENIZER_LOCK:
        if path not in _TOKENIZERS:
            from transformers import AutoTokenizer

            _TOKENIZERS[path] = AutoTokenizer.from_pretrained(path, trust_remote_code=trust, revision=revision)
        return _TOKENIZERS[path]


class _Group:
    """The plan, tables and state of one structure; one state row ("slot") per tracked request."""

    def __init__(self, structure: Hashable, tables: PlanTables) -> None:
        self.structure = structure
        self.tables = tables
        self.state = InterventionState(tables, INITIAL_CAPACITY)
        self.slots = SlotPool(INITIAL_CAPACITY, self._grow)

    @property
    def members(self) -> int:
        return self.slots.taken

    def _grow(self, capacity: int) -> None:
        old = self.state
        grown = InterventionState(self.tables, capacity)
        grown.ints[: old.capacity] = old.ints
        grown.floats[: old.capacity] = old.floats
        self.state = grown


@dataclass
class _Tracked:
    """One request: its proxy (identity check), its interventions and where its state lives."""

    proxy: Any
    settings: InterventionSet | None  # None: no intervention for this request
    group: _Group | None = None
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
    replays: int = 0


def _index(values: list[int], device: torch.device) -> slice | torch.Tensor:
    """Consecutive ascending indices as a slice (a view, no gather), others as a tensor."""
    rows = row_index(values)
    return rows if isinstance(rows, slice) else torch.tensor(rows, dtype=torch.long, device=device)


class _Registry:
    """All intervention state of one scheduler process (SGLang builds a new processor object per batch)."""

    def __init__(self) -> None:
        self.requests: dict[str, _Tracked] = {}
        self.groups: GroupCache[_Group] = GroupCache(self._build_group, lambda group: group.members == 0)  # (structure, width, device)
        self.stats = _Stats()
        self.warn = WarnOnce(logger)
        self.max_tracked = MAX_TRACKED_REQUESTS
        self._default: InterventionSet | None = None
        self._default_error: str | None = None
        self._tokenizer: Any = None

    # ----- helpers -----

    def default(self) -> InterventionSet:
        if self._default is None and self._default_error is None:
            try:
                self._default = server_settings()
            except ValueError as err:
                self._default_error = str(err)
        if self._default_error is not None:
            raise ValueError(f"server default: {self._default_error}")
        assert self._default is not None
        return self._default

    def group(self, settings: InterventionSet, width: int, device: torch.device) -> _Group:
        """The group of the request's structure, built on first use (ValueError naming a bad setting)."""
        return self.groups.get((settings.structure, width, device))

    def _build_group(self, key: Hashable) -> _Group:
        structure, width, device = key  # type: ignore[misc]
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer()
        return _Group(structure, plan_for(self._tokenizer, structure).tables(width, device))

    def drop(self, rid: str) -> None:
        tracked = self.requests.pop(rid, None)
        if tracked is not None and tracked.group is not None:
            tracked.group.slots.release(tracked.slot)

    # ----- per request -----

    def track(self, rid: str, proxy: Any, params: Mapping[str, Any], width: int, device: torch.device) -> _Tracked:
        """Start tracking a request: read its settings once; bad input turns its interventions off."""
        try:
            settings = request_settings(params, self.default())
            if not settings:
                tracked = _Tracked(proxy, None)
            else:
                group = self.group(settings, width, device)
                prompt_open, prompt_think = prompt_facts(group.tables.think_start, group.tables.think_end, proxy.origin_input_ids)
                tracked = _Tracked(proxy, settings, group, group.slots.take(), prompt_open, prompt_think)
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
        # group id -> (group, logits rows, slots) of this call
        work: dict[int, tuple[_Group, list[int], list[int]]] = {}
        steps: dict[int, tuple[list[int], list[int]]] = {}  # group id -> (slots, tokens) of the one-token rows
        catch_up: list[tuple[_Tracked, list[int]]] = []
        touched: list[str] = []
        saved: list[tuple[slice | torch.Tensor, torch.Tensor, torch.Tensor]] = []
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
                elif count != tracked.seen:
                    # Several new tokens (the first step after tracking began mid-request) or fewer
                    # (SGLang discarded output on retraction): rebuild from the output, once.
                    catch_up.append((tracked, [int(t) for t in output]))
                entry = work.setdefault(key, (tracked.group, [], []))
                entry[1].append(row)
                entry[2].append(tracked.slot)
            for tracked, output in catch_up:
                assert tracked.group is not None and tracked.settings is not None
                tracked.group.state.replay_row(tracked.slot, tracked.settings, tracked.prompt_open, tracked.prompt_think, output)
                tracked.seen = len(output)
                stats.replays += 1
            for key, (slots, tokens) in steps.items():
                group = work[key][0]
                group.state.update(torch.tensor(tokens, dtype=torch.long, device=device), _index(slots, device))
            # One write per structure. Each group's columns are saved first, so that a failure
            # half-way restores the logits of the groups already written: nothing half-applied.
            for group, rows, slots in work.values():
                columns = group.tables.columns
                if not group.tables.token_ids:
                    continue
                logit_rows = _index(rows, device)
                saved.append((logit_rows, columns, _read(logits, logit_rows, columns)))
                group.state.apply(logits, rows=_index(slots, device), logit_rows=logit_rows)
        except Exception as err:  # noqa: BLE001 - never take the scheduler down
            logger.exception("intervention processor failed; this step's logits are left unchanged and its requests' state is rebuilt")
            self.warn("intervention processor error: %r", err)
            for rid in touched:
                self.drop(rid)
            try:
                for logit_rows, columns, values in saved:
                    _write(logits, logit_rows, columns, values)
            except Exception:  # noqa: BLE001
                logger.exception("could not restore this step's logits")
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


def _read(logits: torch.Tensor, rows: slice | torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    if isinstance(rows, slice):
        return logits[rows][:, columns]
    return logits[rows[:, None], columns[None, :]]


def _write(logits: torch.Tensor, rows: slice | torch.Tensor, columns: torch.Tensor, values: torch.Tensor) -> None:
    if isinstance(rows, slice):
        logits[rows][:, columns] = values
    else:
        logits[rows[:, None], columns[None, :]] = values


class _Unchanged(Exception):
    """Internal: the call failed and the caller returns the logits it was given (restored)."""
