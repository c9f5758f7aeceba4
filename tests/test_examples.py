"""Every example runs from a clone as its docstring says: on the demo model that ships with the
package, or (the server clients) with one line and exit status 1 when no server is up.

Where each example runs against its real counterpart: `EXAMPLES` names the test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT

from tip_decode.demo import MODEL_DIR

#: Every example, and the tests that run it for real.
EXAMPLES = {
    "analysis_trace.py": "tests/test_analysis_examples.py (with and without an argument)",
    "demo_trace.py": "tests/test_demo_example.py and here",
    "hf_quickstart.py": "tests/test_examples_hf.py",
    "harness_compare.py": "here, and tests/test_harness_hf.py (from Python)",
    "vllm_client.py": "tests/test_vllm_server.py (a real vLLM server); here without one",
    "analysis_live_vllm.py": "tests/test_analysis_examples.py (a real vLLM server); here without one",
    "sglang_client.py": "tests/test_sglang_server.py (a real SGLang server); here without one",
}


def test_every_example_is_run_by_a_test():
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(EXAMPLES)


def run(name, *args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("TIP_DECODE_TOKENIZERS", "TIP_DECODE_DATA")}
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("name", "args", "says"),
    [
        (
            "vllm_client.py",
            ["--model", "m", "--base-url", "http://127.0.0.1:{port}/v1"],
            "error: no server answers at http://127.0.0.1:{port}/v1: start one first",
        ),
        (
            "analysis_live_vllm.py",
            ["--model", "m", "--tokenizer", "t", "--base-url", "http://127.0.0.1:{port}/v1"],
            "error: no server answers at http://127.0.0.1:{port}/v1",
        ),
        ("sglang_client.py", ["--url", "http://127.0.0.1:{port}"], "error: no server answers at http://127.0.0.1:{port}"),
    ],
)
def test_client_examples_without_a_server_say_so_in_one_line(name, args, says):
    port = free_port()
    result = run(name, *[a.format(port=port) for a in args])
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(says.format(port=port)), result.stderr[-2000:]


def test_demo_trace_with_its_defaults_shows_a_difference(tmp_path):
    """With no argument it used to show problem 0, where baseline and TIP were the same response."""
    result = run("demo_trace.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("problem ") and "the first held-out problem where baseline and TIP differ" in lines[0]
    blocks = result.stdout.split("\n--- ")[1:]
    assert len(blocks) == 2 and blocks[0].split("\n", 1)[1] != blocks[1].split("\n", 1)[1]
    assert "switches" in blocks[0] and not blocks[0].startswith("baseline: 0 switches")


def test_harness_compare_runs_on_the_demo_model_as_documented(tmp_path):
    result = run("harness_compare.py", MODEL_DIR, tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| baseline" in result.stdout and "| tip" in result.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["configs"]["tip"]["n"] == 6 and summary["partial"] is False
    usage = run("harness_compare.py")
    assert usage.returncode == 1 and "python examples/harness_compare.py MODEL_DIR OUT_DIR" in usage.stderr
