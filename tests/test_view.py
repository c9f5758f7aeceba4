"""`tip-decode view`: the page's data (no browser here; tests/test_view_browser.py opens the page).

The page's thoughts and judgements are `tip-decode analyze`'s on the same records, TIP's penalty
window is where the real Hugging Face processor penalised, and bad input is one line.
"""

from __future__ import annotations

import json
import sys
import time
import webbrowser

import pytest
from view_support import DEMO_PROBLEMS, TRACES, demo_run, invoke, write_jsonl

from tip_decode.harness import read_records
from tip_decode.viewer import read_page_data
from tip_decode.viewer.data import PENALISED, SWITCH_WORD, TIPWindow, penalised_steps
from tip_decode.viewer.page import pack, render_page, unpack

TRACE_OPTIONS = ["--triggers", "alternatively,wait", "--premature-threshold", "8"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return demo_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def page(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("view") / "page.html"
    result = invoke(["view", str(run_dir), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)  # stdout: the path, for scripts
    assert f"view: {DEMO_PROBLEMS} problems, 2 configurations, {2 * DEMO_PROBLEMS} responses" in result.stderr
    assert " kB in " in result.stderr  # the size is reported
    return read_page_data(out)


def analyze_json(source, *options):
    result = invoke(["analyze", str(source), "--json", "--thoughts", "-q", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def shown_responses(index, details):
    """{(config, problem id, sample): the page's response}."""
    names = [c["name"] for c in index["configs"]]
    shown = {}
    for problem, detail in zip(index["problems"], details):
        for sample in detail["samples"]:
            for name, trace in zip(names, sample["traces"]):
                if trace is not None:
                    shown[(name, problem["id"], sample["sample"])] = trace
    return shown


def assert_same_as_analyze(trace, response):
    """The page's response and thoughts are the analysis that `tip-decode analyze` printed."""
    assert trace["ok"] == response["correct"]
    assert trace["pred"] == response["prediction"]
    assert trace["tok"] == response["n_tokens"]
    assert trace["ut"] == response["ut"]
    assert trace["fct"] == response["first_correct_thought"]
    assert trace["sw"] == len(response["switch_positions"])
    assert trace["pre"] == response["premature"]
    assert trace["ota"] == response["abandoned_on_track"]
    assert trace["unj"] == response["unjudged_thoughts"]
    page_thoughts = [(t["i"], t["a"], t["n"], t["t"], t["s"], t["tr"], t["end"], t["pre"], t["cand"], t["conf"]) for t in trace["th"]]
    analysed = [
        (t["index"], t["start"], t["n_tokens"], t["text"], t["status"], t["trigger"], t["ended_by_switch"], t["premature"], t["candidates"], t["confidence"])
        for t in response["thoughts"]
    ]
    assert page_thoughts == analysed


def test_page_thoughts_and_judgements_equal_analyze_on_the_demo_run(run_dir, page):
    index, details = page
    analysed = analyze_json(run_dir)
    shown = shown_responses(index, details)
    compared = 0
    for name, result in analysed["configs"].items():
        records = read_records(run_dir / f"{name}.jsonl")
        assert len(records) == len(result["responses"]) == DEMO_PROBLEMS
        for record, response in zip(records, result["responses"]):
            assert_same_as_analyze(shown.pop((name, record["id"], record["sample"])), response)
            compared += 1
    assert not shown and compared == 2 * DEMO_PROBLEMS
    assert index["totals"]["thoughts"] == sum(r["n_thoughts"] for c in analysed["configs"].values() for r in c["responses"])
    # The walk judge of the run (not the answer-match default) judged them: some thoughts on track.
    assert any(t["s"] == "correct" for d in details for s in d["samples"] for tr in s["traces"] for t in tr["th"])


def test_table_cells_are_the_responses_numbers(page):
    index, details = page
    assert [c["name"] for c in index["configs"]] == ["baseline", "tip"]
    assert index["baseline"] == 0
    for problem, detail in zip(index["problems"], details):
        (sample,) = detail["samples"]  # one sample per problem in the demo
        for cell, trace in zip(problem["c"], sample["traces"]):
            assert (cell["n"], cell["g"], cell["ok"]) == (1, 1, int(trace["ok"]))
            assert (cell["sw"], cell["tok"], cell["th"]) == (trace["sw"], trace["tok"], len(trace["th"]))
            assert cell["ut"] == trace["ut"]
            assert cell["trunc"] == (trace["finish"] == "length")
    # The run's settings and its summary, with intervals, come from run.json and summary.json.
    summary = json.loads((page_source(index) / "summary.json").read_text())
    table = index["tables"][0]
    assert table["title"].startswith("Summary") and "Pass@1 [95% CI]" in table["headers"]
    pass1 = summary["configs"]["tip"]["pass@1"]
    assert f"{pass1['mean']:.3f} [{pass1['ci95'][0]:.3f}, {pass1['ci95'][1]:.3f}]" in table["rows"][1]
    settings = dict(index["settings"])
    assert settings["switch words"] == "alternatively, wait" and settings["premature threshold"] == "20 tokens"
    assert settings["thought judge"] == "tip_decode.demo.run:WalkJudge"


def page_source(index):
    from pathlib import Path

    return Path(index["source"])


def test_tip_window_is_where_the_hf_processor_penalised(run_dir, page):
    """The shaded steps of a TIP response are exactly the steps at which the real processor, fed the
    recorded prompt and tokens one step at a time, lowered the switch words' logits."""
    import torch

    from tip_decode import SwitchVocabulary
    from tip_decode.demo import MODEL_DIR
    from tip_decode.harness.backends import load_hf_tokenizer
    from tip_decode.hf import ReasoningInterventionsProcessor

    index, details = page
    shown = shown_responses(index, details)
    tokenizer = load_hf_tokenizer(str(MODEL_DIR))
    records = read_records(run_dir / "tip.jsonl")[:10]
    settings = records[0]["interventions"]
    hits = torch.tensor(sorted(SwitchVocabulary.from_tokenizer(tokenizer, settings["tip_triggers"]).token_ids))
    width = len(tokenizer)
    through = 0
    for record in records:
        processor = ReasoningInterventionsProcessor(tokenizer, record["interventions"])
        prompt = tokenizer(record["prompt"], add_special_tokens=False, return_tensors="pt").input_ids
        generated = record["token_ids"]
        penalised = set()
        for step in range(len(generated)):
            ids = torch.cat([prompt, torch.tensor([generated[:step]], dtype=torch.long)], dim=1)
            scores = processor(ids, torch.zeros(1, width))
            if bool((scores[0, hits] < 0).any()):
                penalised.add(step)
        trace = shown[("tip", record["id"], record["sample"])]
        assert {s for a, b in trace["win"] for s in range(a, b)} == penalised, record["id"]
        assert penalised
        through += trace["pen"]
    assert through > 0  # some switches were sampled through the penalty
    # The baseline has no window.
    assert all(shown[("baseline", r["id"], r["sample"])]["win"] is None for r in records)


def test_penalised_steps_by_hand():
    """`<think>`-opened reasoning `5 +7 12 Wait 5 +3 8 Alternatively 5 +2 7`: with beta 3 the window
    closes before each switch word; with beta 5 both switches are sampled inside it."""
    from tokenizers import Tokenizer

    from tip_decode import SwitchVocabulary
    from tip_decode.demo import MODEL_DIR

    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    ids = tokenizer.encode("5 +7 12 Wait 5 +3 8 Alternatively 5 +2 7").ids
    assert len(ids) == 11
    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, ["alternatively", "wait"])
    ranges, switches = penalised_steps(ids, TIPWindow(3.0, 3, vocabulary, "think"), prompt_open=True)
    assert ranges == [(0, 3), (4, 6), (8, 10)] and switches == {(3, 3), (7, 7)}
    ranges, _ = penalised_steps(ids, TIPWindow(3.0, 5, vocabulary, "think"), prompt_open=True)
    assert ranges == [(0, 11)]
    # Not opened: scope "think" waits for a generated <think>, and there is none.
    assert penalised_steps(ids, TIPWindow(3.0, 5, vocabulary, "think"), prompt_open=False)[0] == []


def test_view_of_a_trace_file_equals_analyze(tmp_path, tokenizers_dir):
    path = write_jsonl(tmp_path / "traces.jsonl", TRACES)
    tokenizer = str(tokenizers_dir / "qwen3")
    result = invoke(["view", str(path), "--tokenizer", tokenizer, *TRACE_OPTIONS, "-q"])
    assert result.exit_code == 0, result.output
    page = tmp_path / "traces.html"  # beside the file by default
    assert result.stdout.strip() == str(page)
    index, details = read_page_data(page)
    analysed = analyze_json(path, "--tokenizer", tokenizer, *TRACE_OPTIONS)

    # Samples of one problem (problem_id) are one row; a file is one configuration, no baseline.
    assert [p["id"] for p in index["problems"]] == ["p1", "p2", "p3"]
    assert [p["k"] for p in index["problems"]] == [2, 1, 1]
    assert [c["name"] for c in index["configs"]] == ["traces"] and index["baseline"] is None
    p1 = index["problems"][0]["c"][0]
    assert (p1["n"], p1["g"], p1["ok"]) == (2, 2, 1)
    responses = [s["traces"][0] for d in details for s in d["samples"]]
    assert len(responses) == len(analysed["responses"]) == 4
    for trace, response in zip(responses, analysed["responses"]):
        assert_same_as_analyze(trace, response)
    assert index["problems"][0]["c"][0]["ut"] == analysed["responses"][0]["ut"]

    # The switch word that opened a thought is the first run of its text, flagged as such.
    second = responses[0]["th"][1]
    length, flags = second["runs"][0]
    assert flags == SWITCH_WORD and second["t"][:length].strip() == "Wait"
    assert sum(n for n, _ in second["runs"]) == len(second["t"])
    # Text outside the reasoning is kept: nothing before it (the prompt opened it), the answer after.
    assert responses[0]["before"] == "" and responses[0]["after"].startswith("</think>")
    # No summary.json: the analysis's aggregates, said so.
    assert index["tables"][0]["note"].startswith("no summary.json")
    assert dict(index["settings"])["switch words"] == "alternatively, wait"


def test_text_cannot_break_out_of_the_page(tmp_path, tokenizers_dir):
    path = write_jsonl(tmp_path / "traces.jsonl", TRACES)
    out = tmp_path / "page.html"
    result = invoke(["view", str(path), "--tokenizer", str(tokenizers_dir / "qwen3"), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "<script>window.injected" not in html and "\\u003cscript>window.injected" in html  # only escaped copies
    assert html.count("</script>") == 1 + len(TRACES[:3]) + 1  # the index, one element per problem, the script
    index, details = read_page_data(out)
    assert index["problems"][2]["text"] == TRACES[3]["problem"]
    assert "</script><script>window.injected = 1</script>" in details[2]["samples"][0]["traces"][0]["th"][0]["t"]


def test_pack_and_page_checks():
    detail = {"t": "é </script> 漢字 🙂", "n": [1, 2.5, None]}
    assert unpack(pack(detail)) == detail
    with pytest.raises(ValueError, match="one detail per problem"):
        render_page({"problems": [{}], "title": "x"}, [])
    assert PENALISED == 2 and SWITCH_WORD == 1  # the page's script reads these bits


def test_demo_writes_and_links_its_page(run_dir):
    page = run_dir / "view.html"
    index, _ = read_page_data(page)
    assert index["totals"]["problems"] == DEMO_PROBLEMS
    assert "[view.html](view.html)" in (run_dir / "demo.md").read_text()


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["view", "{tmp}/missing"], 2, "no such file or folder"),
        (["view", "{tmp}/folder"], 2, "is not a run folder"),
        (["view", "{tmp}/r.jsonl"], 2, "--tokenizer is required"),
        (["view", "{tmp}/bad.jsonl", "--tokenizer", "{qwen3}"], 1, "bad.jsonl line 2"),
        (["view", "{tmp}/r.jsonl", "--tokenizer", "{qwen3}", "--out", "{tmp}/nowhere/p.html"], 2, "no such folder"),
        (["view", "{tmp}/r.jsonl", "--tokenizer", "{qwen3}", "--out", "{tmp}"], 2, "is a directory"),
        (["view", "{tmp}/r.jsonl", "--tokenizer", "{tmp}/nope"], 2, "no such"),
    ],
)
def test_bad_input_is_one_line(tmp_path, tokenizers_dir, args, status, message):
    (tmp_path / "folder").mkdir()
    write_jsonl(tmp_path / "r.jsonl", TRACES[:1])
    write_jsonl(tmp_path / "bad.jsonl", [TRACES[0], "{not json"])
    args = [a.format(tmp=tmp_path, qwen3=tokenizers_dir / "qwen3") for a in args]
    result = invoke(args)
    assert result.exit_code == status, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.output


def test_unknown_configuration_of_a_run(run_dir):
    result = invoke(["view", str(run_dir), "--config", "nope"])
    assert result.exit_code == 2
    assert "the run has no such configuration (it has: baseline, tip)" in result.stderr


def test_open_starts_the_browser_on_the_page(tmp_path, tokenizers_dir, monkeypatch):
    """--open hands the page's file URI to Python's webbrowser, which runs $BROWSER with it."""
    opened = tmp_path / "opened.txt"
    monkeypatch.setenv("BROWSER", f"{sys.executable} -c \"import sys; open(sys.argv[2], 'w').write(sys.argv[1])\" %s {opened}")
    monkeypatch.setattr(webbrowser, "_tryorder", None)  # read $BROWSER again
    path = write_jsonl(tmp_path / "traces.jsonl", TRACES[:2])
    result = invoke(["view", str(path), "--tokenizer", str(tokenizers_dir / "qwen3"), "--open", "-q"])
    assert result.exit_code == 0, result.output
    page = tmp_path / "traces.html"
    for _ in range(100):  # the browser command may still be starting
        if opened.exists() and opened.read_text():
            break
        time.sleep(0.05)
    assert opened.read_text() == page.resolve().as_uri()
