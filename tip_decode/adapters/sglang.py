"""SGLang adapter: `ThoughtSwitchPenalty`, a custom logit processor, and the client-side request fields.

SGLang runs a custom logit processor inside its scheduler process: a request names the processor
class (`custom_logit_processor`, a pickled class reference) and carries its own parameters
(`custom_params`); the server must run with `--enable-custom-logit-processor`. Each call gets the
logits rows of the requests that use the class, and one params dict per row to which SGLang adds
`__req__`, a weak proxy of the scheduler's `Req` (`rid`, `origin_input_ids`, `output_ids`).

How the processor follows requests (see docs/sglang.md):
- **State per request, in the scheduler process.** SGLang builds a new processor object for every
  new batch, so the state lives in one module-level registry keyed by `rid` (checked against the
  identity of the `__req__` proxy, so that a reused rid never inherits another request's state).
  Each request has a row in a `PenaltyState` of its (trigger list, scope) group, advanced by the
  tokens appended to `output_ids` since the last step: O(1) per step, whatever the history length.
- **Released when the request goes.** A request whose `Req` was freed (its weak proxy is dead) or
  that reports `finished()` is dropped by a sweep every `SWEEP_EVERY` calls; at most
  `MAX_TRACKED_REQUESTS` requests are tracked (the least recently seen beyond that are dropped and,
  should they come back, rebuilt once from their output).
- **The overlap scheduler.** With SGLang's default overlap scheduler the processor runs before the
  previous step's token is appended to `output_ids`, so by default it sees the output one token
  late; `SGLANG_ENABLE_DELAY_SAMPLE=1` (set by `tip-decode serve --engine sglang`) or
  `--disable-overlap-schedule` hand it the current output. The processor penalises from the tokens
  it can see: exact when the output is current, otherwise the penalty of the previous step (and it
  logs a warning once).
- **It never raises.** A processor that raised would stop the scheduler and the server with it.
  Bad request parameters turn TIP off for that request with a logged warning (clients validate
  before sending with `custom_params` / `generate_fields` / `openai_fields`); an unexpected error
  leaves the logits of that call unchanged and drops the affected states, to be rebuilt next step.

This module imports SGLang only if it is installed: the client helpers and the class reference work
without it (the processor class then derives from `object`, and its pickled reference is the same).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from tip_decode.core.config import TIPConfig, parse_alpha, parse_beta, parse_scope, parse_triggers
from tip_decode.core.recognizer import prompt_ends_in_open_think
from tip_decode.core.state import PenaltyState, PenaltyTables
from tip_decode.core.vocabulary import SwitchVocabulary

try:  # the server side; clients need not have SGLang installed
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor as _ProcessorBase
except ImportError:  # pragma: no cover - exercised in the client-only test environment
    _ProcessorBase = object  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

#: The public import path SGLang unpickles the processor class from (kept stable across refactors).
PUBLIC_MODULE = "tip_decode.sglang"
#: Environment variables read in the scheduler process (server-wide defaults; same names as vLLM's).
ENV_ALPHA, ENV_BETA, ENV_TRIGGERS, ENV_SCOPE = "TIP_DECODE_ALPHA", "TIP_DECODE_BETA", "TIP_DECODE_TRIGGERS", "TIP_DECODE_SCOPE"
#: Tokenizer the processor builds switch vocabularies with (default: the server's tokenizer path).
ENV_TOKENIZER = "TIP_DECODE_TOKENIZER"
#: Requests tracked at once; beyond this the least recently seen are dropped (and rebuilt on return).
MAX_TRACKED_REQUESTS = 16384
#: Calls between two sweeps for finished or freed requests.
SWEEP_EVERY = 64
#: Idle (trigger list, scope) groups kept for reuse, as in the vLLM adapter.
MAX_IDLE_GROUPS = 16
#: Distinct warning messages remembered (each is logged once); the set is cleared past this.
MAX_WARNINGS = 256
#: Rows a group's state starts with; it doubles when full.
INITIAL_CAPACITY = 64
#: Pickle protocol of `CustomLogitProcessor.to_str()` (dill's default: 4).
PICKLE_PROTOCOL = 4


# ----------------------------------------------------------------------------- configuration


def server_default(environ: Mapping[str, str] | None = None) -> TIPConfig:
    """The server-wide default from `TIP_DECODE_*` variables (TIP off when alpha is unset).

    The same variables, with the same meaning, as the vLLM adapter's server defaults.

    Raises:
        ValueError: a variable holds a bad value; the message names the variable.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    parsers = ((ENV_ALPHA, "alpha", parse_alpha), (ENV_BETA, "beta", parse_beta), (ENV_TRIGGERS, "triggers", parse_triggers), (ENV_SCOPE, "scope", parse_scope))
    for name, field_name, parser in parsers:
        raw = env.get(name)
        if raw is not None and raw.strip() != "":
            values[field_name] = parser(raw.strip(), name)
    return replace(TIPConfig.off(), **values)


