"""End to end through the `hf` backend on tiny random-weight models built here.

`switchy_model_dir` is a tiny Qwen2 whose every token embedding is the same vector, so its final
hidden state is one fixed vector H whatever the context; its output layer then gets a large logit
for " Alternatively" and a smaller one for end-of-text. Without TIP it says " Alternatively" at
every step (a switch per token); with alpha=inf the word is banned and it ends at once. That
makes the effect of TIP, the switch counts and the token counts exact, not statistical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ALTERNATIVELY

from tip_decode.cli import main
from tip_decode.core.config import TIPConfig
from tip_decode.harness import HFBackend, Problem, SamplingSettings, parse_config_spec, read_records, run_compare, run_grid

SUMMARY_KEYS = {"n", "pass@1", "pass@k", "mean_tokens", "switches_per_response", "mean_tokens_between_switches", "ut", "weighted_ut"}
RECORD_KEYS = {"id", "sample", "config", "seed", "prompt", "response", "n_tokens", "pred", "correct", "switch_positions", "versions"}


@pytest.fixture(scope="module")
def problems_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "problems.jsonl"
    rows = [{"q": f"What is {i} plus {i}?", "a": str(2 * i), "pid": f"p{i}"} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_compare_end_to_end(switchy_model_dir, problems_file, tmp_path):
    out = tmp_path / "run"
    args = [
        "compare",
        "-m",
        str(switchy_model_dir),
        "--data",
        str(problems_file),
        "--question-field",
        "q",
        "--answer-field",
        "a",
        "--id-field",
        "pid",
        "-o",
        str(out),
        "-k",
        "2",
        "--max-new-tokens",
        "6",
        "-c",
        "baseline",
        "-c",
        "ban:alpha=inf,beta=600,scope=all",
        "--switch-scope",
        "all",
        "-q",
    ]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    assert "| baseline" in result.output and "| ban" in result.output  # the table on the terminal

    base, ban = read_records(out / "baseline.jsonl"), read_records(out / "ban.jsonl")
    assert sorted((r["id"], r["sample"]) for r in base) == [(f"p{i}", s) for i in range(3) for s in range(2)]
    for record in base + ban:
        assert RECORD_KEYS <= set(record)
        assert record["versions"]["backend"] == "hf" and record["versions"]["model"] == str(switchy_model_dir)
        assert record["n_tokens"] == len(record["token_ids"])
    # Baseline: " Alternatively" at every step, every token a switch. TIP (alpha=inf): banned, so eos.
    assert all(r["token_ids"] == [ALTERNATIVELY] * 6 and r["switch_positions"] == list(range(6)) for r in base)
    assert all(r["finish_reason"] == "length" for r in base)
    assert all(r["n_tokens"] == 1 and r["finish_reason"] == "stop" and r["switch_positions"] == [] for r in ban)
    assert all(r["pred"] is None and r["correct"] is False for r in base + ban)
    # Same seeds across configurations: the paired design.
    assert {(r["id"], r["sample"]): r["seed"] for r in base} == {(r["id"], r["sample"]): r["seed"] for r in ban}

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["configs"]) == {"baseline", "ban"}
    for metrics in summary["configs"].values():
        assert SUMMARY_KEYS <= set(metrics)
        assert set(metrics["pass@1"]) == {"mean", "ci95", "ci_method"}
        # Every sample of both configurations is wrong: the bootstrap has nothing to resample, so the
        # interval is Wilson's over the 3 problems ([0, 0.56]), never a zero-width [0, 0].
        assert metrics["pass@1"]["ci_method"] == "wilson-equal" and metrics["pass@1"]["ci95"][1] > 0.5
    assert summary["configs"]["baseline"]["switches_per_response"] == 6
    assert summary["configs"]["baseline"]["mean_tokens"] == 6
    assert summary["configs"]["ban"]["switches_per_response"] == 0
    assert summary["configs"]["ban"]["mean_tokens"] == 1
    assert summary["configs"]["baseline"]["pass@k"] == {"1": 0.0, "2": 0.0}
    # Every problem has the same difference (0): no interval can be estimated, and it says so.
    assert summary["paired"] == {"ban": {"delta_pass@1": 0.0, "ci95": [None, None], "ci_method": "undefined-equal", "n_problems": 3, "baseline": "baseline"}}
    assert summary["configs"]["baseline"]["truncated"] == 1.0 and summary["configs"]["ban"]["truncated"] == 0.0
    md = (out / "summary.md").read_text()
    assert "| ban" in md and "0.000 [n/a]" in md and "every problem has the same difference" in md
    assert "| 100.0%" in md  # the truncated share of the baseline
    for name in ("accuracy.png", "switches.png", "thought_lengths.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Rerunning the same command generates nothing and duplicates nothing.
    before = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    assert _cli(*args).exit_code == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == before

    # score: regrade from the saved responses after the references changed.
    for path in out.glob("*.jsonl"):
        records = read_records(path)
        for record in records:
            record["reference"] = "Alternatively Alternatively"
            record["answer_kind"] = "math"
            record["response"] = "so \\boxed{7}" if record["sample"] == 0 else record["response"]
            record["reference"] = "7"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    scored = _cli("score", str(out), "--no-plots")
    assert scored.exit_code == 0, scored.output
    rescored = json.loads((out / "summary.json").read_text())
    assert rescored["configs"]["baseline"]["pass@1"]["mean"] == 0.5
    assert rescored["configs"]["baseline"]["pass@k"]["2"] == 1.0
    assert all(r["pred"] == ("7" if r["sample"] == 0 else None) for r in read_records(out / "ban.jsonl"))


def test_grid_writes_heatmaps_and_best_cell(switchy_model_dir, tmp_path):
    backend = HFBackend(str(switchy_model_dir), sampling=SamplingSettings(temperature=0.0, max_new_tokens=3))
    problems = [Problem("a", "Say something.", "1")]
    summary, grid = run_grid(
        problems,
        backend,
        tmp_path,
        alphas=[3, float("inf")],
        betas=[1, 600],
        base=TIPConfig(scope="all"),
        switch_scope="all",
        progress=False,
    )
    assert set(summary["configs"]) == {"baseline", "a3_b1", "a3_b600", "ainf_b1", "ainf_b600"}
    # alpha 3 cannot close a logit gap of 15; alpha=inf bans the word at step 0 (0 < psi + beta), so eos.
    assert grid["switches_per_response"] == [[3, 3], [0, 0]]
    assert summary["configs"]["baseline"]["switches_per_response"] == 3
    # Every cell ties at Pass@1 0: no cell is named best, and the reason says so.
    assert grid["best"] is None and "every cell has the same Pass@1" in grid["best_reason"]
    assert grid["highest"]["config"] == "a3_b1"
    for name in ("heatmap_pass1.png", "heatmap_switches.png", "grid.json"):
        assert (tmp_path / name).exists()
    assert json.loads((tmp_path / "grid.json").read_text())["best"] is None


def test_samples_do_not_depend_on_batching(tiny_qwen2_dir, tmp_path):
    # Temperature 1 on a random model is near-uniform over 150k tokens: any seed mix-up shows.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    problems = [Problem(f"q{i}", "x" * (1 + 5 * i), "0") for i in range(3)]
    sampling = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=5)
    ids = {}
    for batch in (1, 3):
        backend = HFBackend(model, tokenizer=str(tiny_qwen2_dir), sampling=sampling, batch_size=batch)
        run_compare(problems, [parse_config_spec("baseline")], backend, tmp_path / str(batch), samples=2, progress=False, plots=False)
        ids[batch] = {(r["id"], r["sample"]): r["token_ids"] for r in read_records(tmp_path / str(batch) / "baseline.jsonl")}
    assert ids[1] == ids[3]
    assert len({tuple(v) for v in ids[1].values()}) == 6  # six different samples


def test_kill_and_resume_with_a_real_signal(switchy_model_dir, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"question": f"Q{i}", "answer": "1"}) + "\n" for i in range(8)))
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-c",
        "from tip_decode.cli import main; main()",
        "compare",
        "-m",
        str(switchy_model_dir),
        "--data",
        str(data),
        "-o",
        str(out),
        "--batch-size",
        "1",
        "--max-new-tokens",
        "4",
        "-q",
        "--no-plots",
        "-c",
        "baseline",
        "-c",
        "tip:alpha=inf,beta=600,scope=all",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        written = 0
        while time.monotonic() < deadline and process.poll() is None:
            written = sum(p.read_bytes().count(b"\n") for p in out.glob("*.jsonl")) if out.exists() else 0
            if written >= 3:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    kept = {p.name: read_records(p) for p in out.glob("*.jsonl")}
    assert 3 <= sum(len(v) for v in kept.values()) < 16
    # Also simulate a kill in the middle of a write: a torn last line.
    with (out / "baseline.jsonl").open("ab") as handle:
        handle.write(b'{"id": "7", "sample": 0, "config": "base')

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for name in ("baseline.jsonl", "tip.jsonl"):
        records = read_records(out / name)
        keys = [(r["id"], r["sample"]) for r in records]
        assert sorted(keys) == sorted((str(i), 0) for i in range(8))  # complete, no duplicates
        assert records[: len(kept.get(name, []))] == kept.get(name, [])  # what was written is kept
        assert (out / name).read_bytes().endswith(b"\n")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["configs"]["baseline"]["n"] == 8 and summary["configs"]["tip"]["n"] == 8


def test_example_harness_compare_runs(tiny_qwen2_dir, tmp_path, capsys):
    import runpy

    example = Path(__file__).resolve().parents[1] / "examples" / "harness_compare.py"
    namespace = runpy.run_path(str(example))
    summary = namespace["main"](str(tiny_qwen2_dir), str(tmp_path / "out"), max_new_tokens=8)
    assert set(summary["configs"]) == {"baseline", "tip"} and summary["configs"]["tip"]["n"] == 6
    assert "| tip" in capsys.readouterr().out
    kinds = {r["id"]: r["answer_kind"] for r in read_records(tmp_path / "out" / "tip.jsonl")}
    assert kinds == {"add": "number", "frac": "math", "pick": "choice"}
