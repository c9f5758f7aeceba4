"""Problems, data sets, prompts, configurations and the crash-safe record files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tip_decode.core.config import TIPConfig
from tip_decode.harness import (
    DATASETS,
    Problem,
    RecordWriter,
    RunConfig,
    chat_prompt_builder,
    load_file,
    load_problems,
    parse_config_spec,
    read_records,
    sample_seed,
    shuffle_choices,
    user_message,
)
from tip_decode.harness.problems import _gpqa_row, _gsm8k_row, _math_hard_row, _math_row


def test_math500_file_through_the_file_path(data_dir):
    problems = load_file(data_dir / "math500.jsonl", question_field="problem", answer_field="answer", id_field="unique_id")
    assert len(problems) == 500
    assert problems[0].id == "test/precalculus/807.json"
    assert problems[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert load_problems(str(data_dir / "math500.jsonl"), limit=7, question_field="problem")[6].id == "6"


def test_gsm8k_file_reduces_worked_answers_to_the_number(data_dir):
    problems = load_file(data_dir / "gsm8k_test.jsonl", answer_kind="number", limit=3)
    assert [p.answer for p in problems] == ["18", "3", "70000"]
    assert problems[0].answer_kind == "number" and problems[0].id == "0"


def test_missing_field_and_bad_files_are_named(data_dir, tmp_path):
    with pytest.raises(ValueError, match="no field 'question'.*problem"):
        load_file(data_dir / "math500.jsonl")
    with pytest.raises(ValueError, match="no such file"):
        load_file(tmp_path / "absent.jsonl")
    (tmp_path / "x.txt").write_text("q")
    with pytest.raises(ValueError, match="unknown data set"):
        load_problems(str(tmp_path / "x.txt"))
    with pytest.raises(ValueError, match="unknown data set 'math5000'"):
        load_problems("math5000")


def test_csv_and_json_with_choices(tmp_path):
    (tmp_path / "p.csv").write_text("q,a\nWhat is 2+2?,4\nHalf of 3?,1.5\n")
    assert [p.answer for p in load_file(tmp_path / "p.csv", "q", "a", answer_kind="number")] == ["4", "1.5"]
    rows = {"data": [{"question": "Pick", "answer": "blue", "options": ["red", "blue", "green"]}]}
    (tmp_path / "p.json").write_text(json.dumps(rows))
    [problem] = load_file(tmp_path / "p.json", answer_kind="choice", choices_field="options")
    assert problem.answer == "B" and problem.choices == ("red", "blue", "green")
    assert "B) blue" in user_message(problem)


def test_named_rows_convert():
    # The Hub is unreachable here: the converters are checked on rows shaped like the Hub's.
    assert set(DATASETS) == {"math500", "math500-hard", "aime24", "aime25", "gpqa-diamond", "gsm8k"}
    row = {"problem": "p", "answer": "5", "level": 3, "unique_id": "test/x.json"}
    assert _math_row(row, 0) == Problem("test/x.json", "p", "5")
    assert _math_hard_row(row, 0) is None and _math_hard_row({**row, "level": 5}, 0) is not None
    assert _gsm8k_row({"question": "q", "answer": "so\n#### 1,200"}, 4) == Problem("4", "q", "1200", "number")
    gpqa = {"Record ID": "rec1", "Question": " Q? ", "Correct Answer": "right", **{f"Incorrect Answer {i}": f"w{i}" for i in (1, 2, 3)}}
    problem = _gpqa_row(gpqa, 0)
    assert problem.answer_kind == "choice" and problem.choices[ord(problem.answer) - ord("A")] == "right"
    assert _gpqa_row(gpqa, 0) == problem  # the shuffle is seeded


def test_gpqa_shuffle_is_fixed_and_varies_between_problems():
    orders = {shuffle_choices("c", ["w1", "w2", "w3"], key=str(i))[1] for i in range(40)}
    assert orders == {"A", "B", "C", "D"}
    assert shuffle_choices("c", ["w1", "w2", "w3"], key="k") == shuffle_choices("c", ["w1", "w2", "w3"], key="k")


def test_unreachable_hub_is_one_clear_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    script = "from tip_decode.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", script, "compare", "--data", "gsm8k", "-m", "unused", "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "cannot load data set 'gsm8k' (openai/gsm8k)" in error_lines[0]


def test_problem_validation():
    with pytest.raises(ValueError, match="answer_kind"):
        Problem("1", "q", "a", answer_kind="essay")
    with pytest.raises(TypeError, match="`answer`"):
        Problem("1", "q", 5)
    with pytest.raises(ValueError, match="`id`"):
        Problem("", "q", "a")


def test_parse_config_spec():
    assert parse_config_spec("baseline") == RunConfig("baseline", None)
    assert parse_config_spec("tip") == RunConfig("tip", TIPConfig())
    spec = parse_config_spec("wait:alpha=inf,beta=300,triggers=wait+hmm,scope=all")
    assert spec.name == "wait" and spec.tip == TIPConfig(alpha="inf", beta=300, triggers=("wait", "hmm"), scope="all")
    assert parse_config_spec("off:alpha=0").is_baseline
    assert RunConfig.from_dict(spec.to_dict()) == spec
    for bad, message in [("tip:alpha=-1", "alpha"), ("tip:gamma=2", "gamma"), ("fast", "is not an intervention"), ("a/b:alpha=1", "name")]:
        with pytest.raises(ValueError, match=message):
            parse_config_spec(bad)


def test_prompt_through_the_real_chat_template(qwen3_tokenizer):
    build = chat_prompt_builder(qwen3_tokenizer, system="Be brief.")
    text = build(Problem("1", "What is 1+1?", "2"))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "What is 1+1?\n\nPlease reason step by step, and put your final answer within \\boxed{}." in text
    assert text.endswith("<|im_start|>assistant\n")
    custom = chat_prompt_builder(qwen3_tokenizer, template="Q: {question} A:")(Problem("1", "x", "2"))
    assert "Q: x A:" in custom
    with pytest.raises(ValueError, match="template"):
        chat_prompt_builder(qwen3_tokenizer, template="{oops}")(Problem("1", "x", "2"))


def test_sample_seed_is_stable_and_distinct():
    assert sample_seed(0, "p1", 0) == sample_seed(0, "p1", 0)
    seeds = {sample_seed(0, f"p{i}", s) for i in range(50) for s in range(8)}
    assert len(seeds) == 400
    assert sample_seed(1, "p1", 0) != sample_seed(0, "p1", 0)


def test_record_writer_drops_a_torn_line_and_appends_whole_lines(tmp_path):
    path = tmp_path / "baseline.jsonl"
    with RecordWriter(path) as writer:
        writer.write({"id": "a", "sample": 0})
        writer.write({"id": "b", "sample": 0})
    with path.open("ab") as handle:
        handle.write(b'{"id": "c", "sam')  # a write cut short by a kill
    assert [r["id"] for r in read_records(path)] == ["a", "b"]
    with RecordWriter(path) as writer:
        writer.write({"id": "c", "sample": 0})
    assert path.read_bytes().count(b"\n") == 3
    assert [r["id"] for r in read_records(path)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("extra", "message", "status"),
    [
        (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"], "Error: cannot reach the server at http://127.0.0.1:9/v1", 1),
        (["--backend", "hf", "-m", "/nonexistent/model-dir"], "Error: no such folder: '/nonexistent/model-dir'", 2),
        (["--backend", "hf", "-m", "./missing-model"], "Error: no such folder: './missing-model'", 2),
        (["--backend", "hf", "-c", "tip:alpha=-1"], "Error: configuration 'tip:alpha=-1': tip.alpha has to be", 2),
        (["--backend", "hf", "--question-field", "prompt"], "Error: ", 1),
    ],
)
def test_user_errors_are_one_line(tmp_path, extra, message, status):
    from click.testing import CliRunner

    from tip_decode.cli import main

    data = tmp_path / "p.jsonl"
    data.write_text('{"question": "q", "answer": "1"}\n')
    args = ["compare", "--data", str(data), "-o", str(tmp_path / "out"), "-m", "unused", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == status, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and errors[0].startswith(message), result.output
