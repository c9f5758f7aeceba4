"""The `vllm` backend (offline CPU engine, one start) and the `openai` backend (a real `tip-decode serve`)."""

from __future__ import annotations

import gc
import json

import pytest
from click.testing import CliRunner
from conftest import ALTERNATIVELY, build_switchy_model

from tip_decode.cli import main
from tip_decode.harness import HFBackend, Problem, SamplingSettings, parse_config_spec, read_records, run_compare

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def problems_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "problems.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {i}+1?", "answer": str(i + 1)}) + "\n" for i in range(3)))
    return path


def test_vllm_backend_end_to_end(tmp_path_factory, problems_file):
    pytest.importorskip("vllm")
    model = build_switchy_model(tmp_path_factory.mktemp("switchy-vllm"))
    out = tmp_path_factory.mktemp("vllm-run")
    args = [
        "compare",
        "--backend",
        "vllm",
        "-m",
        str(model),
        "--data",
        str(problems_file),
        "-o",
        str(out),
        "-k",
        "2",
        "--max-new-tokens",
        "5",
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "512",
        "--gpu-memory-utilization",
        "0.1",
        "-c",
        "baseline",
        "-c",
        "ban:alpha=inf,beta=600,scope=all",
        "--switch-scope",
        "all",
        "-q",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    gc.collect()  # let the engine core shut down before the next test
    assert result.exit_code == 0, result.output
    assert "| ban" in result.output
    base, ban = read_records(out / "baseline.jsonl"), read_records(out / "ban.jsonl")
    assert sorted((r["id"], r["sample"]) for r in base) == [(str(i), s) for i in range(3) for s in range(2)]
    assert all(r["versions"]["backend"] == "vllm" and r["versions"]["backend_version"] for r in base + ban)
    # TIP reached the engine per request (extra_args): baseline repeats the word, TIP bans it.
    assert all(r["token_ids"] == [ALTERNATIVELY] * 5 and len(r["switch_positions"]) == 5 for r in base)
    assert all(r["n_tokens"] == 1 and r["finish_reason"] == "stop" for r in ban)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["configs"]["baseline"]["switches_per_response"] == 5
    assert summary["configs"]["ban"]["mean_tokens"] == 1
    assert "ban" in summary["paired"]
    assert (out / "accuracy.png").exists() and (out / "thought_lengths.png").exists()


def test_openai_backend_against_tip_serve(tip_server, tiny_vllm_model_dir, problems_file, tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "run"
    args = [
        "compare",
        "--backend",
        "openai",
        "--base-url",
        tip_server.base_url,
        "-m",
        tip_server.model,
        "--tokenizer",
        str(tiny_vllm_model_dir),
        "--data",
        str(problems_file),
        "-o",
        str(out),
        "--temperature",
        "0",
        "--max-new-tokens",
        "5",
        "-c",
        "baseline",
        "-c",
        "tip:alpha=3,beta=600,scope=all",
        "-q",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output + tip_server.log_tail()
    served = {r["id"]: r for r in read_records(out / "baseline.jsonl")}
    assert len(served) == 3 and all(r["versions"]["backend"] == "openai" and r["n_tokens"] == 5 for r in served.values())
    assert all(r["tip"]["tip_alpha"] == 3.0 for r in read_records(out / "tip.jsonl"))
    # Greedy through the server equals greedy through transformers on the same prompts.
    backend = HFBackend(str(tiny_vllm_model_dir), sampling=SamplingSettings(temperature=0.0, max_new_tokens=5))
    problems = [Problem(str(i), f"What is {i}+1?", str(i + 1)) for i in range(3)]
    run_compare(problems, [parse_config_spec("baseline")], backend, tmp_path / "hf", progress=False, plots=False)
    local = {r["id"]: r for r in read_records(tmp_path / "hf" / "baseline.jsonl")}
    assert {k: r["prompt"] for k, r in local.items()} == {k: r["prompt"] for k, r in served.items()}
    assert {k: r["token_ids"] for k, r in local.items()} == {k: r["token_ids"] for k, r in served.items()}
