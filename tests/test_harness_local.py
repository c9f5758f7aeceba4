"""`tip-decode compare --backend mlx` and `--backend llama-cpp`: complete runs on real engines.

The mlx backend runs the shipped demo model folder, the llama-cpp backend the tiny GGUF built by
llama.cpp's converter (tests/local_engines.py). Each run must write every record with the harness's
seeds, a summary, and score again from its folder; sampling with the same seed repeats itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import local_engines
import pytest

pytestmark = pytest.mark.slow

from tip_decode.demo import MODEL_DIR  # noqa: E402
from tip_decode.demo.task import make_problems  # noqa: E402
from tip_decode.harness import sample_seed  # noqa: E402

CONFIGS = ["-c", "baseline", "-c", "tip:alpha=3,beta=20", "-c", "nowait", "-c", "budget:max=12"]


def tip_decode(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "import sys; from tip_decode.cli import main; sys.argv[0] = 'tip-decode'; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def check_run(out: Path, problems: int, samples: int, backend: str) -> list[dict]:
    run = json.loads((out / "run.json").read_text())
    assert run["backend"] == backend and run["backend_version"]
    records = []
    for name in ("baseline", "tip", "nowait", "budget"):
        rows = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        assert len(rows) == problems * samples, name
        for row in rows:
            assert row["seed"] == sample_seed(0, row["id"], row["sample"]), row["seed"]
            assert row["token_ids"] and row["finish_reason"] in ("stop", "length")
        records += rows
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["configs"]) == {"baseline", "tip", "nowait", "budget"}
    return records


def test_mlx_backend_complete_run(tmp_path):
    local_engines.require("mlx_lm", "TIP_DECODE_REQUIRE_MLX", "pip install mlx-lm")
    data = tmp_path / "demo.jsonl"
    data.write_text("".join(json.dumps({"question": p.prompt_text(), "answer": str(p.answer)}) + "\n" for p in make_problems(3, seed=5)))
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        done = tip_decode(
            "compare",
            "--backend",
            "mlx",
            "-m",
            str(MODEL_DIR),
            "--data",
            str(data),
            "--answer-kind",
            "number",
            "--template",
            "{question}",
            *CONFIGS,
            "-o",
            str(out),
            "--max-new-tokens",
            "60",
            "-k",
            "2",
            "--quiet",
            "--no-plots",
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outs.append(check_run(out, 3, 2, "mlx"))
    assert [r["token_ids"] for r in outs[0]] == [r["token_ids"] for r in outs[1]]  # same seeds, same samples
    budget = [r for r in outs[0] if r["config"] == "budget"]
    assert all("</think>" in r["response"] for r in budget)  # the budget's maximum closes every think block
    done = tip_decode("score", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr[-2000:]


def test_llama_cpp_backend_complete_run(tmp_path_factory, qwen3_tokenizer, data_dir, tmp_path):
    local_engines.require("llama_cpp", "TIP_DECODE_REQUIRE_LLAMA_CPP", 'pip install "tip-decode[llama-cpp]"')
    gguf = local_engines.tiny_gguf(tmp_path_factory, qwen3_tokenizer)
    out = tmp_path / "run"
    done = tip_decode(
        "compare",
        "--backend",
        "llama-cpp",
        "-m",
        str(gguf),
        "--data",
        str(data_dir / "math500.jsonl"),
        "--question-field",
        "problem",
        "--limit",
        "2",
        *CONFIGS,
        "-o",
        str(out),
        "--max-new-tokens",
        "20",
        "-k",
        "2",
        "--quiet",
        "--no-plots",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = check_run(out, 2, 2, "llama-cpp")
    assert records[0]["prompt"].startswith("<|im_start|>user\n")  # the chat template from the GGUF file
    done = tip_decode("score", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    done = tip_decode("vocab", str(gguf), "--triggers", "alternatively", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["think_markers"]["end"]["id"] == 151668
    bad = tmp_path / "x.gguf"
    bad.write_text("not gguf")
    done = tip_decode("vocab", str(bad))
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "is not a GGUF file" in done.stderr
