"""What the commands print and write: --json, summary.md, portable runs, Ctrl-C, quiet and progress,
the tokenizer that wrote the records, judges that do not answer, and one JSON-lines reader."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from http_servers import JsonHandler, serving

from tip_decode.cli import main

CLI = [sys.executable, "-c", "import sys; from tip_decode.cli import main; main(sys.argv[1:])"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def problems_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "problems.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {i} plus {i}?", "answer": str(2 * i)}) + "\n" for i in range(3)))
    return path


@pytest.fixture(scope="module")
def compare_run(switchy_model_dir, problems_file, tmp_path_factory):
    """A compare run started from another folder with a *relative* model path, and its --json output."""
    home = tmp_path_factory.mktemp("home")
    model_link = home / "my-model"
    shutil.copytree(switchy_model_dir, model_link)
    out = home / "run"
    command = [
        *CLI,
        "compare",
        "-m",
        "my-model",
        "--data",
        str(problems_file),
        "-o",
        "run",
        "-k",
        "2",
        "--max-new-tokens",
        "5",
        "-c",
        "baseline",
        "-c",
        "ban:alpha=inf,beta=600,scope=all",
        "--switch-scope",
        "all",
        "--json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=home, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return home, out, result


def test_compare_json_on_stdout_and_the_table_on_stderr(compare_run):
    _, out, result = compare_run
    summary = json.loads(result.stdout)  # stdout is exactly one JSON object
    assert summary == json.loads((out / "summary.json").read_text())
    assert "| baseline" in result.stderr and "| baseline" not in result.stdout
    assert "note: baseline: 100.0% of responses hit the token limit" in result.stderr


def test_runs_are_portable(compare_run, tmp_path):
    home, out, _ = compare_run
    info = json.loads((out / "run.json").read_text())
    assert info["model"] == str(home / "my-model") and info["model_as_typed"] == "my-model"
    assert info["tokenizer"] == str(home / "my-model") and info["tokenizer_fingerprint"].startswith("sha256:")
    # score from another folder finds the model by its recorded absolute path.
    scored = subprocess.run([*CLI, "score", str(out), "--no-plots", "--json", "-q"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout)["configs"]["baseline"]["n"] == 6
    # Resuming with the absolute path is the same run: nothing is generated, nothing refused.
    before = (out / "baseline.jsonl").read_bytes()
    again = subprocess.run(
        [
            *CLI,
            "compare",
            "-m",
            str(home / "my-model"),
            "--data",
            str(json.loads((out / "run.json").read_text())["dataset"]),
            "-o",
            str(out),
            "-k",
            "2",
            "--max-new-tokens",
            "5",
            "-c",
            "baseline",
            "-c",
            "ban:alpha=inf,beta=600,scope=all",
            "--switch-scope",
            "all",
            "-q",
            "--no-plots",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert (out / "baseline.jsonl").read_bytes() == before
    # Another model into the same folder is refused before anything loads (a usage error).
    refused = invoke("compare", "-m", tmp_path, "--data", info["dataset"], "-o", out, "-k", "2", "--max-new-tokens", "5", "-q")
    assert refused.exit_code == 2 and "holds another run: its model is" in refused.output


def test_summary_md_explains_itself(compare_run):
    _, out, _ = compare_run
    md = (out / "summary.md").read_text()
    assert "| ban      | tip: alpha=inf, beta=600, triggers=alternatively, scope=all |" in md  # each configuration's settings
    assert "| baseline | no intervention (standard decoding)" in md
    for metric in ("UT", "weighted UT", "tokens between switches", "on-track abandoned", "truncated", "n"):
        assert f"- **{metric}**: " in md
    assert "problems: 3, samples per problem: 2" in md
    assert "| 100.0%" in md and "| 0.0%" in md  # truncated shares: the baseline never stops
    assert "every problem has the same accuracy" in md  # which interval, and why
    assert "every problem has the same difference" in md
    assert "baseline: 100.0% of responses hit the token limit (5 new tokens)" in md  # called out, not buried


def test_tokenizer_other_than_the_runs_is_refused(compare_run, tokenizers_dir):
    _, out, _ = compare_run
    other = tokenizers_dir / "qwen2.5"  # same family, another vocabulary (no think tokens)
    for args in (("analyze", out, "--tokenizer", other), ("score", out, "--tokenizer", other), ("analyze", out / "ban.jsonl", "--tokenizer", other)):
        result = CliRunner().invoke(main, [str(a) for a in args])
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert result.exit_code == 2 and len(errors) == 1 and "is not the one that wrote" in errors[0], result.output


def test_records_away_from_their_run_still_name_their_model(compare_run, tokenizers_dir, tmp_path):
    _, out, _ = compare_run
    copied = tmp_path / "records.jsonl"
    copied.write_bytes((out / "baseline.jsonl").read_bytes())
    # The model folder named in the records is here: its tokenizer is compared, and differs.
    result = CliRunner().invoke(main, ["analyze", str(copied), "--tokenizer", str(tokenizers_dir / "qwen2.5")])
    assert result.exit_code == 2 and "is not the one that wrote these records" in result.output
    # The same tokenizer under another name is accepted.
    assert invoke("analyze", copied, "--tokenizer", tokenizers_dir / "qwen3", "-q").exit_code == 0
    # A model that is not here cannot be checked: a loud warning.
    rewritten = [json.loads(line) for line in copied.read_text().splitlines()]
    for record in rewritten:
        record["versions"]["model"] = "/gone/model"
    copied.write_text("".join(json.dumps(r) + "\n" for r in rewritten))
    result = invoke("analyze", copied, "--tokenizer", tokenizers_dir / "qwen3", "-q")
    assert result.exit_code == 0 and "WARNING: these records were written by '/gone/model'" in result.stderr


def test_analyze_a_run_folder_reproduces_the_runs_numbers(compare_run):
    _, out, _ = compare_run
    result = invoke("analyze", out, "--json", "-q")  # no --tokenizer: the run's
    assert result.exit_code == 0, result.output
    analysed = json.loads(result.stdout)["configs"]
    summary = json.loads((out / "summary.json").read_text())["configs"]
    for name in ("baseline", "ban"):
        for key in ("switches_per_response", "mean_tokens_between_switches", "premature_switches", "ut", "weighted_ut"):
            assert analysed[name]["aggregate"][key] == summary[name][key], (name, key)
    assert analysed["baseline"]["aggregate"]["truncated"] == 1.0
    # A record file of the run reads with the run's settings too.
    one = invoke("analyze", out / "baseline.jsonl", "--json", "-q")
    assert json.loads(one.stdout)["aggregate"]["switches_per_response"] == summary["baseline"]["switches_per_response"]


def test_grid_names_no_best_cell_when_cells_tie(switchy_model_dir, problems_file, tmp_path):
    result = invoke(
        "grid",
        "-m",
        switchy_model_dir,
        "--data",
        problems_file,
        "-o",
        tmp_path / "grid",
        "--alphas",
        "3,inf",
        "--betas",
        "1",
        "--scope",
        "all",
        "--switch-scope",
        "all",
        "--temperature",
        "0",
        "--max-new-tokens",
        "3",
        "--json",
        "-q",
    )
    assert result.exit_code == 0, result.output
    grid = json.loads(result.stdout)["grid"]
    assert grid["best"] is None and grid["highest"]["config"] == "a3_b1"
    assert "no best cell: every cell has the same Pass@1 (0.000)" in result.stderr
    assert "best cell: alpha" not in result.output


def test_ctrl_c_exits_130_and_the_same_command_resumes(switchy_model_dir, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"question": f"Q{i}", "answer": "1"}) + "\n" for i in range(12)))
    out = tmp_path / "run"
    command = [
        *CLI,
        "compare",
        "-m",
        str(switchy_model_dir),
        "--data",
        str(data),
        "-o",
        str(out),
        "--batch-size",
        "1",
        "--temperature",
        "0",
        "--max-new-tokens",
        "16",
        "-q",
        "--no-plots",
        "-c",
        "baseline",
        "-c",
        "tip:alpha=inf,beta=600,scope=all",
    ]
    # As from a terminal: a test run started in the background (`pytest ... &`) ignores SIGINT, and
    # the CLI would inherit that and rightly ignore Ctrl-C (it ran to the end with exit 0).
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if out.exists() and sum(p.read_bytes().count(b"\n") for p in out.glob("*.jsonl")) >= 2:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read()[-2000:]
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-2000:]
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["configs"]["baseline"]["n"] == 12 and summary["configs"]["tip"]["n"] == 12


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_quiet_is_silent_and_progress_counts_tokens_without_carriage_returns(switchy_model_dir, problems_file, tmp_path):
    base = [*CLI, "compare", "-m", str(switchy_model_dir), "--data", str(problems_file), "--max-new-tokens", "5", "--no-plots", "-c", "baseline"]
    quiet = subprocess.run([*base, "-o", str(tmp_path / "q"), "-q"], capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    # No progress of ours, no "Loading weights" bar of transformers: only notes about the results.
    assert "Loading" not in quiet.stderr and "samples" not in quiet.stderr
    assert all(line.startswith("note: ") for line in quiet.stderr.splitlines()), quiet.stderr
    loud = subprocess.run([*base, "-o", str(tmp_path / "l")], capture_output=True, text=True, timeout=600)
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "\r" not in loud.stderr  # stderr is a pipe: plain lines, no redrawn bar
    assert "compare: 3 samples to generate" in loud.stderr
    assert "compare: 3/3 samples, 15 tokens generated" in loud.stderr  # 3 responses of 5 tokens


def test_progress_moves_with_tokens_before_samples_finish():
    import io

    from tip_decode.harness.progress import Progress

    stream = io.StringIO()
    progress = Progress(2, "compare", stream=stream, interval=0.0)
    progress.add_tokens(7)  # a long generation: tokens arrive, no sample has finished yet
    progress.finish_sample()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "compare: 2 samples to generate"
    assert lines[1].startswith("compare: 0/2 samples, 7 tokens generated")
    assert lines[-1].startswith("compare: 1/2 samples, 7 tokens generated")


class _JudgeServer(JsonHandler):
    """An OpenAI-compatible endpoint that lists a model; chat requests fail (status 500) when the
    draft contains `fail_on` (every request when it is empty), else answer confidence 0."""

    model = "judge"
    fail_on = ""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        draft = body["messages"][-1]["content"]
        if not self.fail_on or self.fail_on in draft:
            self.send_json(500, {"error": {"message": "judge overloaded", "type": "server_error"}})
            return
        reply = {"confidence": 0, "reason": "no"}
        self.send_json(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "judge",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": json.dumps(reply)}}],
            },
        )


@pytest.fixture
def judge_server():
    handler = type("Handler", (_JudgeServer,), {})
    with serving(handler) as server:
        yield server, handler


RESPONSES = [
    {"id": "a", "problem_id": "p1", "response": "2x = 6, so the answer is 6.\n\nWait, x+1? Then 4.</think>\n\\boxed{4}", "answer": "6"},
    {"id": "b", "problem_id": "p2", "response": "Perhaps 9.\n\nAlternatively 8.</think>\\boxed{8}", "answer": 2},
]


def test_a_judge_that_never_answers_leaves_everything_unknown_and_exits_1(judge_server, tmp_path, tokenizers_dir):
    server, handler = judge_server
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RESPONSES))
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    args = [
        "analyze",
        str(path),
        "--tokenizer",
        str(tokenizers_dir / "qwen3"),
        "--triggers",
        "alternatively,wait",
        "--judge",
        "llm",
        "--judge-model",
        "judge",
        "--judge-base-url",
        url,
        "--judge-retries",
        "0",
        "--json",
        "-q",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "every judge request failed" in errors[0]
    out = json.loads(result.stdout)
    aggregate = out["aggregate"]
    assert aggregate["abandoned_on_track"] is None and aggregate["ut"] is None  # not 0: nothing was judged
    assert aggregate["unjudged_thoughts"] == sum(r["n_thoughts"] for r in out["responses"]) == 4
    assert aggregate["ut_unknown"] == 2
    assert all(r["ut"] is None and r["abandoned_on_track"] is None for r in out["responses"])
    # Some answers: exit 0, the unknown part counted, the judged part measured.
    handler.fail_on = "Wait"
    result = CliRunner().invoke(main, args[:-2] + ["--judge-cache", str(tmp_path / "c2.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    aggregate = json.loads(result.stdout)["aggregate"]
    assert 0 < aggregate["unjudged_thoughts"] < 4
    assert "could not be judged" in result.stderr


def test_an_unreachable_judge_fails_before_any_work(tmp_path, tokenizers_dir):
    from vllm_fixtures import free_port

    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RESPONSES))
    result = CliRunner().invoke(
        main,
        [
            "analyze",
            str(path),
            "--tokenizer",
            str(tokenizers_dir / "qwen3"),
            "--judge",
            "llm",
            "--judge-model",
            "judge",
            "--judge-base-url",
            f"http://127.0.0.1:{free_port()}/v1",
        ],
    )
    assert result.exit_code == 1 and "cannot reach the judge" in result.output


def test_one_reader_one_message_format(tmp_path, tokenizers_dir, problems_file):
    """Data files, record files and analyze input report a bad line the same way: file and line."""
    from tip_decode.harness import load_file, read_records

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "1", "response": "x"}\n{"question": \n{"question": "q", "answer": "2"}\n')
    expected = f"{bad} line 2: not valid JSON"
    with pytest.raises(ValueError, match=expected):
        load_file(bad)
    # A damaged line in the middle of a record file is an error, not silently skipped (only a torn
    # last line, a write cut short, is dropped).
    with pytest.raises(ValueError, match=expected):
        read_records(bad)
    result = CliRunner().invoke(main, ["analyze", str(bad), "--tokenizer", str(tokenizers_dir / "qwen3")])
    assert result.exit_code == 1 and expected in result.output


def test_heatmap_annotations_contrast_with_their_cells():
    import matplotlib

    from tip_decode.harness.report import _text_colour

    viridis = matplotlib.colormaps["viridis"]
    assert _text_colour(viridis(0.0)) == "white"  # dark purple
    assert _text_colour(viridis(1.0)) == "black"  # light yellow
