"""User text becomes ids one way: as the tokenizer's own tokenizer.json encodes it.

transformers 5 loads the DeepSeek-R1 distills' tokenizers with a pre-tokenizer and decoder that are
not byte-level although their vocabulary is (huggingface/transformers#45488): the loaded tokenizer
drops spaces (" Wait" -> "Wait", " Let me double-check" -> "Letmedouble-check") and cannot encode
some characters at all ("☃" -> nothing). Trigger words always went through the repaired view;
`budget_word` (every text a rule forces) and `TokenizerView.encode` now do too. The truth here is
the tokenizer.json file read by `tokenizers` itself, and greedy generation writes the text asked for.
"""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_qwen2, load_hf_tokenizer, load_raw_tokenizer

from tip_decode.core.interventions import BudgetConfig, InterventionSet, plan_for
from tip_decode.core.vocabulary import ThinkMarkers, view_of

DISTILLS = ("deepseek-r1-distill-qwen", "deepseek-r1-distill-llama")
TEXTS = (" Let me double-check", " Wait", "Wait", "☃", " Hmm, wait.\n\nSo")


@pytest.mark.parametrize("name", [*DISTILLS, "qwen3", "llama-3.1", "mistral-7b-v0.1"])
def test_user_text_is_encoded_as_tokenizer_json_says(name):
    tokenizer, raw = load_hf_tokenizer(name), load_raw_tokenizer(name)
    view = view_of(tokenizer)
    for text in TEXTS:
        expected = raw.encode(text, add_special_tokens=False).ids
        assert view.encode(text) == expected, (name, text)
        if not ThinkMarkers.from_tokenizer(view).available:
            continue  # a budget needs think markers
        plan = plan_for(tokenizer, InterventionSet(budget=BudgetConfig(min=5, word=text)))
        assert plan.rule("budget").word_ids == tuple(expected), (name, text)


def test_the_distill_tokenizers_ids_are_those_of_the_file():
    """The ids the file gives, whatever transformers' loader does (it gave 10061, 2061, 1201,
    15934 for the first text, and [] for the snowman, under transformers 5.x)."""
    tokenizer = load_hf_tokenizer("deepseek-r1-distill-qwen")
    view = view_of(tokenizer)
    assert view.encode(" Let me double-check") == [6771, 752, 1990, 15934]
    assert view.encode(" Wait") == [13824] and view.encode("Wait") == [14190]
    assert view.encode("☃") == [146024]


def test_a_forced_text_that_cannot_be_forced_says_why():
    tokenizer = load_hf_tokenizer("qwen3")
    with pytest.raises(ValueError, match=r"`budget_word` has to encode to ordinary tokens, but encodes to special tokens or think markers \[151668\]"):
        plan_for(tokenizer, InterventionSet(budget=BudgetConfig(min=5, word="ok </think>")))


@pytest.fixture(scope="module")
def ends_thinking_model(tmp_path_factory):
    """A tiny Qwen2 on the R1-Distill-Qwen vocabulary that always wants to close its think block:
    every token embedding is one vector, so the last hidden state is fixed, and the output layer
    gives `</think>` a large logit and every other token 0."""
    from transformers import AutoModelForCausalLM

    path = build_tiny_qwen2(tmp_path_factory.mktemp("ends-thinking"), tokenizer_name="deepseek-r1-distill-qwen")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    raw = load_raw_tokenizer("deepseek-r1-distill-qwen")
    with torch.no_grad():
        embed = model.model.embed_tokens.weight
        embed.copy_(embed[0].expand_as(embed))
        hidden = model.model(torch.tensor([[1, 2, 3]])).last_hidden_state[0, -1]
        unit = hidden / hidden.norm() ** 2  # lm_head row r = s * unit gives logit s
        model.lm_head.weight.mul_(0.0)
        model.lm_head.weight[raw.token_to_id("</think>")] = 40.0 * unit
    return model


def test_greedy_generation_writes_the_forced_text(ends_thinking_model):
    """s1 budget forcing with a word: below the minimum, where the model wants to end thinking, the
    word is forced instead, token by token. With the loaded distill tokenizer the word used to be
    forced as "Letmedouble-check"; it reads as the text asked for."""
    from tip_decode.hf import ReasoningInterventionsProcessor

    tokenizer, raw = load_hf_tokenizer("deepseek-r1-distill-qwen"), load_raw_tokenizer("deepseek-r1-distill-qwen")
    word = " Let me double-check"
    prompt = torch.tensor([raw.encode("Is 91 prime?<think>\n", add_special_tokens=False).ids])
    processor = ReasoningInterventionsProcessor(tokenizer, {"budget_min": 12, "budget_word": word})
    out = ends_thinking_model.generate(
        input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=13,
        logits_processor=[processor], pad_token_id=raw.token_to_id("</think>"),
    )  # fmt: skip
    generated = out[0, prompt.shape[1] :].tolist()
    # 1 prompt token inside the block + 4 tokens per word: the third word reaches the minimum of 12.
    assert raw.decode(generated, skip_special_tokens=False) == word * 3 + "</think>"
    assert generated[:4] == [6771, 752, 1990, 15934]
