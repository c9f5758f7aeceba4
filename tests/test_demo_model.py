"""The shipped demo model: loads offline with plain transformers, solves the task, and really switches.

The minimums below are stated well under the numbers recorded in tip_decode/demo/model/TRAINING.json
(the 95% interval of a 200-problem sample is about +-7 points), so that a broken or retrained-badly
model fails here while sampling noise does not.
"""

from __future__ import annotations

import json

import pytest

from tip_decode import SwitchVocabulary, TIPConfig
from tip_decode.demo import MODEL_DIR
from tip_decode.demo.evaluate import DEMO_TRIGGERS, sample, score
from tip_decode.demo.task import make_problems

MIN_ACCURACY = 0.50
MIN_SWITCHES_PER_RESPONSE = 1.0
MIN_VALID_WALKS = 0.40
HELD_OUT = 200


@pytest.fixture(scope="module")
def demo_model(monkeypatch_module):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")  # loading must never need the network
    torch.set_num_threads(1)  # a tiny model: more threads only add overhead (see tip_decode/demo/run.py)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def baseline(demo_model):
    model, tokenizer = demo_model
    problems = make_problems(HELD_OUT)
    responses = sample(model, tokenizer, problems, seed=0)
    return problems, responses, score(tokenizer, problems, responses)


def test_shipped_files_are_small_and_documented():
    weights = MODEL_DIR / "model.safetensors"
    assert weights.is_file()
    assert weights.stat().st_size <= 10 * 1024 * 1024
    record = json.loads((MODEL_DIR / "TRAINING.json").read_text())
    # The shipped files come from a complete run of the recorded command (not one stopped early).
    assert record["steps_done"] == record["steps"]
    assert record["command"].startswith("python -m tip_decode.demo.train")
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == record["architecture"]["model_type"]


def test_switch_words_and_think_markers_are_single_tokens(demo_model):
    _, tokenizer = demo_model
    vocab = SwitchVocabulary.from_tokenizer(tokenizer, DEMO_TRIGGERS)
    # token_text is a token's text in the middle of a sequence: word-level pieces read " Wait".
    assert [vocab.token_text[i] for i in vocab.token_ids] == [" Alternatively", " Wait"]
    assert vocab.multi_token == ()
    assert vocab.think.available and vocab.default_scope() == "think"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "start 1 goal 2 steps +1"}], add_generation_prompt=True)
    ids = prompt["input_ids"] if isinstance(prompt, dict) or hasattr(prompt, "keys") else prompt
    assert ids[-1] == vocab.think.start_id  # the prompt ends inside an open think block


def test_baseline_solves_held_out_problems_and_switches(baseline):
    _, _, result = baseline
    assert result.accuracy >= MIN_ACCURACY, result
    assert result.switches_per_response >= MIN_SWITCHES_PER_RESPONSE, result
    assert result.valid_walks >= MIN_VALID_WALKS, result  # answers come from walks that follow the rule


def test_tip_changes_the_switching_measurably(demo_model, baseline):
    model, tokenizer = demo_model
    problems, _, base = baseline
    banned = TIPConfig(alpha="inf", beta=1000, triggers=DEMO_TRIGGERS)
    result = score(tokenizer, problems, sample(model, tokenizer, problems, tip=banned, seed=0))
    # With switch words banned for the whole response, none may appear.
    assert result.switches_per_response == 0.0
    assert base.switches_per_response > 0.5
