"""Without a network, a Hub name fails in seconds with one line, or is read from the cache.

It used to take 30-67 s of printed retries before the error. Each command runs as a user runs it (a
subprocess) against an endpoint that refuses connections or one that accepts and never answers,
with a Hub cache of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

CLI = [sys.executable, "-c", "import sys; from tip_decode.cli import main; main(sys.argv[1:])"]
#: Far below the 30-67 s of retries this replaces; the rest is Python importing transformers.
LIMIT_S = 30


def run_offline(args, tmp_path, endpoint="http://127.0.0.1:9", offline=False, timeout_s="2"):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=endpoint, TIP_DECODE_HUB_TIMEOUT=timeout_s)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    start = time.monotonic()
    result = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    return result, time.monotonic() - start


def one_error(result):
    assert "Traceback" not in result.stderr and "Retrying" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["vocab", "someone/missing-model"], "tokenizer 'someone/missing-model'"),
        (["analyze", "r.jsonl", "--tokenizer", "someone/missing-model"], "tokenizer 'someone/missing-model'"),
        (["compare", "-m", "someone/missing-model", "--data", "p.jsonl", "-o", "out"], "model 'someone/missing-model'"),
    ],
)
def test_an_unreachable_hub_fails_in_seconds_with_one_line(tmp_path, args, named):
    (tmp_path / "p.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    (tmp_path / "r.jsonl").write_text('{"response": "x", "answer": "1"}\n')
    result, seconds = run_offline(args, tmp_path)
    assert result.returncode == 1
    line = one_error(result)
    assert "cannot reach the Hugging Face Hub (http://127.0.0.1:9) within 2 s to download " + named in line
    assert "pass a local folder that holds it" in line and "HF_HUB_OFFLINE=1" in line
    assert seconds < LIMIT_S
    assert not (tmp_path / "out").exists()


def test_a_named_data_set_without_the_hub(tmp_path, tiny_qwen2_dir):
    result, seconds = run_offline(["compare", "-m", tiny_qwen2_dir, "--data", "gsm8k", "-o", "out"], tmp_path)
    assert result.returncode == 1 and seconds < LIMIT_S
    line = one_error(result)
    assert "cannot load data set 'gsm8k' (openai/gsm8k): cannot reach the Hugging Face Hub" in line
    assert "pass a local .jsonl/.json/.csv file instead" in line


def test_a_hub_that_never_answers_is_given_up_after_the_timeout(tmp_path):
    """A host that accepts the connection and then says nothing (a dead proxy): the probe stops waiting."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        result, seconds = run_offline(["vocab", "someone/missing-model"], tmp_path, endpoint=f"http://127.0.0.1:{port}", timeout_s="1")
    assert result.returncode == 1 and seconds < LIMIT_S
    assert "cannot reach the Hugging Face Hub" in one_error(result)


def test_offline_mode_and_nothing_cached_names_hf_hub_offline(tmp_path):
    result, seconds = run_offline(["vocab", "someone/missing-model"], tmp_path, offline=True)
    assert result.returncode == 1 and seconds < LIMIT_S
    line = one_error(result)
    assert "tokenizer 'someone/missing-model' is not in the local cache" in line and "HF_HUB_OFFLINE is set" in line


def cache_model(hf_home, name, folder):
    """Put `folder` into a Hub cache as the snapshot of `name`, the way huggingface_hub lays it out."""
    repo = hf_home / "hub" / f"models--{name.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_what_is_cached_is_used_when_the_hub_cannot_be_reached(tmp_path, tiny_qwen2_dir):
    cache_model(tmp_path / "hf", "someone/tiny", tiny_qwen2_dir)
    result, seconds = run_offline(["vocab", "someone/tiny", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cannot be reached: using the cached tokenizer 'someone/tiny' (offline mode, HF_HUB_OFFLINE=1)" in result.stderr
    assert '"tokenizer": "someone/tiny"' in result.stdout and seconds < LIMIT_S
    (tmp_path / "p.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    result, _ = run_offline(["compare", "-m", "someone/tiny", "--data", "p.jsonl", "-o", "out", "--max-new-tokens", "3", "-q", "--no-plots"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "baseline.jsonl").read_text().count("\n") == 1
