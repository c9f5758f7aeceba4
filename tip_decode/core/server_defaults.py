"""Server-wide intervention defaults, read from environment variables by every serving adapter.

A server (vLLM's, SGLang's) runs its processor in a process of its own, so `tip-decode serve` hands
the defaults over in the environment, the same variables for both engines:

- `TIP_DECODE_ALPHA`, `TIP_DECODE_BETA`, `TIP_DECODE_TRIGGERS`, `TIP_DECODE_SCOPE`: TIP (off while
  `TIP_DECODE_ALPHA` is unset);
- `TIP_DECODE_INTERVENTIONS`: a JSON object of flat keys for the others (`{"nowait": 1}`);
- `TIP_DECODE_TOKENIZER`: the tokenizer that vocabulary-dependent settings are checked with.

A request's own keys override the default per intervention. This module imports no engine, so both
adapters (and the CLI) share it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tip_decode.core.config import TIPConfig, parse_alpha, parse_beta, parse_scope, parse_triggers
from tip_decode.core.interventions import InterventionSet

ENV_ALPHA, ENV_BETA, ENV_TRIGGERS, ENV_SCOPE = "TIP_DECODE_ALPHA", "TIP_DECODE_BETA", "TIP_DECODE_TRIGGERS", "TIP_DECODE_SCOPE"
ENV_INTERVENTIONS = "TIP_DECODE_INTERVENTIONS"
ENV_TOKENIZER = "TIP_DECODE_TOKENIZER"

__all__ = [
    "ENV_ALPHA",
    "ENV_BETA",
    "ENV_INTERVENTIONS",
    "ENV_SCOPE",
    "ENV_TOKENIZER",
    "ENV_TRIGGERS",
    "server_default",
    "server_environment",
    "server_settings",
]


def server_default(environ: Mapping[str, str] | None = None) -> TIPConfig:
    """The server-wide TIP default from `TIP_DECODE_*` variables (TIP off when alpha is unset).

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


def server_settings(environ: Mapping[str, str] | None = None) -> InterventionSet:
    """Every intervention's server-wide default: TIP from its variables, the rest from `TIP_DECODE_INTERVENTIONS`.

    Raises:
        ValueError: a variable holds a bad value; the message names the variable.
    """
    env = os.environ if environ is None else environ
    base = InterventionSet(tip=server_default(env))
    raw = env.get(ENV_INTERVENTIONS, "").strip()
    if not raw:
        return base
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{ENV_INTERVENTIONS} has to be a JSON object of flat keys, but is {raw!r} ({err})") from None
    if not isinstance(mapping, dict):
        raise ValueError(f"{ENV_INTERVENTIONS} has to be a JSON object of flat keys, but is {raw!r}")
    try:
        return InterventionSet.from_mapping(mapping, default=base)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{ENV_INTERVENTIONS}: {err}") from None


def server_environment(settings: InterventionSet, tokenizer: str | None = None) -> dict[str, str]:
    """The variables that make `settings` the server default (what `server_settings` reads back).

    TIP goes into its own variables (alpha 0 when off), every other intervention into
    `TIP_DECODE_INTERVENTIONS` (an empty string when none is on), and `tokenizer`, when given, into
    `TIP_DECODE_TOKENIZER`.

    Example:
        >>> from tip_decode.core.interventions import InterventionSet
        >>> settings = InterventionSet.from_mapping({"tip_alpha": 3, "nowait": 1})
        >>> server_settings(server_environment(settings)) == settings
        True
    """
    tip = settings.tip if settings.tip is not None and settings.tip.enabled else TIPConfig.off()
    env = {
        ENV_ALPHA: str(tip.to_mapping()["tip_alpha"]),
        ENV_BETA: str(tip.beta),
        ENV_TRIGGERS: ",".join(tip.triggers),
        ENV_SCOPE: tip.scope,
    }
    others = {key: value for key, value in settings.to_mapping().items() if not key.startswith("tip_")}
    env[ENV_INTERVENTIONS] = json.dumps(others) if others else ""
    if tokenizer is not None:
        env[ENV_TOKENIZER] = tokenizer
    return env
