"""SGLang adapter: `ThoughtSwitchPenalty`, a custom logit processor for the whole intervention family, and the client-side request fields.

SGLang runs a custom logit processor inside its scheduler process: a request names the processor
class (`custom_logit_processor`, a pickled class reference) and carries its own parameters
(`custom_params`); the server must run with `--enable-custom-logit-processor`. Each call gets the
logits rows of the requests that use the class, and one params dict per row to which SGLang adds
`__req__`, a weak proxy of the scheduler's `Req` (`rid`, `origin_input_ids`, `output_ids`).

How the processor follows requests (see docs/sglang.md):
- **Settings per request.** `custom_params` holds the flat namespaced keys of the vLLM processor
  (`tip_*`, `nowait_*`, `cyclic_*`, `budget_*`, `gated_*`, read by `InterventionSet.from_mapping`)
  over the server default (`TIP_DECODE_*` variables, `tip_decode.core.server_defaults`).
- **State per request, in the scheduler process.** SGLang builds a new processor object for every
  new batch, so the state lives in one module-level registry keyed by `rid` (checked against the
  identity of the `__req__` proxy, so that a reused rid never inherits another request's state).
  Requests that share a structure (`InterventionSet.structure`: which interventions, with which
  trigger lists, keywords, scopes, words) share one plan and one `InterventionState`, one row
  ("slot") each, advanced by the tokens appended to `output_ids` since the last step: O(1) per
  step, whatever the history length. One `apply` per structure writes every bias at once.
- **Released when the request goes.** A request whose `Req` was freed (its weak proxy is dead) or
  that reports `finished()` is dropped by a sweep every `SWEEP_EVERY` calls; at most
  `MAX_TRACKED_REQUESTS` requests are tracked (the least recently seen beyond that are dropped and,
  should they come back, rebuilt once from their output).
- **The overlap scheduler.** With SGLang's default overlap scheduler the processor runs before the
  previous step's token is appended to `output_ids`, so by default it sees the output one token
  late; `SGLANG_ENABLE_DELAY_SAMPLE=1` (set by `tip-decode serve --engine sglang`) or
  `--disable-overlap-schedule` hand it the current output. The processor acts on the tokens it can
  see: exact when the output is current, otherwise one step behind (docs/sglang.md says what that
  means for each intervention; it logs a warning once).
- **It never raises.** A processor that raised would stop the scheduler and the server with it.
  Bad request parameters turn that request's interventions off with a logged warning (clients
  validate before sending with `custom_params` / `generate_fields` / `openai_fields`); an
  unexpected error leaves the logits of that call unchanged and drops the affected states, to be
  rebuilt next step.

This module imports SGLang only if it is installed: the client helpers and the class reference work
without it (the processor class then derives from `object`, and its pickled reference is the same).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tip_decode.core.config import TIPConfig
from tip_decode.core.interventions import InterventionSet, InterventionState, PlanTables, interventions, namespace_of, plan_for, prompt_state, request_mapping
from tip_decode.core.server_defaults import (
    ENV_ALPHA,
    ENV_BETA,
    ENV_INTERVENTIONS,
    ENV_SCOPE,
    ENV_TOKENIZER,
    ENV_TRIGGERS,
    server_default,
    server_settings,
)

try:  # the server side; clients need not have SGLang installed
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor as _ProcessorBase
except ImportError:  # pragma: no cover - exercised in the client-only test environment
    _ProcessorBase = object  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

__all__ = [
    "ENV_ALPHA",
    "ENV_BETA",
    "ENV_INTERVENTIONS",
    "ENV_SCOPE",
    "ENV_TOKENIZER",
    "ENV_TRIGGERS",
    "ReasoningInterventions",
    "ThoughtSwitchPenalty",
    "custom_params",
    "generate_fields",
    "openai_fields",
    "processor_string",
    "registry_snapshot",
    "request_config",
    "request_settings",
    "server_default",
    "server_settings",
]

#: The public import path SGLang unpickles the processor class from (kept stable across refactors).
PUBLIC_MODULE = "tip_decode.sglang"
#: Requests tracked at once; beyond this the least recently seen are dropped (and rebuilt on return).
MAX_TRACKED_REQUESTS = 16384
#: Calls between two sweeps for finished or freed requests.
SWEEP_EVERY = 64
#: Idle structures (groups) kept for reuse, as in the vLLM adapter.
MAX_IDLE_GROUPS = 16
#: Distinct warning messages remembered (each is logged once); the set is cleared past this.
MAX_WARNINGS = 256
#: Rows a group's state starts with; it doubles when full.
INITIAL_CAPACITY = 64
#: Pickle protocol of `CustomLogitProcessor.to_str()` (dill's default: 4).
PICKLE_PROTOCOL = 4
#: The old keyword settings of the client helpers: TIP's, without the `tip_` prefix.
TIP_SHORTHAND = {"alpha": "tip_alpha", "beta": "tip_beta", "triggers": "tip_triggers", "scope": "tip_scope"}


# ----------------------------------------------------------------------------- configuration


def request_settings(params: Mapping[str, Any], default: InterventionSet) -> InterventionSet:
    """A request's interventions: its namespaced custom params over the server default.

    Raises:
        ValueError / TypeError: a bad value or an unknown key inside a namespace (the message names it).
    """
    return InterventionSet.from_mapping(params, default=default)


def request_config(params: Mapping[str, Any], default: TIPConfig) -> TIPConfig:
    """A request's TIP configuration alone: its `tip_*` custom params over the server default.

    Raises:
        ValueError / TypeError: a bad or unknown `tip_*` key (the message names it).
    """
    return TIPConfig.from_mapping(params, default=default)


# ----------------------------------------------------------------------------- client side


def processor_string(processor: type | None = None) -> str:
    """The `custom_logit_processor` value naming `processor` (default: `ThoughtSwitchPenalty`).

    Equal to SGLang's `CustomLogitProcessor.to_str()` for the class (a JSON object whose `callable`
    is the hex of a protocol-4 pickle of the class by reference), built with the standard library so
    that clients need neither SGLang nor dill. The server unpickles it by importing the class.
    """
    cls = ThoughtSwitchPenalty if processor is None else processor
    if not isinstance(cls, type):
        raise TypeError(f"`processor` has to be a class, but is {cls!r}")
    return json.dumps({"callable": pickle.dumps(cls, protocol=PICKLE_PROTOCOL).hex()})


def _whole(settings: InterventionSet) -> dict[str, Any]:
    """Every intervention of `settings` sent whole, and every other one turned off explicitly."""
    return request_mapping(settings)


def _keyword_mapping(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword settings as flat keys: TIP's shorthand (`alpha=` ...) or flat keys (`nowait=1`, `budget_max=`)."""
    mapping: dict[str, Any] = {}
    unknown = []
    for name, value in settings.items():
        key = TIP_SHORTHAND.get(name, name)
        if namespace_of(key) is None:
            unknown.append(name)
            continue
        if key in mapping:
            raise TypeError(f"`{name}` and `{key}` name the same setting; pass one")
        mapping[key] = value
    if unknown:
        examples = ", ".join(d.name if d.bare_key else next(iter(d.keys)) for d in interventions())
        raise TypeError(f"unknown setting(s) {', '.join(sorted(unknown))} (known: {', '.join(TIP_SHORTHAND)}, or flat keys such as {examples})")
    return mapping


