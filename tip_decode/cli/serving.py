"""What both `tip-decode serve` engines share: the server's environment, its checks, running it.

`serve.py` (vLLM) and `serve_sglang.py` (SGLang) both import from here, so that neither imports the
other's module back (`serve` picks the engine and calls `serve_sglang`).
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import click

from tip_decode.cli.common import UsageFailure, user_errors
from tip_decode.core.config import TIPConfig


def server_env(config: TIPConfig, tokenizer: str, base: dict[str, str] | None = None, interventions: Any = None) -> dict[str, str]:
    """The environment the processor reads its server defaults (and the tokenizer to validate with) from.

    TIP's `config` and `interventions` (the other interventions' server-wide defaults, an
    `InterventionSet` without TIP, or None) become `TIP_DECODE_INTERVENTIONS`, written by
    `server_environment`; default variables inherited from `base` are dropped (only what this
    command line asks for).
    """
    from tip_decode.core.interventions import InterventionSet
    from tip_decode.core.server_defaults import DEFAULT_VARIABLES, server_environment

    settings = (interventions or InterventionSet()).replace(tip=config)
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in DEFAULT_VARIABLES}
    env.update(server_environment(settings, tokenizer))
    return env


def check_server_inputs(model: str, tokenizer: str, interventions: Any) -> None:
    """What can be wrong before a server starts, now rather than after its start-up: a missing
    local folder, and what only the vocabulary can tell of the interventions (a keyword with no
    token, a budget without think markers)."""
    from tip_decode.core.interventions import plan_for
    from tip_decode.harness.backends import load_hf_tokenizer
    from tip_decode.harness.configs import spec_terms
    from tip_decode.harness.preflight import resolve_source

    with user_errors():
        resolve_source(model, "model")
        resolve_source(tokenizer, "tokenizer")
    if not interventions:
        return
    with user_errors():
        loaded = load_hf_tokenizer(tokenizer)
    try:
        plan_for(loaded, interventions)
    except ValueError as err:
        raise UsageFailure(f"--interventions: {spec_terms(str(err))}") from None


def _check_server_env(env: dict[str, str]) -> None:
    """Read the environment back as the processor will, so a value it would refuse fails here."""
    from tip_decode.core.server_defaults import server_settings

    try:
        server_settings(env)
    except ValueError as err:
        raise UsageFailure(str(err)) from None


def run_in_foreground(command: list[str], env: dict[str, str], engine: str) -> None:
    """Run a server until it exits, passing Ctrl-C / SIGTERM on to it; a failure exit is one line."""
    try:
        process = subprocess.Popen(command, env=env)
    except OSError as err:
        raise click.ClickException(f"cannot start the {engine} server: {err}") from None

    def forward(signum: int, _frame: Any) -> None:
        # The server shuts its engine down cleanly on SIGINT/SIGTERM; pass the signal on and wait.
        if process.poll() is None:
            process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise click.ClickException(f"the {engine} server exited with status {code}")


def option_value(args: tuple[str, ...], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
