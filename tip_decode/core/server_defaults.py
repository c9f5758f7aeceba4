"""Server-wide intervention defaults, read from environment variables by every serving adapter.

A server (vLLM's, SGLang's) runs its processor in a process of its own, so `tip-decode serve` hands
the defaults over in the environment, the same variables for both engines:

- `TIP_DECODE_INTERVENTIONS`: the server default, a JSON object of flat keys (`{"tip_alpha": 3,
  "nowait": 1}`), the language of requests (`InterventionSet.from_mapping`); what `tip-decode serve`
  writes (`server_environment`);
- `TIP_DECODE_TOKENIZER`: the tokenizer that vocabulary-dependent settings are checked with;
- the older `TIP_DECODE_ALPHA`, `TIP_DECODE_BETA`, `TIP_DECODE_TRIGGERS`, `TIP_DECODE_SCOPE`: TIP
  alone, still read (`legacy_tip_default`, the one place) for servers started by hand with them;
  keys in `TIP_DECODE_INTERVENTIONS` take precedence.

A request's own keys override the default per intervention. This module imports no engine (and no
torch), so both adapters and the CLI share it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from tip_decode.core.config import TIPConfig, parse_alpha, parse_beta, parse_scope, parse_triggers
from tip_decode.core.interventions.settings import InterventionSet, request_mapping

ENV_ALPHA, ENV_BETA, ENV_TRIGGERS, ENV_SCOPE = "TIP_DECODE_ALPHA", "TIP_DECODE_BETA", "TIP_DECODE_TRIGGERS", "TIP_DECODE_SCOPE"
ENV_INTERVENTIONS = "TIP_DECODE_INTERVENTIONS"
ENV_TOKENIZER = "TIP_DECODE_TOKENIZER"
#: The variables that only `legacy_tip_default` reads.
LEGACY_VARIABLES = (ENV_ALPHA, ENV_BETA, ENV_TRIGGERS, ENV_SCOPE)
#: Every variable that sets a server default (what `tip-decode serve` replaces in the server's environment).
DEFAULT_VARIABLES = (ENV_INTERVENTIONS, *LEGACY_VARIABLES)

__all__ = [
    "DEFAULT_VARIABLES",
    "ENV_ALPHA",
    "ENV_BETA",
    "ENV_INTERVENTIONS",
    "ENV_SCOPE",
    "ENV_TOKENIZER",
    "ENV_TRIGGERS",
    "LEGACY_VARIABLES",
    "legacy_tip_default",
    "server_default",
    "server_environment",
    "server_settings",
]


def legacy_tip_default(environ: Mapping[str, str] | None = None) -> TIPConfig:
    """TIP's server default from the older `TIP_DECODE_ALPHA` / `_BETA` / `_TRIGGERS` / `_SCOPE`
    variables (TIP off while alpha is unset). The one function that reads them.

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
    return TIPConfig(**{"alpha": 0.0, **values})


def server_settings(environ: Mapping[str, str] | None = None) -> InterventionSet:
    """Every intervention's server-wide default: `TIP_DECODE_INTERVENTIONS` over the older TIP variables.

    Raises:
        ValueError: a variable holds a bad value; the message names the variable.
    """
    env = os.environ if environ is None else environ
    base = InterventionSet(tip=legacy_tip_default(env))
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


def server_default(environ: Mapping[str, str] | None = None) -> TIPConfig:
    """TIP's server-wide default alone (TIP off when none is set).

    Raises:
        ValueError: a variable holds a bad value; the message names the variable.
    """
    tip = server_settings(environ).tip
    return tip if tip is not None else TIPConfig.off()


def server_environment(settings: InterventionSet, tokenizer: str | None = None) -> dict[str, str]:
    """The variables that make `settings` the server default (what `server_settings` reads back).

    `TIP_DECODE_INTERVENTIONS` holds every intervention explicitly (those off as off, so that an
    older variable left in the environment cannot turn one on), and `tokenizer`, when given, goes
    into `TIP_DECODE_TOKENIZER`. A server's environment should drop `DEFAULT_VARIABLES` first.

    Example:
        >>> from tip_decode.core.interventions import InterventionSet
        >>> settings = InterventionSet.from_mapping({"tip_alpha": 3, "nowait": 1})
        >>> server_settings(server_environment(settings)) == settings
        True
    """
    env = {ENV_INTERVENTIONS: json.dumps(request_mapping(settings))}
    if tokenizer is not None:
        env[ENV_TOKENIZER] = tokenizer
    return env