def _json_safe(value: Any) -> Any:
    return "inf" if isinstance(value, float) and value == math.inf else value


def _validated(mapping: Mapping[str, Any]) -> tuple[dict[str, Any], InterventionSet]:
    """The keys to send (namespaced values normalised, others passed through) and the settings they give."""
    if "__req__" in mapping:
        raise ValueError("`__req__` is set by SGLang; do not send it")
    # An intervention's keys without what turns it on (TIP's `tip_alpha`) are checked against its paper
    # settings, so that a trigger or scope check below has something to check (the server fills the
    # rest from its default).
    named = {d.name: d.paper for k in mapping if (d := namespace_of(k)) is not None and d.switch_keys is not None}
    checked = InterventionSet.from_mapping(mapping, default=InterventionSet(**named))
    normal = checked.to_mapping()
    params: dict[str, Any] = {}
    for key, value in mapping.items():
        if namespace_of(key) is not None:
            params[key] = normal[key] if key in normal else _json_safe(value)
        else:
            params[key] = value
    return params, checked


def custom_params(config: InterventionSet | TIPConfig | Mapping[str, Any] | None = None, *, tokenizer: Any = None, **settings: Any) -> dict[str, Any]:
    """The request's `custom_params`: validated, JSON-safe flat keys of the interventions.

    Args:
        config: an `InterventionSet` (sent whole: its interventions with all their settings, every
            other intervention turned off, whatever the server default), a `TIPConfig` (TIP sent
            whole), a mapping of flat keys (`tip_*`, `nowait*`, `cyclic*`, `budget*`, `gated*`:
            only those given are sent, so the rest take the server default; keys outside these
            namespaces pass through unchanged), or None.
        tokenizer: optional; also checks what the server would with its tokenizer: that triggers,
            keywords and words yield tokens and that scope "think" and budgets have think markers.
        **settings: flat keys as keywords (`nowait=1, budget_max=4000`), or TIP's shorthand
            `alpha`, `beta`, `triggers`, `scope` (instead of `config`).

    Raises:
        ValueError: a bad value, named by its key, before anything is sent.
        TypeError: an unknown keyword, or both `config` and keywords.

    Example:
        >>> custom_params(alpha=3, beta=600)
        {'tip_alpha': 3.0, 'tip_beta': 600}
        >>> custom_params(TIPConfig.off())
        {'tip_alpha': 0}
        >>> custom_params({"nowait": 1, "budget_max": 4000.0})
        {'nowait': 1, 'budget_max': 4000}
    """
    if config is not None and settings:
        raise TypeError("pass either a configuration or keyword settings, not both")
    if isinstance(config, InterventionSet):
        params, checked = _whole(config), config
    elif isinstance(config, TIPConfig):
        params = config.to_mapping() if config.enabled else {"tip_alpha": 0}
        checked = InterventionSet(tip=config)
    elif config is None:
        params, checked = _validated(_keyword_mapping(settings))
    elif isinstance(config, Mapping):
        params, checked = _validated(config)
    else:
        raise TypeError(f"expected an InterventionSet, a TIPConfig or a mapping of flat keys, got {type(config).__name__}")
    if tokenizer is not None and checked:
        plan_for(tokenizer, checked)
    return params


