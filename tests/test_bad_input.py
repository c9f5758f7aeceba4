"""Bad input from the issue-18 review: each is one line with the right exit status, or the right result.

(Run folders, score, grid zeros, tokenizer/model sizes and empty -o are in tests/test_run_folder.py.)
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import load_hf_tokenizer, shared_dir

from tip_decode.analysis import aggregate, analyze_response
from tip_decode.cli import main
from tip_decode.cli.common import trigger_problems
from tip_decode.core.config import TRIGGER_PRESETS
from tip_decode.harness import load_file


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result, [line for line in result.output.splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def qwen3_dir():
    return shared_dir("TIP_DECODE_TOKENIZERS", "tokenizers") / "qwen3"


# ----------------------------------------------------------------------------- trigger words


@pytest.mark.parametrize(
    ("triggers", "message"),
    [
        ("refletion", "trigger 'refletion' is not a preset; did you mean the preset 'reflection'?"),
        ("papr", "did you mean the preset 'paper'?"),
        ("a", "trigger 'a' is too short to be a word: every token spelled 'a' would count as a thought switch"),
        ("wait,a", "trigger 'a' is too short"),
        ("...", "trigger '...' has no letters"),
        (
            "alternativly",
            "trigger 'alternativly' is no word of this tokenizer: no token spells 'alternativly' whole at the start of a word (only as pieces: 'altern'+'ativ'+'ly')",
        ),
    ],
)
def test_vocab_refuses_trigger_words_that_look_wrong(qwen3_dir, triggers, message):
    """`vocab --triggers refletion` used to penalise 'ref'+'letion', and `--triggers a` every 'a'."""
    result, errors = run("vocab", qwen3_dir, "--triggers", triggers)
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output
    assert "add --force-triggers to use it as it is" in errors[0]


def test_force_triggers_insists_with_a_note(qwen3_dir):
    result = CliRunner().invoke(main, ["vocab", str(qwen3_dir), "--triggers", "a", "--force-triggers", "--json"])
    assert result.exit_code == 0, result.output
    assert "note: --triggers: trigger 'a' is too short to be a word" in result.stderr
    assert {entry["text"] for entry in json.loads(result.stdout)["entries"]} >= {" a", "a"}


@pytest.mark.parametrize("name", ["qwen3", "mistral-7b-v0.1", "llama-3.1", "deepseek-r1-distill-llama"])
def test_the_presets_and_their_words_are_never_questioned(name):
    """Mistral spells "Alternatively" as pieces: a preset's words are curated, not checked."""
    tokenizer = load_hf_tokenizer(name)
    for words in TRIGGER_PRESETS.values():
        assert trigger_problems(words, tokenizer) == []
    assert trigger_problems(["alternatively", "wait", "hmm"], tokenizer) == []


def test_compare_and_analyze_refuse_them_too(qwen3_dir, switchy_model_dir, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    base = ["compare", "-m", switchy_model_dir, "--data", data, "-o", tmp_path / "out", "-q"]
    result, errors = run(*base, "--switch-triggers", "refletion")
    assert result.exit_code == 2 and "--switch-triggers: trigger 'refletion' is not a preset" in errors[0]
    result, errors = run(*base, "-c", "tip:triggers=a")
    assert result.exit_code == 2 and "configuration 'tip' (tip triggers): trigger 'a' is too short" in errors[0]
    result, errors = run(*base, "-c", "tip:triggers=alternativly")
    assert result.exit_code == 2 and "is no word of this tokenizer" in errors[0]
    result, errors = run("grid", "-m", switchy_model_dir, "--data", data, "-o", tmp_path / "g", "--triggers", "refletion")
    assert result.exit_code == 2 and "--triggers: trigger 'refletion' is not a preset" in errors[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "g").exists()
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"response": "x = 1.\n\nWait, 2.", "answer": "1"}) + "\n")
    result, errors = run("analyze", responses, "--tokenizer", qwen3_dir, "--triggers", "a")
    assert result.exit_code == 2 and "trigger 'a' is too short" in errors[0]


# ----------------------------------------------------------------------------- NaN answers


