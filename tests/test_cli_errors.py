"""Every user mistake is one line, with exit status 2 (usage) or 1 (runtime), before any model loads.

The model folder used here has a real config.json and tokenizer but weights that are garbage: a
check made before the model loads reports the mistake; a check made after it would report "cannot
load model" instead, so the message itself shows the order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import build_tiny_qwen2

from tip_decode.cli import main


@pytest.fixture(scope="module")
def broken_model_dir(tmp_path_factory):
    path = build_tiny_qwen2(tmp_path_factory.mktemp("broken-model"))  # max_position_embeddings 4096
    for weights in path.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "p.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(3)))
    return path


def invoke(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    return result, errors


def check(result, errors, status, message):
    assert result.exit_code == status, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(errors) == 1, result.output
    assert message in errors[0], result.output
    assert "Traceback" not in result.output
    assert "cannot load model" not in errors[0]  # found before the (broken) weights were read


COMPARE_MISTAKES = [
    # (extra arguments, exit status, message)
    (["-c", "tip:beta=99999999999999999999"], 2, "beta=99999999999999999999 is too large"),
    (["-c", "tip:alpha=1e400"], 2, "below 1.8e308 or 'inf'"),
    (["-c", "tip:alpha=3,alpha=5"], 2, "sets alpha twice"),
    (["-c", "tip:"], 2, "has a colon but no settings"),
    (["-c", "x:alpha=3,,beta=2"], 2, "empty setting"),
    (["-c", "tip", "-c", "tip"], 2, "tip is given twice"),
    (["-c", "baseline:alpha=3"], 2, "takes no settings"),
    (["--device", "cuda"], 2, "CUDA is not available"),
    (["--device", "gpu"], 2, "--device has to be a torch device"),
    (["--template", "Solve this carefully."], 2, "has no {question}"),
    (["--template", "Q: {problem}"], 2, "uses {problem}"),
    (["--answer-kind", "choice"], 2, "--answer-kind choice needs --choices-field"),
    (["--max-new-tokens", "5000"], 2, "exceeds the model's context of 4096 tokens"),
    (["--tokenizer", "./no-such-tokenizer"], 2, "no such folder: './no-such-tokenizer'"),
    (["--switch-triggers", ","], 2, "--switch-triggers"),
    (["--backend", "hf", "--concurrency", "4"], 2, "--concurrency is an option of --backend openai"),
    (["--max-model-len", "64"], 2, "--max-model-len is an option of --backend vllm"),
    (["--temperature", "nan"], 2, "has to be a finite number"),
    (["--temperature", "1e400"], 2, "has to be a finite number"),
    (["--top-p", "nan"], 2, "has to be a finite number"),
    (["--samples", "1000000000"], 2, "--samples"),
    (["--seed", "-1"], 2, "--seed"),
]


@pytest.mark.parametrize(("extra", "status", "message"), COMPARE_MISTAKES, ids=[" ".join(m[0]) for m in COMPARE_MISTAKES])
def test_compare_mistakes_are_one_line_before_the_model_loads(broken_model_dir, data_file, tmp_path, extra, status, message):
    result, errors = invoke(["compare", "-m", broken_model_dir, "--data", data_file, "-o", tmp_path / "out", "-q", *extra])
    check(result, errors, status, message)


def test_more_compare_mistakes(broken_model_dir, data_file, tmp_path):
    base = ["-m", broken_model_dir, "-q"]
    # An output folder that cannot be created (its parent is a file).
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    check(*invoke(["compare", *base, "--data", data_file, "-o", blocker / "out"]), 2, "cannot write to the output folder")
    check(*invoke(["compare", *base, "--data", data_file, "-o", blocker / "deeper" / "out"]), 2, "is not a writable folder")
    # A mistake found after the folder check leaves no empty folder behind.
    check(*invoke(["compare", *base, "--data", tmp_path / "absent.jsonl", "-o", tmp_path / "never-made"]), 2, "no such file")
    assert not (tmp_path / "never-made").exists()
    # A missing model folder says so (transformers would say "Repo id must be in the form ...").
    check(*invoke(["compare", "-m", "./no-such-model", "--data", data_file, "-o", tmp_path / "o1"]), 2, "no such folder: './no-such-model'")
    check(*invoke(["compare", "-m", tmp_path / "absent", "--data", data_file, "-o", tmp_path / "o2"]), 2, "no such folder")
    # A missing data file, a named data set with file options, an unknown name.
    check(*invoke(["compare", *base, "--data", tmp_path / "absent.jsonl", "-o", tmp_path / "o3"]), 2, "no such file")
    check(*invoke(["compare", *base, "--data", "gsm8k", "--question-field", "q", "-o", tmp_path / "o4"]), 2, "--question-field is for data files")
    check(*invoke(["compare", *base, "--data", "math5000", "-o", tmp_path / "o5"]), 2, "unknown data set 'math5000'")
    # Data file contents: runtime errors (status 1) that name the line.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q1", "answer": "1", "id": "a"}\n{"question": "", "answer": "2", "id": "b"}\n')
    check(*invoke(["compare", *base, "--data", bad, "--id-field", "id", "-o", tmp_path / "o6"]), 1, "line 2: field 'question' is empty")
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"question": "q1", "answer": "1", "id": "a"}\n{"question": "q2", "answer": "2", "id": "a"}\n')
    check(*invoke(["compare", *base, "--data", dup, "--id-field", "id", "-o", tmp_path / "o7"]), 1, "line 2: duplicate problem id 'a' (also at line 1)")
    choice = tmp_path / "choice.jsonl"
    choice.write_text('{"question": "Pick", "answer": "E", "options": ["x", "y"]}\n')
    check(
        *invoke(["compare", *base, "--data", choice, "--answer-kind", "choice", "--choices-field", "options", "-o", tmp_path / "o8"]),
        1,
        "answer 'E' is neither one of the 2 options nor a letter A-B",
    )
    # grid lists.
    for alphas, message in (("nan", "has to list numbers"), ("1e400", "too large"), ("3,3", "twice"), ("3,,5", "no empty item")):
        check(*invoke(["grid", *base, "--data", data_file, "-o", tmp_path / "g", "--alphas", alphas]), 2, message)
    check(*invoke(["grid", *base, "--data", data_file, "-o", tmp_path / "g", "--betas", "99999999999"]), 2, "too large")


def test_score_and_demo_mistakes(tmp_path):
    check(*invoke(["score", tmp_path / "absent"]), 2, "no such folder")
    (tmp_path / "empty").mkdir()
    check(*invoke(["score", tmp_path / "empty"]), 2, "is not a run folder (no run.json")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    check(*invoke(["demo", "-o", blocker / "out", "-q", "-n", "2"]), 2, "cannot write to the output folder")


@pytest.fixture(scope="module")
def qwen3_dir(tokenizers_dir):
    return tokenizers_dir / "qwen3"


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_analyze_mistakes(tmp_path, qwen3_dir):
    good = {"response": "x = 1. Wait, 2.", "answer": "2"}
    # Token ids out of range (an OverflowError from the tokenizer before): named, with the line.
    path = write_lines(tmp_path / "ids.jsonl", [good, {"token_ids": [12, 2**40], "answer": "2"}])
    check(*invoke(["analyze", path, "--tokenizer", qwen3_dir]), 1, "line 2: token id 1099511627776 is outside the tokenizer's vocabulary")
    path = write_lines(tmp_path / "neg.jsonl", [{"token_ids": [5, -3], "answer": "2"}])
    check(*invoke(["analyze", path, "--tokenizer", qwen3_dir]), 1, "token id -3 is outside")
    # Token ids as strings or floats: reported on the ids field, not as a missing 'response'.
    path = write_lines(tmp_path / "str.jsonl", [{"token_ids": ["12", "13"], "answer": "2"}])
    check(*invoke(["analyze", path, "--tokenizer", qwen3_dir]), 1, "field 'token_ids' has to be a list of integer token ids, but item 0 is '12' (text)")
    path = write_lines(tmp_path / "float.jsonl", [{"token_ids": [12, 13.5], "answer": "2"}])
    check(*invoke(["analyze", path, "--tokenizer", qwen3_dir]), 1, "item 1 is 13.5 (a fraction)")
    path = write_lines(tmp_path / "good.jsonl", [good])
    check(*invoke(["analyze", path, "--tokenizer", qwen3_dir, "--thoughts"]), 2, "--thoughts adds every thought to the JSON output: use it with --json")
    check(*invoke(["analyze", path]), 2, "--tokenizer is required")
    check(*invoke(["analyze", path, "--tokenizer", "./no-such-tokenizer"]), 2, "no such folder: './no-such-tokenizer'")
    check(*invoke(["analyze", path, "--tokenizer", "missing/tokenizer.json"]), 2, "no such file: 'missing/tokenizer.json'")
    check(*invoke(["analyze", tmp_path / "absent.jsonl", "--tokenizer", qwen3_dir]), 2, "no such file or folder")
    check(*invoke(["analyze", tmp_path, "--tokenizer", qwen3_dir]), 2, "is not a run folder (no run.json)")
    check(*invoke(["analyze", path, "--tokenizer", qwen3_dir, "--plot", tmp_path / "absent" / "p.png"]), 2, "no such folder")
    check(*invoke(["analyze", path, "--tokenizer", qwen3_dir, "--plot", tmp_path / "p.txt"]), 2, "--plot")
    check(*invoke(["analyze", path, "--tokenizer", qwen3_dir, "--judge-model", "m"]), 2, "--judge-model is for --judge llm")
    check(*invoke(["analyze", path, "--tokenizer", qwen3_dir, "--config", "tip"]), 2, "--config selects configurations of a run folder")


def test_a_fifty_megabyte_line_is_refused_at_once_with_little_memory(tmp_path):
    # Before: 7.6 GB of memory and 269 s with no progress. Now: refused before it is read.
    path = tmp_path / "huge.jsonl"
    with path.open("w") as handle:
        handle.write(json.dumps({"response": "Wait, " * (50 * 2**20 // 6), "answer": "1"}) + "\n")
    # The child reports its own peak memory (kB) on its last line: VmHWM of /proc/self/status, which
    # starts afresh at exec (getrusage's ru_maxrss would carry over this test process's own peak).
    script = (
        "import sys\n"
        "from tip_decode.cli import main\n"
        "def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1])\n"
        "try:\n    main(sys.argv[1:])\n"
        "finally:\n    print('peak-kb', peak(), file=sys.stderr)\n"
    )
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script, "analyze", str(path), "--tokenizer", "unused-name"], capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - began
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "line 1: longer than 8 MiB" in errors[0]
    assert seconds < 60
    peak_kb = int(result.stderr.strip().splitlines()[-1].split()[-1])
    assert peak_kb < 1024 * 1024, peak_kb  # under 1 GB, the interpreter and its imports included


def test_serve_and_vocab_mistakes(tmp_path, qwen3_dir):
    # Checked before the engine is looked for or started: huge or overflowing values, a missing model folder.
    for args, message in (
        (["serve", qwen3_dir, "--alpha", "1e400"], "below 1.8e308 or 'inf'"),
        (["serve", qwen3_dir, "--beta", "99999999999999999999"], "--beta"),
        (["serve", "./no-such-model"], "no such folder: './no-such-model'"),
        (["serve", qwen3_dir, "--", "--tokenizer", "./no-such-tokenizer"], "no such folder: './no-such-tokenizer'"),
        (["vocab", "./no-such-tokenizer"], "no such folder"),
        # The same checks for SGLang, also before its installation is looked for.
        (["serve", qwen3_dir, "--engine", "sglang", "--alpha", "1e400"], "below 1.8e308 or 'inf'"),
        (["serve", "./no-such-model", "--engine", "sglang"], "no such folder: './no-such-model'"),
        (["serve", qwen3_dir, "--engine", "sglang", "--", "--tokenizer-path", "./no-such-tokenizer"], "no such folder: './no-such-tokenizer'"),
        (["serve", qwen3_dir, "--engine", "sglang", "--", "--model-path", qwen3_dir], "not as --model-path"),
    ):
        result = CliRunner().invoke(main, [str(a) for a in args])
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output