def generate_fields(config: InterventionSet | TIPConfig | Mapping[str, Any] | None = None, *, tokenizer: Any = None, **settings: Any) -> dict[str, Any]:
    """Fields to merge into a native `/generate` request (or `Engine.generate` keyword arguments).

    `custom_params` belongs inside `sampling_params`; merge with your own sampling parameters:
    `{"text": ..., **fields, "sampling_params": {**fields["sampling_params"], "max_new_tokens": 512}}`.
    Arguments as for `custom_params`.
    """
    return {"custom_logit_processor": processor_string(), "sampling_params": {"custom_params": custom_params(config, tokenizer=tokenizer, **settings)}}


def openai_fields(config: InterventionSet | TIPConfig | Mapping[str, Any] | None = None, *, tokenizer: Any = None, **settings: Any) -> dict[str, Any]:
    """Top-level fields for `/v1/completions` and `/v1/chat/completions` (the OpenAI client's `extra_body`).

    Arguments as for `custom_params`.
    """
    return {"custom_logit_processor": processor_string(), "custom_params": custom_params(config, tokenizer=tokenizer, **settings)}


# ----------------------------------------------------------------------------- server side


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


@dataclass(eq=False)
class _Group:
    """The plan, tables and state of one structure; one state row ("slot") per tracked request."""

    structure: Hashable
    tables: PlanTables
    state: InterventionState
    free: list[int]
    members: int = 0

    def take_slot(self) -> int:
        if not self.free:
            old = self.state
            grown = InterventionState(self.tables, old.capacity * 2)
            grown.ints[: old.capacity] = old.ints
            grown.floats[: old.capacity] = old.floats
            self.state = grown
            self.free = list(range(grown.capacity - 1, old.capacity - 1, -1))
        self.members += 1
        return self.free.pop()

    def release(self, slot: int) -> None:
        self.members -= 1
        self.free.append(slot)


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
    warnings: set[str] = field(default_factory=set)


def _index(values: list[int], device: torch.device) -> slice | torch.Tensor:
    """Consecutive ascending indices as a slice (a view, no gather), others as a tensor."""
    first = values[0]
    if values[-1] - first == len(values) - 1 and all(v == first + i for i, v in enumerate(values)):
        return slice(first, first + len(values))
    return torch.tensor(values, dtype=torch.long, device=device)


