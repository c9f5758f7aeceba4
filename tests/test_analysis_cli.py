"""`tip-decode analyze`: the JSON output contract, tables, the plot, and bad input naming the line."""

from __future__ import annotations

import inspect
import json

import pytest
from click.testing import CliRunner

from tip_decode.cli import main

# click >= 8.2 keeps stderr out of result.stdout (and in result.output); click 8.1, the supported
# floor, mixes it into stdout unless told not to (an argument 8.2 no longer takes).
STDERR_APART = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}

CONTRACT_RESPONSE = {"id", "n_tokens", "n_thoughts", "switch_positions", "premature", "abandoned_on_track", "first_correct_thought", "correct", "ut"}
CONTRACT_AGGREGATE = {"n", "switches_per_response", "mean_tokens_between_switches", "premature_switches", "ut", "weighted_ut"}

RECORDS = [
    # Incorrect, with a correct thought abandoned (R1-style: the prompt opened <think>).
    {"id": "a", "problem_id": "p1", "response": "2x = 6, so the answer is 6.\n\nWait, x+1? Then 4.</think>\n\\boxed{4}", "answer": "6"},
    {"id": "b", "problem_id": "p1", "response": "2x = 6.</think>\nThe answer is \\boxed{6}.", "answer": "6"},
    {"id": "c", "problem_id": "p2", "response": "Perhaps 9.\n\nAlternatively 8.</think>\\boxed{8}", "answer": 2},
]


@pytest.fixture(scope="module")
def qwen3_dir(tokenizers_dir):
    return str(tokenizers_dir / "qwen3")


def run(args, json_stdout=False):
    """`json_stdout`: the test parses result.stdout as JSON, so stderr must stay out of it."""
    result = CliRunner(**(STDERR_APART if json_stdout else {})).invoke(main, args, catch_exceptions=False)
    return result


def write(tmp_path, lines, name="r.jsonl"):
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_json_contract_and_plot(tmp_path, qwen3_dir):
    path = write(tmp_path, RECORDS)
    plot = tmp_path / "lengths.png"
    result = run(
        ["analyze", str(path), "--tokenizer", qwen3_dir, "--triggers", "alternatively,wait", "--premature-threshold", "8", "--json", "--plot", str(plot)],
        json_stdout=True,
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"responses", "aggregate"}
    assert [r["id"] for r in out["responses"]] == ["a", "b", "c"]
    for r in out["responses"]:
        assert CONTRACT_RESPONSE <= set(r)
    assert CONTRACT_AGGREGATE <= set(out["aggregate"])
    a, b, c = out["responses"]
    assert (a["correct"], b["correct"], c["correct"]) == (False, True, False)
    assert a["n_thoughts"] == 2 and len(a["switch_positions"]) == 1 and a["first_correct_thought"] == 0
    assert a["abandoned_on_track"] == 1 and 0 < a["ut"] < 1
    assert b["ut"] is None and c["ut"] == 0.0 and c["first_correct_thought"] is None
    agg = out["aggregate"]
    assert agg["n"] == 3 and agg["switches_per_response"] == pytest.approx(2 / 3)
    assert agg["ut"] == pytest.approx(a["ut"] / 2)
    assert agg["weighted_ut"] == pytest.approx((a["ut"] / 2 + 0.0) / 2)  # grouped by problem_id
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tables_and_field_options(tmp_path, qwen3_dir):
    renamed = [{"text": r["response"], "gold": r["answer"]} for r in RECORDS]
    path = write(tmp_path, renamed)
    result = run(["analyze", str(path), "--tokenizer", qwen3_dir, "--response-field", "text", "--answer-field", "gold", "--triggers", "alternatively,wait"])
    assert result.exit_code == 0, result.output
    assert "weighted_ut" in result.stdout and "switches_per_response" in result.stdout
    assert "on-track abandoned" in result.stdout


@pytest.mark.parametrize(
    "lines, message",
    [
        ([RECORDS[0], "{not json"], "line 2: not valid JSON"),
        ([RECORDS[0], {"answer": "1"}], "line 2: missing field 'response'"),
        ([{"response": "x", "id": 1}], "line 1: missing field 'answer'"),
        ([RECORDS[0], {"response": "  ", "answer": "1"}], "line 2: empty response"),
        ([RECORDS[0], {"response": 5, "answer": "1"}], "line 2: field 'response' has to be text"),
        (["[1, 2]"], "line 1: expected a JSON object"),
        ([], "no responses"),
    ],
)
def test_bad_input_names_the_line(tmp_path, qwen3_dir, lines, message):
    path = write(tmp_path, lines)
    result = run(["analyze", str(path), "--tokenizer", qwen3_dir])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_binary_file_and_llm_judge_without_model(tmp_path, qwen3_dir):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\xff\xfe\x00binary")
    result = run(["analyze", str(path), "--tokenizer", qwen3_dir])
    assert result.exit_code == 1 and "line 1: not UTF-8 text" in result.output
    good = write(tmp_path, RECORDS, "good.jsonl")
    result = run(["analyze", str(good), "--tokenizer", qwen3_dir, "--judge", "llm"])
    assert result.exit_code == 2 and "--judge-model" in result.output


def test_harness_records(tmp_path, qwen3_dir):
    """Records as the comparison harness writes them: token_ids, reference, answer_kind, prompt_open, correct."""
    from tip_decode import SwitchVocabulary
    from tip_decode.analysis import analyze_response
    from tip_decode.cli.common import load_tokenizer

    tok = load_tokenizer(qwen3_dir)
    text = "So 2x = 6, the answer is 6.\n\nWait, then 7.</think>\n\\boxed{7}"
    ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
    records = [
        {"id": "p1", "sample": 0, "response": text, "token_ids": ids, "reference": "6", "answer_kind": "number", "prompt_open": True, "correct": False},
        {"id": "p1", "sample": 1, "response": text, "token_ids": ids, "reference": "7", "answer_kind": "number", "prompt_open": True, "correct": True},
    ]
    path = write(tmp_path, records)
    result = run(["analyze", str(path), "--tokenizer", qwen3_dir, "--triggers", "wait", "--json"], json_stdout=True)
    assert result.exit_code == 0, result.output
    first, second = json.loads(result.stdout)["responses"]
    assert first["n_tokens"] == len(ids)  # the ids were used, eos included, not the re-tokenised text
    vocab = SwitchVocabulary.from_tokenizer(tok, ["wait"])
    expected = analyze_response(ids, vocabulary=vocab, tokenizer=tok, reference="6", answer_kind="number", prompt_open=True, correct=False)
    assert first["switch_positions"] == expected.switch_positions and len(expected.switch_positions) == 1
    assert first["correct"] is False and first["first_correct_thought"] == 0 and first["ut"] == pytest.approx(expected.ut)
    assert second["correct"] is True and second["ut"] is None
    assert json.loads(result.stdout)["aggregate"]["weighted_ut"] == pytest.approx(expected.ut / 2)
