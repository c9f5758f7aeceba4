"""The llama-cpp-python processor on a real llama.cpp engine (CPU), against the slow reference.

The model is a tiny random-weight Qwen2 with the real qwen3 tokenizer, converted to GGUF by llama.cpp's
own converter inside the test session (tests/local_engines.py). Recorders placed before and after
the processor in one `LogitsProcessorList` see the raw and the processed logits of every step; their
difference must be the reference's (tests/reference_interventions.py) on the whole vocabulary, and
each greedy token the argmax of the expected logits.
"""

from __future__ import annotations

import subprocess
import sys

import local_engines
import numpy as np
import pytest
from local_engines import THINK_END, THINK_START, Recorder, check_trace
from reference_interventions import Reference

llama_cpp = local_engines.require("llama_cpp", "TIP_DECODE_REQUIRE_LLAMA_CPP", 'pip install "tip-decode[llama-cpp]" (builds llama.cpp from source)')
pytestmark = pytest.mark.slow

from tip_decode.core.interventions import InterventionSet  # noqa: E402
from tip_decode.llama_cpp import GGUFError, ReasoningInterventionsProcessor, gguf_tokenizer  # noqa: E402

MAX_TOKENS = 16
PROMPTS = [
    "<|im_start|>user\nSolve 2x + 3 = 11.<|im_end|>\n<|im_start|>assistant\n<think>\n",  # open think block
    "Question: how many primes are below 100?\nAnswer: <think>",  # open, no thinking token yet
    "The quick brown fox",  # no think block: think-scoped rules never act
]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, qwen3_tokenizer):
    return local_engines.tiny_gguf(tmp_path_factory, qwen3_tokenizer)


@pytest.fixture(scope="module")
def llm(tiny_gguf):
    engine = llama_cpp.Llama(str(tiny_gguf), n_ctx=512, n_threads=2, seed=0, verbose=False)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def reference(qwen3_tokenizer):
    return Reference(qwen3_tokenizer, gate_margin=1e-3)


def greedy(llm, prompt, processors, max_tokens=MAX_TOKENS, **kwargs):
    out = llm(prompt, max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0, logits_processor=llama_cpp.LogitsProcessorList(processors), **kwargs)
    return out


def generated_ids(llm, prompt_ids, processed: Recorder) -> list[int]:
    """The tokens the engine chose: each recorded history's newest token, plus the final argmax."""
    last = processed.histories[-1]
    return last[len(prompt_ids) :] + [int(np.argmax(processed.rows[-1]))]


@pytest.fixture(scope="module")
def words(llm, qwen3_tokenizer):
    """Words the tiny model actually says without interventions: triggers and keywords that fire."""
    found: list[str] = []
    for prompt in PROMPTS:
        text = greedy(llm, prompt, [])["choices"][0]["text"]
        for token in qwen3_tokenizer.encode(text):
            word = qwen3_tokenizer.decode([token]).strip().lower()
            if len(word) >= 3 and word.isascii() and word.isalpha() and word not in found:
                found.append(word)
    assert len(found) >= 3, found
    return found


def settings_cases(words: list[str]) -> list[InterventionSet]:
    return [
        InterventionSet.from_mapping({"tip_alpha": 3.0, "tip_beta": 5, "tip_triggers": words[:3]}),
        InterventionSet.from_mapping({"tip_alpha": 0.5, "tip_beta": 6, "tip_triggers": words[:3], "tip_scope": "all"}),
        InterventionSet.from_mapping({"nowait": 1, "nowait_keywords": words[:2] + ["wait"], "nowait_scope": "all"}),
        InterventionSet.from_mapping({"budget_min": 6, "budget_max": 10}),
        InterventionSet.from_mapping({"budget_min": 12, "budget_word": "Wait"}),
        InterventionSet.from_mapping({"cyclic_amplitude": 2.0, "cyclic_period": 6, "cyclic_words": ["Wait", "But", "Alternatively"]}),
        InterventionSet.from_mapping({"gated_alpha": 2.0, "gated_beta": 8, "gated_triggers": words[:3], "gated_scope": "all", "gated_threshold": 1e6}),
        InterventionSet.from_mapping(
            {"tip_alpha": "inf", "tip_beta": 4, "tip_triggers": words[:3], "nowait": 1, "nowait_keywords": [words[3 % len(words)]], "budget_max": 7}
        ),
        # Random weights: every margin and confidence is the model's, not tuned; a tau no margin
        # exceeds brakes at the first boundary (a token text ending in one of these letters), a
        # threshold above every confidence stops the trace as soon as the window is full.
        InterventionSet.from_mapping({"thinkbrake_tau": 1e4, "thinkbrake_boundary": ["e", "a", "o", "s", "t"]}),
        InterventionSet.from_mapping({"deepconf_threshold": 1e6, "deepconf_window": 5}),
        InterventionSet.from_mapping({"deepconf_threshold": 1e6, "deepconf_window": 3, "budget_min": 6}),  # the budget's ban on the end wins
        # issue 21: a low-probability word banned, AlphaOne's both phases, a text forced after a
        # trigger the model says, NoThinking, and a combination with a budget's maximum.
        InterventionSet.from_mapping({"affirm_words": [w.capitalize() for w in words[:3]] + words[:3], "affirm_tau": 0.5}),
        InterventionSet.from_mapping({"alphaone_moment": 5, "alphaone_temperature": 0.7}),
        InterventionSet.from_mapping({"inject_text": " I should be brief.", "inject_after": words[0]}),
        InterventionSet.from_mapping({"nothinking": 1}),
        InterventionSet.from_mapping({"inject_text": " Fine.\n\n", "alphaone_moment": 9, "alphaone_seed": 2, "affirm_words": ["Hmm"], "budget_max": 12}),
    ]