def request_config(params: Mapping[str, Any], default: TIPConfig) -> TIPConfig:
    """A request's configuration: its `tip_*` custom params over the server default.

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


def custom_params(config: TIPConfig | Mapping[str, Any] | None = None, *, tokenizer: Any = None, **settings: Any) -> dict[str, Any]:
    """The request's `custom_params`: validated, JSON-safe `tip_*` keys.

    Args:
        config: a `TIPConfig` (sent whole), a mapping of `tip_*` keys (only those given are sent, so
            the others take the server default; keys not starting with `tip_` pass through
            unchanged), or None.
        tokenizer: optional; checks that the triggers yield tokens and that scope "think" has
            think markers, as the server would.
        **settings: `alpha`, `beta`, `triggers`, `scope` (instead of `config`).

    Raises:
        ValueError: a bad value, named by its key, before anything is sent.

    Example:
        >>> custom_params(alpha=3, beta=600)
        {'tip_alpha': 3.0, 'tip_beta': 600}
        >>> custom_params(TIPConfig.off())
        {'tip_alpha': 0}
    """
    if config is not None and settings:
        raise TypeError("pass either a configuration or keyword settings, not both")
    if isinstance(config, TIPConfig):
        full = config
        params: dict[str, Any] = config.to_mapping() if config.enabled else {"tip_alpha": 0}
    else:
        if config is None:
            unknown = set(settings) - {"alpha", "beta", "triggers", "scope"}
            if unknown:
                raise TypeError(f"unknown setting(s) {', '.join(sorted(unknown))} (known: alpha, beta, triggers, scope)")
            mapping: Mapping[str, Any] = {f"tip_{k}": v for k, v in settings.items()}
        elif isinstance(config, Mapping):
            mapping = config
        else:
            raise TypeError(f"expected a TIPConfig or a mapping of tip_* keys, got {type(config).__name__}")
        # Validation: the same parser the processor uses; a paper default fills absent keys so that
        # a trigger or scope check below has something to check.
        full = TIPConfig.from_mapping(mapping, default=TIPConfig())
        params = {}
        for key, value in mapping.items():
            if not (isinstance(key, str) and key.startswith("tip_")):
                if key == "__req__":
                    raise ValueError("`__req__` is set by SGLang; do not send it")
                params[key] = value
        parsed = full.to_mapping()
        for key in mapping:
            if isinstance(key, str) and key.startswith("tip_"):
                params[key] = parsed[key]
    if tokenizer is not None and full.enabled:
        _vocabulary(tokenizer, full.triggers, full.scope)
    return params


def generate_fields(config: TIPConfig | Mapping[str, Any] | None = None, *, tokenizer: Any = None, **settings: Any) -> dict[str, Any]:
    """Fields to merge into a native `/generate` request (or `Engine.generate` keyword arguments).

    `custom_params` belongs inside `sampling_params`; merge with your own sampling parameters:
    `{"text": ..., **fields, "sampling_params": {**fields["sampling_params"], "max_new_tokens": 512}}`.
    """
    return {"custom_logit_processor": processor_string(), "sampling_params": {"custom_params": custom_params(config, tokenizer=tokenizer, **settings)}}


def openai_fields(config: TIPConfig | Mapping[str, Any] | None = None, *, tokenizer: Any = None, **settings: Any) -> dict[str, Any]:
    """Top-level fields for `/v1/completions` and `/v1/chat/completions` (the OpenAI client's `extra_body`)."""
    return {"custom_logit_processor": processor_string(), "custom_params": custom_params(config, tokenizer=tokenizer, **settings)}


# ----------------------------------------------------------------------------- server side


_TOKENIZERS: dict[str, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def _server_tokenizer_path() -> tuple[str, bool, str | None]:
    """(path, trust_remote_code, revision) of the tokenizer to build vocabularies with."""
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
        raise ValueError(f"no tokenizer to build the switch vocabulary with; set {ENV_TOKENIZER}")
    return path, trust, revision


def _load_tokenizer() -> Any:
    path, trust, revision = _server_tokenizer_path()
    with _TOKENIZER_LOCK:
        if path not in _TOKENIZERS:
            from transformers import AutoTokenizer

            _TOKENIZERS[path] = AutoTokenizer.from_pretrained(path, trust_remote_code=trust, revision=revision)
        return _TOKENIZERS[path]


def _vocabulary(tokenizer: Any, triggers: tuple[str, ...], scope: str) -> tuple[SwitchVocabulary, str]:
    """The vocabulary and resolved scope; errors name the request key that caused them."""
    try:
        vocab = SwitchVocabulary.from_tokenizer(tokenizer, triggers)
    except ValueError as err:
        raise ValueError(f"`tip_triggers`: {err}") from None
    try:
        resolved = vocab.resolve_scope(scope)
    except ValueError as err:
        raise ValueError(f"`tip_scope`: {err}") from None
    return vocab, resolved


@dataclass
class _Group:
    """Tables and state of one (triggers, scope) pair; one state row ("slot") per tracked request."""

    tables: PenaltyTables
    state: PenaltyState
    free: list[int]
    members: int = 0

    def take_slot(self) -> int:
        if not self.free:
            old = self.state
            grown = PenaltyState(self.tables, old.capacity * 2)
            grown.ints[: old.capacity] = old.ints
            grown.alpha[: old.capacity] = old.alpha
            self.state = grown
            self.free = list(range(grown.capacity - 1, old.capacity - 1, -1))
        self.members += 1
        return self.free.pop()

    def release(self, slot: int) -> None:
        self.members -= 1
        self.free.append(slot)


@dataclass
class _Tracked:
    """One request: its proxy (identity check), its configuration and where its state lives."""

    proxy: Any
    config: TIPConfig | None  # None: TIP off for this request
    group: _Group | None = None
    slot: int = -1
    prompt_open: bool = False
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


class _Registry:
    """All TIP state of one scheduler process (SGLang builds a new processor object per batch)."""

    def __init__(self) -> None:
        self.requests: dict[str, _Tracked] = {}
        self.groups: dict[tuple[tuple[str, ...], str, int, str], _Group] = {}
        self.stats = _Stats()
        self.max_tracked = MAX_TRACKED_REQUESTS
        self._default: TIPConfig | None = None
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

    def default(self) -> TIPConfig:
        if self._default is None and self._default_error is None:
            try:
                self._default = server_default()
            except ValueError as err:
                self._default_error = str(err)
        if self._default_error is not None:
            raise ValueError(f"server default: {self._default_error}")
        assert self._default is not None
        return self._default

    def group(self, config: TIPConfig, width: int, device: torch.device) -> _Group:
        key = (config.triggers, config.scope, width, str(device))
        group = self.groups.get(key)
        if group is None:
            if self._tokenizer is None:
                self._tokenizer = _load_tokenizer()
            vocab, scope = _vocabulary(self._tokenizer, config.triggers, config.scope)
            tables = PenaltyTables(vocab, scope, width, device)
            group = _Group(tables, PenaltyState(tables, INITIAL_CAPACITY), list(range(INITIAL_CAPACITY - 1, -1, -1)))
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
        """Start tracking a request: parse its parameters once; bad input turns TIP off for it."""
        try:
            config = request_config(params, self.default())
            if not config.enabled:
                tracked = _Tracked(proxy, None)
            else:
                group = self.group(config, width, device)
                think = group.tables.vocabulary.think
                prompt_open = group.tables.scope == "think" and prompt_ends_in_open_think(list(proxy.origin_input_ids), think)
                tracked = _Tracked(proxy, config, group, group.take_slot(), prompt_open)
                group.state.start_rows(
                    torch.tensor([tracked.slot], device=device),
                    alpha=torch.tensor([config.alpha]),
                    beta=torch.tensor([config.beta]),
                    prompt_open=torch.tensor([prompt_open]),
                )
        except (ValueError, TypeError) as err:
            self.warn("TIP is off for a request whose custom_params could not be used: %s", err)
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
        # group id -> (logits rows, slots, newest token or None when several or none are new)
        work: dict[int, tuple[_Group, list[int], list[int]]] = {}
        catch_up: list[tuple[_Tracked, list[int]]] = []
        steps: dict[int, list[tuple[int, int]]] = {}  # group id -> [(slot, token)] of the one-token rows
        touched: list[str] = []
        try:
            for row, params in enumerate(params_list):
                tracked = self._row(row, params, width, device, call, touched)
                if tracked is None or tracked.group is None:
                    continue
                output = tracked.proxy.output_ids
                count = len(output)
                if count == tracked.seen + 1:
                    steps.setdefault(id(tracked.group), []).append((tracked.slot, int(output[-1])))
                    tracked.seen = count
                elif count != tracked.seen:
                    # Several new tokens (the first step after tracking began mid-request) or fewer
                    # (SGLang discarded output on retraction): rebuild from the output, once.
                    catch_up.append((tracked, [int(t) for t in output]))
                group_rows = work.setdefault(id(tracked.group), (tracked.group, [], []))
                group_rows[1].append(row)
                group_rows[2].append(tracked.slot)
            for tracked, output in catch_up:
                assert tracked.group is not None and tracked.config is not None
                tracked.group.state.replay_row(tracked.slot, tracked.config.alpha, tracked.config.beta, tracked.prompt_open, output)
                tracked.seen = len(output)
                stats.replays += 1
            for key, pairs in steps.items():
                group = work[key][0]
                slots = torch.tensor([s for s, _ in pairs], dtype=torch.long, device=device)
                tokens = torch.tensor([t for _, t in pairs], dtype=torch.long, device=device)
                group.state.update(tokens, slots)
            # Every amount first, then the writes: a failure above leaves the logits untouched.
            writes = []
            for group, rows, slots in work.values():
                columns = group.tables.columns
                if not columns.numel():
                    continue
                row_t = torch.tensor(rows, dtype=torch.long, device=device)
                amount = group.state.penalty(torch.tensor(slots, dtype=torch.long, device=device)).to(logits.dtype)
                writes.append(((row_t[:, None], columns[None, :]), amount))
            for index, amount in writes:
                logits[index] = logits[index] - amount
        except Exception as err:  # noqa: BLE001 - never take the scheduler down
            logger.exception("TIP processor failed; this step's logits are left unchanged and its requests' state is rebuilt")
            self.warn("TIP processor error: %r", err)
            for rid in touched:
                self.drop(rid)
            raise _Unchanged() from None
        if call % SWEEP_EVERY == 0 or len(self.requests) > self.max_tracked:
            self.sweep(call)
        return logits

    def _row(self, row: int, params: Any, width: int, device: torch.device, call: int, touched: list[str]) -> _Tracked | None:
        if not isinstance(params, Mapping) or "__req__" not in params:
            self.warn(
                "TIP is off for a request without a custom_params dict (got %s); SGLang hands the "
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
            self._note_lag(proxy, tracked)
        return tracked

    def _note_lag(self, proxy: Any, tracked: _Tracked) -> None:
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
                "SGLang's overlap scheduler hands the TIP processor each request's output one token late, "
                "so the penalty of step t is the one computed for step t-1. Start the server with "
                "SGLANG_ENABLE_DELAY_SAMPLE=1 (tip-decode serve --engine sglang does) or "
                "--disable-overlap-schedule for the exact penalty."
            )


class _Unchanged(Exception):
    """Internal: the call failed and the caller returns the logits it was given."""


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
    r"""Thought-switching penalty (TIP) as an SGLang custom logit processor.

    Subtracts `tip_alpha` from the logits of thought-switching tokens ("Alternatively", ...) while
    the current thought is younger than `tip_beta` tokens (Wang et al., arXiv 2501.18585). Each
    request sends this class as `custom_logit_processor` and its settings as `custom_params`:
    `tip_alpha`, `tip_beta`, `tip_triggers`, `tip_scope` (the keys and checks of the vLLM
    processor); absent keys take the server default from `TIP_DECODE_ALPHA` / `_BETA` /
    `_TRIGGERS` / `_SCOPE` (TIP off when `TIP_DECODE_ALPHA` is unset). A bad value turns TIP off
    for that request and logs a warning; it never stops the server.

    Example:
        ```python
        >>> import requests                                                          # doctest: +SKIP
        >>> from tip_decode.sglang import generate_fields                            # doctest: +SKIP
        >>> fields = generate_fields(alpha=3.0, beta=600)                            # doctest: +SKIP
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
            logger.exception("TIP processor failed; this step's logits are left unchanged")
            return logits

    @classmethod
    def to_str(cls) -> str:
        """The `custom_logit_processor` string for this class (same as SGLang's own `to_str`)."""
        return processor_string(cls)


# SGLang unpickles the class by its module path: point that path at the public entry module, which
# stays put when the adapters move (`tip_decode.sglang.ThoughtSwitchPenalty`).
ThoughtSwitchPenalty.__module__ = PUBLIC_MODULE