@pytest.mark.parametrize(
    ("row", "what"), [('{"question": "q", "answer": NaN}', "field 'answer' is nan"), ('{"question": Infinity, "answer": "1"}', "field 'question' is inf")]
)
def test_nan_answers_are_refused_when_the_data_loads(tmp_path, row, what):
    path = tmp_path / "d.jsonl"
    path.write_text(row + "\n")
    with pytest.raises(ValueError, match=f"line 1: {what}, not text"):
        load_file(path)
    result, errors = run("compare", "-m", "unused-model", "--backend", "openai", "--data", path, "-o", tmp_path / "o", "-q")
    assert result.exit_code == 1 and len(errors) == 1 and what in errors[0], result.output


def test_nan_in_a_json_file_and_in_options_is_refused(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"question": "q", "answer": "A", "options": ["x", NaN]}]')
    with pytest.raises(ValueError, match="field 'options' lists nan, not an option"):
        load_file(path, answer_kind="choice", choices_field="options")


def test_analyze_refuses_a_nan_reference(qwen3_dir, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"response": "x = 1.", "answer": NaN}\n')
    result, errors = run("analyze", path, "--tokenizer", qwen3_dir)
    assert result.exit_code == 1 and len(errors) == 1 and "field 'answer' is nan, not a reference answer" in errors[0]


# ----------------------------------------------------------------------------- unknown is n/a


def test_ut_is_unknown_when_no_thought_was_judged():
    """UT used to be 0.000 for an incorrect response none of whose thoughts could be judged."""
    tokenizer = load_hf_tokenizer("qwen3")
    from tip_decode import SwitchVocabulary

    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, ["alternatively", "wait"])
    text = "x = 6.\n\nWait, maybe 4.</think>\\boxed{4}"
    unjudged = analyze_response(text, vocabulary=vocabulary, tokenizer=tokenizer, correct=False, prompt_open=True)
    assert unjudged.ut is None and all(t.status == "unjudged" for t in unjudged.thoughts)
    judged = analyze_response(text, vocabulary=vocabulary, tokenizer=tokenizer, reference="6", prompt_open=True)
    assert judged.correct is False and judged.ut is not None and judged.ut > 0
    wrong_everywhere = analyze_response(text, vocabulary=vocabulary, tokenizer=tokenizer, reference="7", prompt_open=True)
    assert wrong_everywhere.ut == 0.0  # judged, and no thought was correct: a finding, not unknown
    no_thought = analyze_response("</think>\\boxed{4}", vocabulary=vocabulary, tokenizer=tokenizer, reference="6", prompt_open=False, scope="think")
    assert no_thought.thoughts == [] and no_thought.ut is None
    summary = aggregate([unjudged, no_thought])
    assert summary["ut"] is None and summary["weighted_ut"] is None and summary["ut_unknown"] == 2


def test_abandonment_is_unknown_with_no_response():
    assert aggregate([])["abandoned_on_track"] is None
    assert aggregate([])["ut"] is None


# ----------------------------------------------------------------------------- names of things


def test_score_refuses_an_empty_folder_name():
    """`score ""` said "Error:  is not a run folder" (the empty name, then the current folder's state)."""
    result, errors = run("score", "", "--no-plots")
    assert result.exit_code == 2 and errors == ["Error: RUN_DIR has to name a run folder, but is empty"], result.output


def test_a_folder_without_tokenizer_files_is_named_as_such(tmp_path, switchy_model_dir):
    """A folder that holds no tokenizer (e.g. only a licence) gave transformers' first line,
    "Couldn't instantiate the backend tokenizer from one of:", and nothing after the colon."""
    folder = tmp_path / "only-a-licence"
    folder.mkdir()
    (folder / "LICENSE").write_text("licence text\n")
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    for args in (["vocab", folder], ["compare", "--data", data, "-m", switchy_model_dir, "--tokenizer", folder, "-o", tmp_path / "x", "-q", "--no-plots"]):
        result, errors = run(*args)
        assert result.exit_code == 1 and len(errors) == 1, result.output  # as test_cli_vocab decided for this folder
        assert "the folder holds no tokenizer files" in errors[0] and "from one of" not in errors[0], errors[0]
    assert not (tmp_path / "x").exists()
