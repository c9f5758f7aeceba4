"""`tip-decode serve --engine sglang`: SGLang's server with custom logit processors enabled.

SGLang has no server-side registration of a processor: each request names it. The server only has
to allow custom processors (`--enable-custom-logit-processor`), be able to import tip_decode (it runs
in this interpreter), and hand the processor the current output under the overlap scheduler
(`SGLANG_ENABLE_DELAY_SAMPLE=1`, see docs/sglang.md).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any

import click

from tip_decode.cli.common import UsageFailure
from tip_decode.cli.serving import _check_server_env, check_server_inputs, option_value, run_in_foreground, server_env
from tip_decode.core.config import TIPConfig

#: Set for the server unless the caller set it or the overlap scheduler is off: with it, SGLang
#: samples a step only after the previous step's tokens reached the requests' output lists.
DELAY_SAMPLE = "SGLANG_ENABLE_DELAY_SAMPLE"


def sglang_server_command(model: str, host: str, port: int, sglang_args: tuple[str, ...]) -> list[str]:
    """The server's argv, run with this interpreter so that the server imports this tip_decode."""
    return [
        sys.executable,
        "-m",
        "sglang.launch_server",
        "--model-path",
        model,
        "--host",
        host,
        "--port",
        str(port),
        "--enable-custom-logit-processor",
        *sglang_args,
    ]


def sglang_server_env(
    config: TIPConfig, tokenizer: str, sglang_args: tuple[str, ...], base: dict[str, str] | None = None, interventions: Any = None
) -> dict[str, str]:
    """The server defaults (as for vLLM) plus delayed sampling under the overlap scheduler."""
    env = server_env(config, tokenizer, base, interventions=interventions)
    if "--disable-overlap-schedule" not in sglang_args and DELAY_SAMPLE not in env:
        env[DELAY_SAMPLE] = "1"
    return env


def sglang_example_call(base_url: str, model: str, config: TIPConfig) -> str:
    settings: dict[str, Any] = {"alpha": config.to_mapping()["tip_alpha"] if config.enabled else 3.0, "beta": config.beta or 600}
    args = ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items())
    return (
        "from openai import OpenAI\n"
        "from tip_decode.sglang import openai_fields\n"
        f'client = OpenAI(base_url="{base_url}", api_key="EMPTY")\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{model}",\n'
        '    messages=[{"role": "user", "content": "How many primes are below 100?"}],\n'
        f"    extra_body=openai_fields({args}),  # openai_fields(alpha=0) turns TIP off; openai_fields() takes the server default\n"
        ")\n"
        "print(reply.choices[0].message.content)"
    )


def serve_sglang(model: str, config: TIPConfig, host: str, port: int, sglang_args: tuple[str, ...], interventions: Any = None) -> None:
    """Start the SGLang server in the foreground and pass Ctrl-C / SIGTERM on to it."""
    if "--model-path" in sglang_args or any(a.startswith("--model-path=") for a in sglang_args):
        raise UsageFailure("pass the model as MODEL, not as --model-path")
    tokenizer = option_value(sglang_args, "--tokenizer-path") or model
    check_server_inputs(model, tokenizer, interventions)
    env = sglang_server_env(config, tokenizer, sglang_args, interventions=interventions)
    _check_server_env(env)
    if importlib.util.find_spec("sglang") is None:
        raise click.ClickException("SGLang is not installed in this environment: pip install sglang (CPU-only machines: see docs/sglang.md)")
    command = sglang_server_command(model, host, port, sglang_args)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base_url = f"http://{shown_host}:{port}"
    served = option_value(sglang_args, "--served-model-name") or model
    state = f"alpha={config.to_mapping()['tip_alpha']} beta={config.beta} triggers={','.join(config.triggers)} scope={config.scope}"
    click.echo(f"Starting SGLang with the TIP processor enabled (server default: {state if config.enabled else 'TIP off'}) at {base_url}", err=True)
    click.echo("Requests opt in by naming the processor; example client call:\n" + sglang_example_call(base_url + "/v1", served, config), err=True)
    run_in_foreground(command, env, "SGLang")
