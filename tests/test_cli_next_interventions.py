"""`tip-decode compare -c alphaone -c affirm -c nothinking -c inject:text=...` end to end (HF backend):
the specs parse with the papers' defaults, every run file records each configuration's full flat
keys, and on the demo model (prompts that end inside `<think>`) each changes what is generated."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tip_decode.cli import main
from tip_decode.demo import MODEL_DIR


def compare(model, data, out, specs, max_new_tokens):
    args = ["compare", "-m", str(model), "--data", str(data), "-o", str(out), "-k", "1", "--max-new-tokens", str(max_new_tokens), "--quiet"]
    result = CliRunner().invoke(main, args + [arg for spec in specs for arg in ("-c", spec)])
    assert result.exit_code == 0, result.output
    return {c["name"]: c["interventions"] for c in json.loads((out / "run.json").read_text())["configs"]}


def records(out, name):
    return [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]


def test_the_papers_defaults_on_a_qwen3_vocabulary(switchy_model_dir, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(2)))
    out = tmp_path / "run"
    recorded = compare(switchy_model_dir, data, out, ["alphaone", "affirm", "nothinking", "inject:text=I should be brief."], 4)
    assert recorded == {
        "alphaone": {"alphaone": 1, "alphaone_moment": -1, "alphaone_alpha": 1.4, "alphaone_think_tokens": 3100, "alphaone_word": "Wait",
                     "alphaone_seed": 0, "alphaone_temperature": 1.0},
        "affirm": {"affirm": 1, "affirm_tau": 0.7, "affirm_words": ["Wait", "wait"], "affirm_scope": "all"},
        "nothinking": {"nothinking": 1, "nothinking_text": "Okay, I think I have finished thinking.\n"},
        "inject": {"inject_text": "I should be brief.", "inject_after": ""},
    }  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert {name: m["interventions"] for name, m in summary["configs"].items()} == recorded
    assert all(records(out, name)[0]["interventions"] == flat for name, flat in recorded.items())
    md = (out / "summary.md").read_text()
    for row in (
        "alphaone: moment=4340 (alpha=1.4 x think_tokens=3100), word=Wait, seed=0, temperature=1",
        "affirm: tau=0.7, words=Wait+wait, scope=all",
        "nothinking: text='Okay, I think I have finished thinking.\\n' then the end marker",
        "inject: text='I should be brief.', after=start of reasoning",
    ):
        assert row in md, row


def test_each_changes_the_demo_models_output(tmp_path):
    from tip_decode.demo.run import harness_problems

    data = tmp_path / "demo.jsonl"
    data.write_text("".join(json.dumps({"question": p.question, "answer": p.answer}) + "\n" for p in harness_problems(6)))
    out = tmp_path / "run"
    # The demo vocabulary cannot write NoThinking's sentence ("none": the end marker alone); the
    # moment is below the baseline's thinking so that AlphaOne's fast phase has Waits to replace.
    specs = ["baseline", "alphaone:moment=10", "affirm", "nothinking:text=none", "inject:text=Alternatively"]
    recorded = compare(MODEL_DIR, data, out, specs, 60)
    assert recorded["nothinking"] == {"nothinking": 1, "nothinking_text": "none"}
    base = records(out, "baseline")
    assert all(r["prompt_open"] for r in base)
    assert all(r["response"].startswith("</think>") for r in records(out, "nothinking"))
    assert all(r["response"].startswith("Alternatively") for r in records(out, "inject"))
    for before, fast in zip(base, records(out, "alphaone")):
        thinking = fast["response"].split("</think>")[0].split()
        assert "Wait" not in thinking[10:], fast["response"]
        assert fast["token_ids"][:10] == before["token_ids"][:10]  # same seed, nothing changed before the moment
    assert any("Wait" in r["response"].split("</think>")[0].split()[10:] for r in base)  # the check can fail
