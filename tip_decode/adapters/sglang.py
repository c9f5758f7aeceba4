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
import pickle
from collections.abc import Mapping
from typing import Any

import torch

from tip_decode.adapters.sglang_registry import (  # noqa: F401 - the server side's names, kept importable from here
    MAX_TRACKED_REQUESTS,
    SWEEP_EVERY,
    _Registry,
    _Unchanged,
)
from tip_decode.adapters.sglang_server import request_settings
from tip_decode.core.config import TIPConfig
from tip_decode.core.interventions import InterventionSet, interventions, namespace_of, plan_for, request_mapping
from tip_decode.core.interventions.slots import INITIAL_CAPACITY  # noqa: F401 - kept importable from here
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
#: Pickle protocol of `CustomLogitProcessor.to_str()` (dill's default: 4).
PICKLE_PROTOCOL = 4
#: The old keyword settings of the client helpers: TIP's, without the `tip_` prefix.
TIP_SHORTHAND = {"alpha": "tip_alpha", "beta": "tip_beta", "triggers": "tip_triggers", "scope": "tip_scope"}


# ----------------------------------------------------------------------------- configuration


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
