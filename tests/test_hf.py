"""TIPLogitsProcessor inside real `generate` calls on a tiny random-weight Qwen2 with the real Qwen3 tokenizer.

Every call of the processor is checked against the slow reference: a recording processor placed just
before TIP and one just after it see the same input_ids; their scores must differ by exactly -alpha on
the ids the reference names for that row and step, and not at all elsewhere. A real
`SequenceBiasLogitsProcessor` placed first makes switch words, multi-token prefixes and think markers
likely, so that switches happen and the window opens and closes many times.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_tiny_qwen2, load_hf_tokenizer
from reference import penalised
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList, SequenceBiasLogitsProcessor

from tip_decode import SwitchVocabulary
from tip_decode.hf import TIPLogitsProcessor

TRIGGERS = ("alternatively", "hmm")
PROMPTS = [
    "Solve 2+3.<think>\n",  # ends inside an open think block: reasoning starts at once
    "Question: what is seven times six? Think step by step.",  # waits for a generated <think>
    "<think>short</think> Now answer briefly:",  # closed block in the prompt
]


class Recorder(LogitsProcessor):
    """Records what a position in the processor list sees; changes nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, input_ids, scores):
        self.calls.append((input_ids.clone(), scores.clone()))
        return scores


@pytest.fixture(scope="module")
def tokenizer():
    return load_hf_tokenizer("qwen3")


@pytest.fixture(scope="module")
def model(tiny_qwen2_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).eval()


def bias(tokenizer) -> SequenceBiasLogitsProcessor:
    ids = {
        " Alternatively": 9.0,
        "Alternatively": 8.0,
        "altern": 8.5,
        "atively": 7.0,
        " h": 6.0,
        "h": 7.5,
        "mm": 7.0,
        "<think>": 8.0,
        "</think>": 4.0,
        ".": 7.5,
        " the": 7.0,
    }
    pairs = []
    for text, value in ids.items():
        token = tokenizer.encode(text, add_special_tokens=False)
        assert len(token) == 1, text
        pairs.append([token, value])
    return SequenceBiasLogitsProcessor(sequence_bias=pairs)


def prompt_open(prompt: list[int], vocab: SwitchVocabulary) -> bool:
    starts = [i for i, t in enumerate(prompt) if t == vocab.think.start_id]
    ends = [i for i, t in enumerate(prompt) if t == vocab.think.end_id]
    return bool(starts) and (not ends or starts[-1] > ends[-1])


def check_against_reference(before: Recorder, after: Recorder, tip: TIPLogitsProcessor, prompt_len: int) -> tuple[int, int]:
    """Returns (row-steps checked, row-steps where the penalty acted)."""
    checked = fired = 0
    alpha, beta = tip.config.alpha, tip.config.beta
    assert len(before.calls) == len(after.calls) > 0
    for (ids, raw), (ids_after, processed) in zip(before.calls, after.calls):
        assert torch.equal(ids, ids_after)
        for row in range(ids.shape[0]):
            prompt, generated = ids[row, :prompt_len].tolist(), ids[row, prompt_len:].tolist()
            expected_ids = penalised(tip.vocabulary, tip.scope, prompt_open(prompt, tip.vocabulary), generated, len(generated), beta)
            expected = raw[row].clone()
            if expected_ids:
                index = torch.tensor(sorted(expected_ids))
                expected[index] = expected[index] - alpha if not math.isinf(alpha) else -math.inf
            assert torch.equal(processed[row], expected), f"row {row} after {len(generated)} tokens"
            checked += 1
            fired += bool(expected_ids)
    return checked, fired


def encode(tokenizer, prompts):
    return tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")


