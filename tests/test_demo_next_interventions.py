"""Issue 21's interventions on the GENERATED TEXT of the shipped demo model: `tip-decode demo -c ...`
with the `hf` backend (real `generate` through tip-decode's Hugging Face processor, the same
per-sample seeds for every configuration, so a configuration's output equals the baseline's up to
the first step whose logits it changed).

- AlphaOne shortens reasoning: past its alpha moment the model's "Wait" becomes `</think>`. The demo
  vocabulary has none of AlphaOne's delimiters ("\\n\\n", ".\\n\\n", ...), so the slow phase never
  inserts a word and every response is the baseline's up to the moment (asserted: that is the
  reading "a delimiter is a token whose text is exactly one of the code's delimiters").
- NoThinking removes the reasoning: the first token is `</think>` (`nothinking_text=none`: the
  paper's sentence cannot be written in this vocabulary, and the default is refused in one line).
- Self-affirmation suppression removes the low-probability Waits (p < tau under the model) and keeps
  the likelier ones (at tau 0.1: the demo model's Waits are all below the paper's 0.7).
- Thinking intervention writes its text where the docs say: the first reasoning token by default,
  right after the trigger text with `inject_after`.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from tip_decode.cli import main
from tip_decode.demo import MODEL_DIR

PROBLEMS = 24
#: The alpha moment: well below the baseline's mean thinking length on these problems (about 47
#: tokens; walks last about 13), so most responses still switch after it and phase 2 has Waits to
#: turn into `</think>` (asserted below, so the test can fail).
MOMENT = 20
CONFIGS = {
    "baseline": "baseline",
    "alphaone": f"alphaone:moment={MOMENT}",
    "affirm": "affirm",
    "low": "low=affirm:tau=0.1",
    "nothinking": "nothinking:text=none",
    "inject": "inject:text=Alternatively",
    "after": "after=inject:text=Alternatively,after=Wait",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo21b")
    args = ["demo", "--backend", "hf", "--out", str(out), "--problems", str(PROBLEMS), "--quiet"]
    result = CliRunner().invoke(main, args + [arg for spec in CONFIGS.values() for arg in ("-c", spec)])
    assert result.exit_code == 0, result.output
    records = {name: [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()] for name in CONFIGS}
    for rows in records.values():
        rows.sort(key=lambda r: r["id"])
        assert len(rows) == PROBLEMS and all(r["prompt_open"] for r in rows)  # prompts end inside <think>
    return out, records


@pytest.fixture(scope="module")
def vocab():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    return tokenizer, tokenizer.get_vocab()


def thinking(record: dict, end: int) -> list[int]:
    """The generated reasoning (the prompt opens the think block): the tokens before `</think>`."""
    ids = list(record["token_ids"])
    return ids[: ids.index(end)] if end in ids else ids


def test_alphaone_turns_late_waits_into_the_end_of_thinking(demo, vocab):
    _, records = demo
    tokenizer, v = vocab
    end, wait = v["</think>"], v["Wait"]
    from tip_decode.core.interventions.alphaone import DELIMITERS

    assert not set(DELIMITERS) & set(v)  # no delimiter: the slow phase never fires on this model
    late_waits = 0
    for base, fast in zip(records["baseline"], records["alphaone"]):
        assert fast["token_ids"][:MOMENT] == base["token_ids"][:MOMENT], base["id"]
        assert wait not in thinking(fast, end)[MOMENT:], tokenizer.decode(fast["token_ids"])
        late_waits += wait in thinking(base, end)[MOMENT:]
    assert late_waits >= PROBLEMS // 2, late_waits
    base_len = [len(thinking(r, end)) for r in records["baseline"]]
    fast_len = [len(thinking(r, end)) for r in records["alphaone"]]
    assert sum(fast_len) < 0.85 * sum(base_len), (sum(fast_len), sum(base_len))
    assert all(end in r["token_ids"] for r in records["alphaone"])


def test_nothinking_removes_the_reasoning(demo, vocab):
    out, records = demo
    _, v = vocab
    for record in records["nothinking"]:
        assert record["token_ids"][0] == v["</think>"] and v["\\boxed{"] in record["token_ids"], record["response"]
    summary = json.loads((out / "summary.json").read_text())["configs"]
    assert summary["nothinking"]["mean_thinking_tokens"] == 0 < summary["baseline"]["mean_thinking_tokens"]
    # The paper's sentence does not exist in the demo's vocabulary: refused in one line, exit 2.
    result = CliRunner().invoke(main, ["demo", "--out", str(out / "refused"), "-n", "1", "-q", "-c", "nothinking"])
    assert result.exit_code == 2 and "nothinking.text has to encode to ordinary tokens" in result.output, result.output
    assert "Traceback" not in result.output


def test_affirm_removes_the_low_probability_waits(demo, vocab):
    """Every Wait affirm lets through had p >= tau under the model at its step. The demo model's
    Waits are all unlikely (it switches at random, p about 0.01-0.17 at its Waits): at the paper's
    0.7 none gets through; at tau 0.1 those at 0.1 or more get through and the others do not. The
    baseline, on the same seeds, writes many below each (so the checks can fail)."""
    from tip_decode.harness.backend_base import load_hf_causal_lm

    _, records = demo
    tokenizer, v = vocab
    wait = v["Wait"]
    model = load_hf_causal_lm(str(MODEL_DIR), dtype=torch.float32).eval()

    def wait_probabilities(record: dict) -> list[float]:
        prompt = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
        ids = list(record["token_ids"])
        with torch.no_grad():
            logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : len(prompt) - 1 + len(ids)]
        probs = torch.softmax(logits.float(), dim=-1)
        return [float(probs[t, wait]) for t, token in enumerate(ids) if token == wait]

    base = [p for r in records["baseline"] for p in wait_probabilities(r)]
    for name, tau in (("affirm", 0.7), ("low", 0.1)):
        kept = [p for r in records[name] for p in wait_probabilities(r)]
        assert all(p >= tau - 1e-4 for p in kept), (name, sorted(kept)[:5])
        assert sum(p < tau for p in base) >= 10, (name, sorted(base))
        assert len(kept) < len(base), (name, len(kept), len(base))
        if name == "low":
            assert kept, "no Wait above 0.1 got through: the test shows nothing kept"
    # "Alternatively" is not one of affirm's words: the model still switches with it.
    assert any(v["Alternatively"] in r["token_ids"] for r in records["affirm"])


def test_inject_writes_its_text_where_the_docs_say(demo, vocab):
    _, records = demo
    _, v = vocab
    end, wait, text = v["</think>"], v["Wait"], v["Alternatively"]
    # Default anchor: the first reasoning token.
    assert all(r["token_ids"][0] == text for r in records["inject"])
    # After a trigger: the baseline's output up to its first "Wait" (nothing changed before), then the text.
    triggered = 0
    for base, after in zip(records["baseline"], records["after"]):
        reasoning = thinking(base, end)
        if wait not in reasoning:
            assert after["token_ids"] == base["token_ids"]
            continue
        cut = reasoning.index(wait) + 1
        assert after["token_ids"][:cut] == base["token_ids"][:cut] and after["token_ids"][cut] == text, base["id"]
        triggered += 1
    assert triggered >= PROBLEMS // 2, triggered
