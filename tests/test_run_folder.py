"""A run folder belongs to one run (issue 18): run.json records what determines a record, a rerun
resumes only the same run, the folder is locked while a run writes, no record is written twice, and
`score` summarises complete runs only (unless --partial) and names damaged record files.

Real generation everywhere (the switchy tiny Qwen2 of conftest, real tokenizers); where a test says
"before the model loads", the model class is replaced by one that fails the test when constructed,
so the order of the checks is what is tested.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import build_tiny_qwen2, load_hf_tokenizer, shared_dir

import tip_decode.harness as harness
from tip_decode.cli import main
from tip_decode.harness import HFBackend, Problem, SamplingSettings, parse_config_spec, read_records, run_compare, summarize
from tip_decode.harness.folder import IDENTITY_KEYS, FolderBusy, RunLock
from tip_decode.harness.preflight import InputError

CLI = [sys.executable, "-c", "import sys; from tip_decode.cli import main; main(sys.argv[1:])"]


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result, [line for line in result.output.splitlines() if line.startswith("Error")]


def write_problems(path: Path, count: int, offset: int = 0) -> Path:
    path.write_text("".join(json.dumps({"question": f"What is {i} plus {i}?", "answer": str(2 * i)}) + "\n" for i in range(offset, offset + count)))
    return path


@pytest.fixture(scope="module")
def first_run(switchy_model_dir, tmp_path_factory):
    """`compare` on 4 problems of walk200.jsonl; returns (folder, model, data, the command's options)."""
    home = tmp_path_factory.mktemp("run")
    data = write_problems(home / "walk200.jsonl", 20)
    options = ["-m", switchy_model_dir, "--max-new-tokens", "4", "--limit", "4", "-q", "--no-plots", "-c", "baseline", "-c", "tip:alpha=inf,beta=600,scope=all"]
    result, errors = invoke("compare", "--data", data, "-o", home / "x", *options)
    assert result.exit_code == 0, result.output
    return home / "x", data, options


@pytest.fixture
def run_copy(first_run, tmp_path):
    folder, data, options = first_run
    copy = tmp_path / "x"
    shutil.copytree(folder, copy)
    return copy, data, options


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the CLI gets as far as loading a model."""

    class Refused:
        def __init__(self, *args, **kwargs):
            raise AssertionError("the model was loaded before the mistake was found")

    monkeypatch.setattr(harness, "HFBackend", Refused)


def test_run_json_records_everything_that_determines_a_record(first_run):
    folder, data, _ = first_run
    info = json.loads((folder / "run.json").read_text())
    for key in IDENTITY_KEYS:
        assert key in info, key
    assert info["data"]["sha256"] and info["data"]["file"] == str(data) and info["data"]["question_field"] == "question"
    assert info["template"] is None and info["system"] is None and info["chat_template"]
    assert info["tokenizer_fingerprint"].startswith("sha256:") and info["backend"] == "hf" and info["seed"] == 0
    assert info["problem_ids"] == ["0", "1", "2", "3"] and info["samples"] == 1
    assert [c["name"] for c in info["configs"]] == ["baseline", "tip"]


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (["--data", "OTHER"], "its data is"),
        (["--template", "Q: {question}"], "its user-message template is the default, not 'Q: {question}'"),
        (["--system", "Be brief."], "its system message is the default, not 'Be brief.'"),
        (["--seed", "7"], "its seed is 0, not 7"),
        (["--temperature", "0.3"], "its temperature is"),
        (["--max-new-tokens", "5"], "its token limit is 4, not 5"),
        (["--switch-triggers", "wait"], "its switch-trigger list is ['alternatively'], not ['wait']"),
        (["--tokenizer", "QWEN25"], "its tokenizer vocabulary is"),
        # Same file, another option that turns its rows into problems: the option is named (it
        # once said "its data is 'x.jsonl' (sha256 ...), not 'x.jsonl' (sha256 ...)": the same twice).
        (["--answer-field", "question"], "of the same data with --answer-field 'answer', not 'question'"),
        (["--id-field", "question"], "of the same data with --id-field unset, not 'question'"),
        (["--answer-kind", "number"], "of the same data with --answer-kind 'math', not 'number'"),
    ],
)
def test_a_rerun_of_another_run_stops_before_the_model_loads(run_copy, no_model_load, change, what, tmp_path):
    """The issue's cases: other data (ids are row numbers, so the old records would have been
    reported as the new data set's), another template (once not even recorded), and every other
    setting that determines a record. One line, exit 2, nothing loaded, nothing written."""
    folder, data, options = run_copy
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    other = write_problems(tmp_path / "walk.jsonl", 20, offset=100)
    change = [str(other) if c == "OTHER" else str(shared_dir("TIP_DECODE_TOKENIZERS", "tokenizers") / "qwen2.5") if c == "QWEN25" else c for c in change]
    args = ["compare", "--data", data, "-o", folder, *options]
    for index in range(0, len(change), 2):  # replace the option if given, else add it
        if change[index] in args:
            args[args.index(change[index]) + 1] = change[index + 1]
        else:
            args += change[index : index + 2]
    result, errors = invoke(*args)
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and "holds another run" in errors[0] and what in errors[0], result.output
    assert "to resume it, or use another output folder (-o)" in errors[0]
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}


def test_the_same_data_under_another_path_resumes_and_generates_nothing(run_copy, tmp_path):
    folder, data, options = run_copy
    moved = tmp_path / "elsewhere" / "copy.jsonl"
    moved.parent.mkdir()
    shutil.copyfile(data, moved)
    records = {name: (folder / name).read_bytes() for name in ("baseline.jsonl", "tip.jsonl")}
    result, _ = invoke("compare", "--data", moved, "-o", folder, *options)
    assert result.exit_code == 0, result.output
    assert {name: (folder / name).read_bytes() for name in records} == records


def test_a_larger_limit_adds_problems_and_new_configurations_are_added(run_copy):
    folder, data, options = run_copy
    args = [*options]
    args[args.index("--limit") + 1] = "6"
    result, _ = invoke("compare", "--data", data, "-o", folder, *args, "-c", "late=tip:alpha=inf,beta=1,scope=all", "--json")
    assert result.exit_code == 0, result.output
    for name in ("baseline", "tip", "late"):
        assert sorted(r["id"] for r in read_records(folder / f"{name}.jsonl")) == ["0", "1", "2", "3", "4", "5"]
    info = json.loads((folder / "run.json").read_text())
    assert [c["name"] for c in info["configs"]] == ["baseline", "tip", "late"] and len(info["problem_ids"]) == 6


def test_configurations_of_an_earlier_command_stay_in_run_json(run_copy):
    folder, data, options = run_copy
    args = [a for a in options]
    spec = args.index("tip:alpha=inf,beta=600,scope=all")
    del args[spec - 1 : spec + 1]  # only -c baseline now
    result, _ = invoke("compare", "--data", data, "-o", folder, *args)
    assert result.exit_code == 0, result.output
    assert [c["name"] for c in json.loads((folder / "run.json").read_text())["configs"]] == ["tip", "baseline"]
    scored, _ = invoke("score", folder, "--no-plots", "--json", "-q")
    assert scored.exit_code == 0 and set(json.loads(scored.stdout)["configs"]) == {"tip", "baseline"}


def test_records_made_from_other_problems_are_never_reported(switchy_model_dir, tmp_path):
    """Problems built in Python are not described by run.json: the records themselves are checked."""
    backend = HFBackend(str(switchy_model_dir), sampling=SamplingSettings(temperature=0.0, max_new_tokens=3))
    configs = [parse_config_spec("baseline")]
    first = [Problem(str(i), f"What is {i}?", str(i)) for i in range(3)]
    run_compare(first, configs, backend, tmp_path / "r", progress=False, plots=False)
    renamed = [Problem(str(i), f"How much is {i}?", str(i)) for i in range(3)]
    with pytest.raises(InputError, match=r"holds a record of problem '0' made with another prompt"):
        run_compare(renamed, configs, backend, tmp_path / "r", progress=False, plots=False)
    other_answer = [Problem(str(i), f"What is {i}?", str(i + 1)) for i in range(3)]
    with pytest.raises(InputError, match="made with another reference"):
        run_compare(other_answer, configs, backend, tmp_path / "r", progress=False, plots=False)


def test_a_second_writer_gets_one_line_while_the_folder_is_locked(first_run, tmp_path):
    folder, data, options = first_run
    target = tmp_path / "busy"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from tip_decode.harness.folder import RunLock; import time; RunLock({str(target)!r}, 'a test').acquire(); print('locked', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = subprocess.run([*CLI, "compare", "--data", str(data), "-o", str(target), *map(str, options)], capture_output=True, text=True, timeout=600)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "is in use by another run (process" in lines[0] and "a test" in lines[0], result.stderr
        scored = subprocess.run([*CLI, "score", str(folder), "--no-plots", "-q"], capture_output=True, text=True, timeout=600)
        assert scored.returncode == 0  # another folder is not affected
    finally:
        holder.kill()
        holder.wait()
    with RunLock(target):  # released when its process ended, however it ended
        pass


def test_the_same_process_takes_its_own_lock_again_but_another_does_not(tmp_path):
    with RunLock(tmp_path / "f"), RunLock(tmp_path / "f"):
        code = f"from tip_decode.harness.folder import RunLock; RunLock({str(tmp_path / 'f')!r}).acquire()"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode == 1 and "FolderBusy" in other.stderr and "is in use by another run" in other.stderr
    assert issubclass(FolderBusy, RuntimeError)


def test_two_identical_compares_never_write_a_record_twice(switchy_model_dir, tmp_path):
    """The issue's race: two identical commands started moments apart. Whichever way they interleave,
    one of them is refused while the other writes, and every record is in the folder once."""
    data = write_problems(tmp_path / "p.jsonl", 12)
    command = [
        *CLI,
        "compare",
        "-m",
        str(switchy_model_dir),
        "--data",
        str(data),
        "-o",
        str(tmp_path / "x"),
        "--max-new-tokens",
        "4",
        "--batch-size",
        "1",
        "-q",
        "--no-plots",
        "-c",
        "baseline",
        "-c",
        "tip:alpha=inf,beta=600,scope=all",
    ]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "x" / "run.json").exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    first_err = first.communicate(timeout=600)[1]
    codes = sorted([first.returncode, second.returncode])
    assert codes in ([0, 0], [0, 1]), (first_err, second.stderr)
    if second.returncode == 1:
        assert "is in use by another run" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    for name in ("baseline.jsonl", "tip.jsonl"):
        keys = [(r["id"], r["sample"]) for r in read_records(tmp_path / "x" / name)]
        assert sorted(keys) == sorted((str(i), 0) for i in range(12))


def test_a_backend_that_reports_a_request_twice_writes_it_once(switchy_model_dir, tmp_path):
    class Twice(HFBackend):
        def generate(self, requests, on_complete, on_tokens=None):
            super().generate(requests, lambda request, completion: (on_complete(request, completion), on_complete(request, completion)), on_tokens)

    backend = Twice(str(switchy_model_dir), sampling=SamplingSettings(temperature=0.0, max_new_tokens=3))
    problems = [Problem(str(i), f"What is {i}?", str(i)) for i in range(3)]
    summary = run_compare(problems, [parse_config_spec("baseline")], backend, tmp_path / "r", progress=False, plots=False)
    assert len((tmp_path / "r" / "baseline.jsonl").read_text().splitlines()) == 3 and summary["configs"]["baseline"]["n"] == 3


# ----------------------------------------------------------------------------- score


def test_score_refuses_a_folder_with_only_run_json_and_creates_nothing(first_run, tmp_path):
    folder, _, _ = first_run
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copyfile(folder / "run.json", bare / "run.json")
    result, errors = invoke("score", bare, "--no-plots", "-q")
    assert result.exit_code == 2 and len(errors) == 1 and "holds no records of its run's problems" in errors[0], result.output
    result, errors = invoke("score", bare, "--no-plots", "-q", "--partial")
    assert result.exit_code == 2 and "nothing to summarise" in errors[0]
    assert sorted(p.name for p in bare.iterdir() if p.name != ".lock") == ["run.json"]


def test_score_refuses_an_incomplete_run_unless_partial_and_names_empty_and_torn_files(run_copy):
    folder, _, _ = run_copy
    (folder / "baseline.jsonl").write_text("")
    lines = (folder / "tip.jsonl").read_text().splitlines(keepends=True)
    (folder / "tip.jsonl").write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # a torn last line
    result, errors = invoke("score", folder, "--no-plots", "-q")
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "is not a complete run (baseline has 0 of 4, tip has 3 of 4 records" in errors[0] and "--partial" in errors[0]
    # The refusal names the damaged files as compare's notes do (it is the only line the user sees).
    assert "baseline.jsonl is empty" in errors[0] and "tip.jsonl ends in a torn line" in errors[0], errors[0]
    result = CliRunner().invoke(main, ["score", str(folder), "--no-plots", "-q", "--partial", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["partial"] is True and summary["configs"]["tip"]["n"] == 3 and summary["configs"]["baseline"]["n"] == 0
    notes = "\n".join(line for line in result.stderr.splitlines() if line.startswith("note: "))
    assert "baseline.jsonl is empty" in notes and "tip.jsonl ends in a torn line" in notes and "partial run" in notes
    assert summary["configs"]["baseline"]["abandoned_on_track"] is None and summary["configs"]["baseline"]["ut"] is None


def test_analyze_reads_a_run_with_a_torn_last_line_as_score_does(run_copy):
    """A torn last line of a run's record file is a write cut short: analyze said "line 4: not
    valid JSON" and stopped, while compare and score skip it and name it."""
    folder, _, _ = run_copy
    lines = (folder / "tip.jsonl").read_text().splitlines(keepends=True)
    (folder / "tip.jsonl").write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    for source in (folder, folder / "tip.jsonl"):
        result = CliRunner().invoke(main, ["analyze", str(source), "--json"])
        assert result.exit_code == 0, result.output
        output = json.loads(result.stdout)
        aggregate = output["configs"]["tip"]["aggregate"] if "configs" in output else output["aggregate"]
        assert aggregate["n"] == 3
        notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
        assert any("tip.jsonl ends in a torn line" in line for line in notes), result.stderr


def test_score_reports_repeated_records_and_keeps_each_once(run_copy):
    folder, _, _ = run_copy
    text = (folder / "tip.jsonl").read_text()
    (folder / "tip.jsonl").write_text(text + text)
    result = CliRunner().invoke(main, ["score", str(folder), "--no-plots", "-q", "--json"])
    assert result.exit_code == 0, result.output
    assert "note: tip.jsonl holds 4 repeated record(s)" in result.stderr
    assert json.loads(result.stdout)["configs"]["tip"]["n"] == 4
    assert (folder / "tip.jsonl").read_text().count("\n") == 4


def test_summarize_api_refuses_incomplete_runs_too(run_copy, tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        summarize(tmp_path / "nowhere", plots=False)
    assert not (tmp_path / "nowhere").exists()
    folder, _, _ = run_copy
    (folder / "tip.jsonl").write_text((folder / "tip.jsonl").read_text().splitlines(keepends=True)[0])
    with pytest.raises(InputError, match=r"tip has 1 of 4 records"):
        summarize(folder, plots=False, regrade=False)
    assert summarize(folder, plots=False, regrade=False, partial=True)["configs"]["tip"]["n"] == 1


# ----------------------------------------------------------------------------- other bad input


@pytest.mark.parametrize(
    "alphas,betas,cells", [("0", "20", [["baseline"]]), ("0,3", "20", [["baseline"], ["a3_b20"]]), ("3", "0,20", [["baseline", "a3_b20"]])]
)
def test_grid_cells_with_alpha_or_beta_zero_are_the_baseline(switchy_model_dir, first_run, tmp_path, alphas, betas, cells):
    """alpha 0 and beta 0 turn TIP off: those cells are the baseline (not generated twice), and the
    grid writes its heatmaps (it used to generate everything, then die on 'NoneType' has no 'alpha')."""
    _, data, _ = first_run
    result = CliRunner().invoke(
        main,
        [
            "grid",
            "-m",
            str(switchy_model_dir),
            "--data",
            str(data),
            "--limit",
            "3",
            "--max-new-tokens",
            "3",
            "-o",
            str(tmp_path / "g"),
            "--alphas",
            alphas,
            "--betas",
            betas,
            "--json",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    grid = json.loads(result.stdout)["grid"]
    assert grid["cells"] == cells
    assert (tmp_path / "g" / "heatmap_pass1.png").stat().st_size > 0 and (tmp_path / "g" / "heatmap_switches.png").stat().st_size > 0
    configs = sorted(p.stem for p in (tmp_path / "g").glob("*.jsonl"))
    assert configs == sorted({c for row in cells for c in row})
    if all(c == "baseline" for row in cells for c in row):
        assert grid["best"] is None and grid["highest"] is None and "every cell is the baseline" in grid["best_reason"]
    base = json.loads(result.stdout)["configs"]["baseline"]["pass@1"]["mean"]
    assert all(grid["pass@1"][i][j] == base for i, row in enumerate(cells) for j, c in enumerate(row) if c == "baseline")


@pytest.fixture(scope="module")
def small_vocab_model(tmp_path_factory):
    """A tiny Qwen2 with Mistral's 32,000-token vocabulary."""
    path = build_tiny_qwen2(tmp_path_factory.mktemp("mistral-sized"), tokenizer_name="mistral-7b-v0.1")
    return path


def test_a_tokenizer_larger_than_the_model_is_refused_before_generation(small_vocab_model, first_run, no_model_load):
    _, data, _ = first_run
    qwen3 = shared_dir("TIP_DECODE_TOKENIZERS", "tokenizers") / "qwen3"
    result, errors = invoke("compare", "-m", small_vocab_model, "--tokenizer", qwen3, "--data", data, "-o", small_vocab_model.parent / "o", "-q")
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "has 151669 tokens, but model" in errors[0] and "has 32000 (vocab_size in its config.json)" in errors[0]


def test_hf_backend_checks_the_vocabulary_before_generate(small_vocab_model):
    with pytest.raises(InputError, match="has 151669 tokens, but model"):
        HFBackend(str(small_vocab_model), tokenizer=load_hf_tokenizer("qwen3"))


def test_an_empty_output_folder_is_refused(first_run, switchy_model_dir, tmp_path, monkeypatch):
    _, data, options = first_run
    monkeypatch.chdir(tmp_path)
    for command in (["compare", "--data", data, *options], ["grid", "--data", data, "-m", switchy_model_dir], ["demo", "--problems", "2"]):
        for empty in ("", "  "):
            result, errors = invoke(*command, "-o", empty)
            assert result.exit_code == 2 and len(errors) == 1 and "--out has to name a folder, but is empty" in errors[0], result.output
    assert list(tmp_path.iterdir()) == []
    backend = HFBackend(str(switchy_model_dir), sampling=SamplingSettings(temperature=0.0, max_new_tokens=3))
    with pytest.raises(InputError, match="output folder has to be a path, but is empty"):
        run_compare([Problem("1", "q", "1")], [parse_config_spec("baseline")], backend, "", progress=False)
    assert list(tmp_path.iterdir()) == []