def run(model, tokenizer, tip, prompts=PROMPTS, **kwargs):
    before, after = Recorder(), Recorder()
    inputs = encode(tokenizer, prompts)
    kwargs.setdefault("max_new_tokens", 40)
    out = model.generate(
        **inputs,
        logits_processor=LogitsProcessorList([bias(tokenizer), before, tip, after]),
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    return out, before, after, inputs["input_ids"].shape[1]


@pytest.mark.parametrize("beta", [3, 600])
def test_greedy_batch_with_left_padding_matches_reference(model, tokenizer, beta):
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=beta, triggers=TRIGGERS)
    assert tip.scope == "think"
    _, before, after, prompt_len = run(model, tokenizer, tip, do_sample=False)
    checked, fired = check_against_reference(before, after, tip, prompt_len)
    assert checked == 3 * 40 and 0 < fired < checked


def test_sampling_with_several_return_sequences(model, tokenizer):
    torch.manual_seed(0)
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=2.0, beta=4, triggers=TRIGGERS)
    out, before, after, prompt_len = run(model, tokenizer, tip, do_sample=True, num_return_sequences=3, top_k=0)
    assert out.shape[0] == 9
    checked, fired = check_against_reference(before, after, tip, prompt_len)
    assert 0 < fired < checked


@pytest.mark.parametrize("do_sample", [False, True])
def test_beam_search_rows_are_followed_through_reordering(model, tokenizer, do_sample):
    torch.manual_seed(1)
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=1.5, beta=5, triggers=TRIGGERS)
    _, before, after, prompt_len = run(model, tokenizer, tip, num_beams=4, num_return_sequences=2, do_sample=do_sample, max_new_tokens=30)
    # beam search really reordered rows at some step (otherwise this test would prove nothing)
    reordered = any(not torch.equal(ids[:, :-1], prev_ids) for (prev_ids, _), (ids, _) in zip(before.calls, before.calls[1:]))
    assert reordered
    checked, fired = check_against_reference(before, after, tip, prompt_len)
    assert 0 < fired < checked


def test_scope_all_and_infinite_alpha(model, tokenizer):
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=float("inf"), beta=6, triggers=TRIGGERS, scope="all")
    out, before, after, prompt_len = run(model, tokenizer, tip, do_sample=False)
    checked, fired = check_against_reference(before, after, tip, prompt_len)
    assert 0 < fired < checked
    for _, processed in after.calls:
        assert not torch.isnan(processed).any()


def test_assisted_decoding_is_followed_through_rollbacks(model, tokenizer, tmp_path):
    assistant = AutoModelForCausalLM.from_pretrained(build_tiny_qwen2(tmp_path / "assistant", seed=7)).eval()
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=2.0, beta=5, triggers=TRIGGERS)
    torch.manual_seed(0)
    _, before, after, prompt_len = run(model, tokenizer, tip, prompts=PROMPTS[:1], assistant_model=assistant, do_sample=False, max_new_tokens=30)
    lengths = [ids.shape[1] for ids, _ in before.calls]
    assert any(b <= a for a, b in zip(lengths, lengths[1:]))  # the processor really saw rollbacks
    checked, fired = check_against_reference(before, after, tip, prompt_len)
    assert 0 < fired < checked


def test_one_instance_serves_consecutive_generate_calls(model, tokenizer):
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=4, triggers=TRIGGERS)
    first_prompts = ["Hi <think>", "Solve it."]
    _, before, after, prompt_len = run(model, tokenizer, tip, prompts=first_prompts, do_sample=False, max_new_tokens=20)
    check_against_reference(before, after, tip, prompt_len)
    # A second call whose prompt is longer than the first prompt but shorter than prompt + output, same batch
    # size: shapes alone could read this as a continuation; the processor must start over.
    longer = [p + " and then some more words here" for p in first_prompts]
    assert prompt_len < encode(tokenizer, longer)["input_ids"].shape[1] < prompt_len + 20
    _, before, after, prompt_len = run(model, tokenizer, tip, prompts=longer, do_sample=False, max_new_tokens=20)
    _, fired = check_against_reference(before, after, tip, prompt_len)
    # ... and a third with a different batch size.
    _, before, after, prompt_len = run(model, tokenizer, tip, do_sample=False, max_new_tokens=20)
    _, fired3 = check_against_reference(before, after, tip, prompt_len)
    assert fired + fired3 > 0


