"""The analysis examples run as users run them (subprocesses), and print what they claim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_hf_tokenizer

from tip_decode import SwitchVocabulary
from tip_decode.analysis import analyze_response

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, *args, timeout=300):
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_analysis_trace_example(tokenizers_dir):
    out = run_example("analysis_trace.py", str(tokenizers_dir / "qwen3"))
    assert "switch at 26 (wait): ends a 26-token thought ['abandoned on track']" in out
    assert "switch at 34 (alternatively): ends a 8-token thought ['premature']" in out
    assert "UT = 1 - 26/65 = 0.6000" in out


def test_analysis_trace_example_runs_from_a_clone_with_no_argument():
    """With no tokenizer it uses the Qwen3 copy the repository ships (no sibling folder, no network)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TIP_DECODE_TOKENIZERS", "TIP_DECODE_DATA")}
    result = subprocess.run([sys.executable, str(EXAMPLES / "analysis_trace.py")], capture_output=True, text=True, timeout=300, env=env, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "UT = 1 - 26/65 = 0.6000" in result.stdout


def test_analysis_trace_example_refuses_a_tokenizer_that_cannot_read_the_trace():
    """The demo model's tokenizer knows only its synthetic task's words: one line, not `UT = 1 - None/39`."""
    from tip_decode.demo import MODEL_DIR

    result = subprocess.run([sys.executable, str(EXAMPLES / "analysis_trace.py"), str(MODEL_DIR)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not know 38 of the trace's 39 tokens" in lines[0], result.stderr


@pytest.mark.vllm
def test_live_vllm_example_prints_the_offline_switches(tip_server, tiny_vllm_model_dir):
    pytest.importorskip("vllm")
    out = run_example(
        "analysis_live_vllm.py",
        "--base-url",
        tip_server.base_url,
        "--model",
        tip_server.model,
        "--tokenizer",
        str(tiny_vllm_model_dir),
        "--max-tokens",
        "48",
        "--premature-threshold",
        "5",
        "--bias",
        "30",
        "--temperature",
        "1.0",
        "--summary",
    )
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert len(summary["token_ids"]) == 48
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer("qwen3"), ["alternatively", "wait"])
    offline = analyze_response(summary["token_ids"], vocabulary=vocab, scope="all", premature_threshold=5)
    assert summary["switch_positions"] == offline.switch_positions and offline.switches
    printed = [line for line in lines if line.startswith("switch at token")]
    assert len(printed) == len(offline.switches)
    assert printed[0].startswith(f"switch at token {offline.switches[0].position} ")