def test_every_intervention_matches_the_reference_step_for_step(llm, qwen3_tokenizer, reference, words):
    """One processor instance per settings, reused over every prompt (each call a new generation)."""
    changed = new_rules = 0
    for settings in settings_cases(words):
        processor = ReasoningInterventionsProcessor(llm, settings)
        for prompt in PROMPTS:
            raw, processed = Recorder(), Recorder()
            greedy(llm, prompt, [raw, processor, processed])
            prompt_ids = qwen3_tokenizer.encode(prompt)
            generated = generated_ids(llm, prompt_ids, processed)
            acted = check_trace(reference, settings, prompt_ids, raw, processed, generated, (THINK_START, THINK_END))
            changed += acted
            if settings.thinkbrake is not None or settings.deepconf is not None:
                new_rules += acted
    assert changed >= 40, changed
    assert new_rules >= 4, new_rules


def test_repeated_calls_through_every_entry_point(llm, qwen3_tokenizer, reference, words):
    """`__call__`, `create_completion` (the same prompt again: llama.cpp reuses its cache; a longer
    prompt that extends the previous one), `create_chat_completion`: each call is a new generation."""
    settings = InterventionSet.from_mapping({"tip_alpha": 2.0, "tip_beta": 8, "tip_triggers": words[:3], "budget_min": 5})
    processor = ReasoningInterventionsProcessor(llm, settings)
    calls = [
        ("call", PROMPTS[0]),
        ("completion", PROMPTS[0]),
        ("completion", PROMPTS[0] + "Let me think."),
        ("chat", [{"role": "user", "content": "Solve 2x + 3 = 11."}]),
        ("call", PROMPTS[1]),
    ]
    for kind, prompt in calls:
        raw, processed = Recorder(), Recorder()
        processors = llama_cpp.LogitsProcessorList([raw, processor, processed])
        if kind == "chat":
            llm.create_chat_completion(messages=prompt, max_tokens=MAX_TOKENS, temperature=0.0, repeat_penalty=1.0, logits_processor=processors)
            prompt_ids = raw.histories[0]
        else:
            (llm if kind == "call" else llm.create_completion)(prompt, max_tokens=MAX_TOKENS, temperature=0.0, repeat_penalty=1.0, logits_processor=processors)
            prompt_ids = qwen3_tokenizer.encode(prompt)
        assert raw.histories[0] == prompt_ids, kind
        check_trace(reference, settings, prompt_ids, raw, processed, generated_ids(llm, prompt_ids, processed), (THINK_START, THINK_END))


def test_same_biases_as_the_hugging_face_processor(llm, qwen3_tokenizer, words):
    """The HF processor fed the same histories and raw logits writes the same values."""
    import torch

    from tip_decode.hf import ReasoningInterventionsProcessor as HFProcessor

    for settings in settings_cases(words):
        ours = ReasoningInterventionsProcessor(llm, settings)
        raw, processed = Recorder(), Recorder()
        greedy(llm, PROMPTS[0], [raw, ours, processed])
        theirs = HFProcessor(qwen3_tokenizer, settings)
        for history, before, after in zip(raw.histories, raw.rows, processed.rows):
            got = theirs(torch.tensor([history]), torch.from_numpy(before.copy())[None])
            assert torch.equal(got[0], torch.from_numpy(after)), settings.names


