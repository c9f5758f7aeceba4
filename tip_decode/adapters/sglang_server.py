"""What the SGLang server's configuration gives the custom processor: the default settings and the tokenizer.

Not request bookkeeping (that is `tip_decode.adapters.sglang_registry`): this is read from the
scheduler process's environment and SGLang's server arguments, once per registry, and only then
combined with each request's `custom_params`. A bad server default is remembered as an error, so
that every request it would reach is refused with the same message (naming the variable) instead of
the environment being parsed again per request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tip_decode.adapters.tokenizers import engine_tokenizer
from tip_decode.core.interventions import InterventionSet
from tip_decode.core.server_defaults import ENV_TOKENIZER, server_settings


def request_settings(params: Mapping[str, Any], default: InterventionSet) -> InterventionSet:
    """A request's interventions: its namespaced custom params over the server default.

    Raises:
        ValueError / TypeError: a bad value or an unknown key inside a namespace (the message names it).
    """
    return InterventionSet.from_mapping(params, default=default)


class ServerConfiguration:
    """The server default (`TIP_DECODE_*` variables) and the tokenizer, each read on first use."""

    def __init__(self) -> None:
        self._default: InterventionSet | None = None
        self._default_error: str | None = None
        self._tokenizer: Any = None

    def default(self) -> InterventionSet:
        """The server default (ValueError "server default: ..." for a bad one, every time)."""
        if self._default is None and self._default_error is None:
            try:
                self._default = server_settings()
            except ValueError as err:
                self._default_error = str(err)
        if self._default_error is not None:
            raise ValueError(f"server default: {self._default_error}")
        assert self._default is not None
        return self._default

    def tokenizer(self) -> Any:
        """The tokenizer to build plans with (loaded once per process, `adapters.tokenizers`)."""
        if self._tokenizer is None:
            path, trust, revision = _server_tokenizer_path()
            self._tokenizer = engine_tokenizer(path, revision, trust)
        return self._tokenizer


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