def test_processed_minus_raw_logits_is_minus_alpha_on_the_reference_ids(model, tokenizer):
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=2.5, beta=600, triggers=TRIGGERS, scope="all")
    inputs = encode(tokenizer, PROMPTS)
    out = model.generate(
        **inputs,
        logits_processor=[tip],
        do_sample=False,
        max_new_tokens=12,
        output_logits=True,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    prompt_len = inputs["input_ids"].shape[1]
    for step, (raw, processed) in enumerate(zip(out.logits, out.scores)):
        for row in range(raw.shape[0]):
            generated = out.sequences[row, prompt_len : prompt_len + step].tolist()
            expected_ids = sorted(penalised(tip.vocabulary, "all", False, generated, step, 600))
            assert expected_ids  # scope "all", window open from position 0
            diff = processed[row] - raw[row]
            assert torch.equal(diff[expected_ids], torch.full((len(expected_ids),), -2.5))
            mask = torch.ones_like(diff, dtype=torch.bool)
            mask[expected_ids] = False
            assert torch.equal(processed[row][mask], raw[row][mask])


@pytest.mark.parametrize("alpha, beta", [(0.0, 600), (3.0, 0)])
@pytest.mark.parametrize("do_sample", [False, True])
def test_alpha_or_beta_zero_is_bit_identical_to_no_processor(model, tokenizer, alpha, beta, do_sample):
    inputs = encode(tokenizer, PROMPTS)
    common = dict(do_sample=do_sample, max_new_tokens=15, output_scores=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(3)
    plain = model.generate(**inputs, logits_processor=[bias(tokenizer)], **common)
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=alpha, beta=beta, triggers=TRIGGERS)
    torch.manual_seed(3)
    with_tip = model.generate(**inputs, logits_processor=[bias(tokenizer), tip], **common)
    assert torch.equal(plain.sequences, with_tip.sequences)
    for a, b in zip(plain.scores, with_tip.scores):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_penalty_changes_greedy_output(model, tokenizer):
    inputs = encode(tokenizer, PROMPTS)
    common = dict(do_sample=False, max_new_tokens=20, pad_token_id=tokenizer.pad_token_id)
    plain = model.generate(**inputs, logits_processor=[bias(tokenizer)], **common)
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=5.0, beta=600, triggers=TRIGGERS)
    with_tip = model.generate(**inputs, logits_processor=[bias(tokenizer), tip], **common)
    assert not torch.equal(plain, with_tip)


def test_constructor_errors_name_the_problem(tokenizer):
    with pytest.raises(ValueError, match="`alpha` has to be a non-negative number"):
        TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=-1)
    with pytest.raises(ValueError, match="`beta` has to be a non-negative integer"):
        TIPLogitsProcessor.from_tokenizer(tokenizer, beta=1.5)
    with pytest.raises(ValueError, match="`scope` has to be one of"):
        TIPLogitsProcessor.from_tokenizer(tokenizer, scope="answer")
    with pytest.raises(ValueError, match="`triggers` has to name at least one"):
        TIPLogitsProcessor.from_tokenizer(tokenizer, triggers=[])
    with pytest.raises(TypeError, match="`vocabulary` has to be a SwitchVocabulary"):
        TIPLogitsProcessor(tokenizer)
    with pytest.raises(TypeError, match="expected a Hugging Face tokenizer"):
        TIPLogitsProcessor.from_tokenizer("Qwen/QwQ-32B")
    with pytest.raises(ValueError, match="no single-token think markers"):
        TIPLogitsProcessor.from_tokenizer(load_hf_tokenizer("qwen2.5"), scope="think")
