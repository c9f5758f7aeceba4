"""`tip-decode serve`: the command it builds, and a real server queried with the `openai` client.

The server is the session fixture `tip_server` (tests/vllm_fixtures.py): `tip-decode serve` of the
tiny Qwen2 on a loopback port with TIP off by default, stopped at the end of the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tip_decode.cli import main
from tip_decode.cli.serve import server_command, server_env
from tip_decode.core.config import TIPConfig

ROOT = Path(__file__).resolve().parents[1]


def test_server_command_uses_python_m_and_registers_the_processor():
    argv = server_command("org/model", "127.0.0.1", 8123, ("--max-model-len", "512"))
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--logits-processors") + 1] == "tip_decode.vllm:ThoughtSwitchPenalty"
    assert argv[argv.index("--model") + 1] == "org/model"
    assert argv[-2:] == ["--max-model-len", "512"]
    env = server_env(TIPConfig(alpha="inf", beta=50, triggers=("wait", "hmm"), scope="all"), "org/model", base={})
    assert set(env) == {"TIP_DECODE_INTERVENTIONS", "TIP_DECODE_TOKENIZER"} and env["TIP_DECODE_TOKENIZER"] == "org/model"
    assert json.loads(env["TIP_DECODE_INTERVENTIONS"]) == {
        "tip_alpha": "inf", "tip_beta": 50, "tip_triggers": ["wait", "hmm"], "tip_scope": "all", "nowait": 0, "cyclic": 0, "gated": 0, "budget": 0,
        "affirm": 0, "alphaone": 0, "inject": 0, "nothinking": 0,
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