class _Registry:
    """All intervention state of one scheduler process (SGLang builds a new processor object per batch)."""

    def __init__(self) -> None:
        self.requests: dict[str, _Tracked] = {}
        self.groups: dict[tuple[Hashable, int, str], _Group] = {}
        self.stats = _Stats()
        self.max_tracked = MAX_TRACKED_REQUESTS
        self._default: InterventionSet | None = None
        self._default_error: str | None = None
        self._tokenizer: Any = None

    # ----- helpers -----

    def warn(self, message: str, *args: Any) -> None:
        """Log each distinct message once (bounded)."""
        text = message % args if args else message
        if text in self.stats.warnings:
            return
        if len(self.stats.warnings) >= MAX_WARNINGS:
            self.stats.warnings.clear()
        self.stats.warnings.add(text)
        logger.warning("%s", text)

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
        structure = settings.structure
        key = (structure, width, str(device))
        group = self.groups.get(key)
        if group is None:
            if self._tokenizer is None:
                self._tokenizer = _load_tokenizer()
            tables = plan_for(self._tokenizer, structure).tables(width, device)
            state = InterventionState(tables, INITIAL_CAPACITY)
            group = _Group(structure, tables, state, list(range(INITIAL_CAPACITY - 1, -1, -1)))
            idle = [k for k, g in self.groups.items() if g.members == 0]
            for stale in idle[: max(0, len(idle) - MAX_IDLE_GROUPS + 1)]:
                del self.groups[stale]
            self.groups[key] = group
        return group

    def drop(self, rid: str) -> None:
        tracked = self.requests.pop(rid, None)
        if tracked is not None and tracked.group is not None:
            tracked.group.release(tracked.slot)

    # ----- per request -----

    def track(self, rid: str, proxy: Any, params: Mapping[str, Any], width: int, device: torch.device) -> _Tracked:
        """Start tracking a request: read its settings once; bad input turns its interventions off."""
        try:
            settings = request_settings(params, self.default())
            if not settings:
                tracked = _Tracked(proxy, None)
            else:
                group = self.group(settings, width, device)
                prompt_open, prompt_think = _prompt_facts(group.tables, proxy.origin_input_ids)
                tracked = _Tracked(proxy, settings, group, group.take_slot(), prompt_open, prompt_think)
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


def _prompt_facts(tables: PlanTables, prompt_ids: Sequence[int]) -> tuple[bool, int]:
    """Does the prompt end inside an open think block, and how many of its tokens follow the marker (host)."""
    if not len(prompt_ids):
        return False, 0
    opened, thinking = prompt_state(tables, torch.tensor([[int(t) for t in prompt_ids]], dtype=torch.long))
    return bool(opened[0]), int(thinking[0])


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


_REGISTRY = _Registry()


def registry_snapshot() -> dict[str, int]:
    """Counters of this process's registry (for tests and benchmarks running in the scheduler)."""
    s = _REGISTRY.stats
    return {
        "tracked": len(_REGISTRY.requests),
        "groups": len(_REGISTRY.groups),
        "calls": s.calls,
        "rows": s.rows,
        "lagging_rows": s.lagging_rows,
        "released": s.released,
        "evicted": s.evicted,
        "replays": s.replays,
    }


class ThoughtSwitchPenalty(_ProcessorBase):  # type: ignore[misc,valid-type]
    r"""Decoding-time reasoning interventions as an SGLang custom logit processor.

    Each request sends this class as `custom_logit_processor` and its settings as `custom_params`,
    the flat keys of the vLLM processor: `tip_*` (thought-switching penalty, arXiv 2501.18585),
    `nowait_*` (NoWait), `cyclic_*` (CyclicReflex), `budget_*` (thinking budget, s1 budget forcing)
    and `gated_*` (TIP gated by the thought's confidence); several combine in one request
    (docs/interventions.md). Absent keys take the server default (`TIP_DECODE_*` variables); a
    request with none of these keys and no default runs untouched. A bad value turns that request's
    interventions off and logs a warning; it never stops the server. The name is TIP's, from when it
    was the only one; `ReasoningInterventions` is the same class.

    Example:
        ```python
        >>> import requests                                                          # doctest: +SKIP
        >>> from tip_decode.sglang import generate_fields                            # doctest: +SKIP
        >>> fields = generate_fields(alpha=3.0, beta=600, budget_max=4000)           # doctest: +SKIP
        >>> body = {"text": "How many primes are below 100?", **fields}             # doctest: +SKIP
        >>> body["sampling_params"].update(max_new_tokens=4096, temperature=0.7)     # doctest: +SKIP
        >>> requests.post("http://127.0.0.1:30000/generate", json=body).json()["text"]  # doctest: +SKIP
        ```
    """

    def __call__(self, logits: torch.Tensor, custom_param_list: list[dict[str, Any]] | None = None) -> torch.Tensor:
        if not custom_param_list:
            return logits
        try:
            return _REGISTRY.apply(logits, custom_param_list)
        except _Unchanged:
            return logits
        except Exception:  # noqa: BLE001 - defensive: nothing may escape into the scheduler
            logger.exception("intervention processor failed; this step's logits are left unchanged")
            return logits

    @classmethod
    def to_str(cls) -> str:
        """The `custom_logit_processor` string for this class (same as SGLang's own `to_str`)."""
        return processor_string(cls)


# SGLang unpickles the class by its module path: point that path at the public entry module, which
# stays put when the adapters move (`tip_decode.sglang.ThoughtSwitchPenalty`).
ThoughtSwitchPenalty.__module__ = PUBLIC_MODULE

#: The family's name for the same class (pickled as `tip_decode.sglang.ThoughtSwitchPenalty`).
ReasoningInterventions = ThoughtSwitchPenalty