def test_gguf_vocabulary_equals_the_tokenizer_it_came_from(tiny_gguf, llm, qwen3_tokenizer, data_dir):
    """Pieces, think markers, end-of-sequence id and encodings (against tokenizer.json and against
    llama.cpp's own tokenizer) of the vocabulary read from the GGUF file."""
    import json

    from tip_decode.core.vocabulary import SwitchVocabulary, ThinkMarkers, view_of

    vocab = gguf_tokenizer(tiny_gguf)
    assert gguf_tokenizer(tiny_gguf) is vocab  # cached per file
    assert vocab.eos_token_id == [qwen3_tokenizer.eos_token_id]
    assert ThinkMarkers.from_tokenizer(vocab) == ThinkMarkers.from_tokenizer(qwen3_tokenizer)
    ours, theirs = view_of(vocab).token_texts(), view_of(qwen3_tokenizer).token_texts()
    assert ours.text[: len(qwen3_tokenizer)] == theirs.text[: len(qwen3_tokenizer)]
    texts = [json.loads(line)["problem"] for line in (data_dir / "math500.jsonl").read_text().splitlines()[:100]]
    texts.append("Wait,\n\nAlternatively  12345 don't WE'LL 日本語 <think>\nHmm</think>")
    for text in texts:
        ids = vocab.encode(text, add_special_tokens=False).ids
        assert ids == qwen3_tokenizer.encode(text, add_special_tokens=False), text
        assert ids == llm.tokenize(text.encode(), add_bos=False, special=True), text
    for triggers in (("alternatively",), ("wait", "hmm", "but")):
        assert SwitchVocabulary.from_tokenizer(vocab, triggers).penalised_ids == SwitchVocabulary.from_tokenizer(qwen3_tokenizer, triggers).penalised_ids


def test_bad_sources_fail_clearly(tmp_path, llm):
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(GGUFError, match="is not a GGUF file"):
        ReasoningInterventionsProcessor(not_gguf, {"tip_alpha": 3})
    from tip_decode.adapters.gguf import build_tokenizer

    with pytest.raises(GGUFError, match="pass the model's Hugging Face tokenizer"):
        build_tokenizer({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["<unk>", "▁a"]})
    with pytest.raises(TypeError, match="tokenizer"):
        ReasoningInterventionsProcessor(object(), {"tip_alpha": 3})
    with pytest.raises(ValueError, match="tip_alpha"):
        ReasoningInterventionsProcessor(llm, {"tip_alpha": -1})
    draft = llama_cpp.Llama(
        llm.model_path, n_ctx=64, verbose=False, draft_model=__import__("llama_cpp.llama_speculative", fromlist=["x"]).LlamaPromptLookupDecoding()
    )
    with pytest.raises(ValueError, match="draft model"):
        ReasoningInterventionsProcessor(draft, {"tip_alpha": 3})
    off = ReasoningInterventionsProcessor(llm, {})
    scores = np.arange(5, dtype=np.float32)
    assert off(np.array([1, 2]), scores) is scores


def test_import_is_light_and_a_missing_engine_is_one_line():
    light = "import sys, tip_decode.llama_cpp; print(sorted(m for m in ('transformers', 'vllm', 'sglang', 'mlx') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", light], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    missing = "import sys; sys.modules['llama_cpp'] = None\ntry:\n import tip_decode.llama_cpp\nexcept ImportError as e: print(e)"
    done = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True, check=True)
    assert done.stdout == 'tip_decode.llama_cpp needs llama-cpp-python: pip install "tip-decode[llama-cpp]"\n'


def test_docs_example_runs(tiny_gguf):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "llama-cpp.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block.replace('"model.gguf"', repr(str(tiny_gguf))), str(page), "exec"), {})


def test_a_forced_token_an_earlier_processor_bans_leaves_the_row(llm, qwen3_tokenizer):
    """The budget's maximum would force </think>; a processor before ours bans it: the row is left as
    that processor made it (no forcing, no revival of the banned token, never NaN), the core's rule."""

    def ban_think_end(_tokens, scores):
        scores[THINK_END] = -np.inf
        return scores

    prompt = PROMPTS[1]  # ends inside an open think block
    free = Recorder()
    greedy(llm, prompt, [ReasoningInterventionsProcessor(llm, {"budget_max": 2}), free], max_tokens=4)
    assert int(np.argmax(free.rows[2])) == THINK_END  # the budget alone forces </think> at 2 tokens
    raw, processed = Recorder(), Recorder()
    greedy(llm, prompt, [ban_think_end, raw, ReasoningInterventionsProcessor(llm, {"budget_max": 2}), processed], max_tokens=4)
    for after in processed.rows:
        assert not np.isnan(after).any() and np.isfinite(after).any()
        assert after[THINK_END] == -np.inf
    np.testing.assert_array_equal(processed.rows[2], raw.rows[2])  # the forcing step: left as it arrived
