"""The mlx-lm processor on a real mlx-lm engine (MLX's CPU backend), against the slow reference.

mlx-lm loads the shipped demo model folder as it is (a tiny Qwen2 that writes "Wait" and
"Alternatively" between walks, with `<think>` markers). Recorders placed before and after the
processor see each step's raw and processed logits; their difference must be the reference's
(tests/reference_interventions.py) on the whole vocabulary, and each greedy token the argmax of the
expected logits: for `generate`, `stream_generate`, repeated calls, and every row of a batch.
"""

from __future__ import annotations

import subprocess
import sys

import local_engines
import numpy as np
import pytest
from local_engines import Recorder, check_trace
from reference_interventions import Reference

mx = local_engines.require("mlx.core", "TIP_DECODE_REQUIRE_MLX", 'pip install "tip-decode[mlx]" (Linux: mlx[cpu]) and mlx-lm')
mlx_lm = local_engines.require("mlx_lm", "TIP_DECODE_REQUIRE_MLX", "pip install mlx-lm")
pytestmark = pytest.mark.slow

from tip_decode.core.interventions import InterventionSet  # noqa: E402
from tip_decode.demo import MODEL_DIR  # noqa: E402
from tip_decode.demo.task import make_problems  # noqa: E402
from tip_decode.mlx import ReasoningInterventionsProcessor  # noqa: E402

MAX_TOKENS = 40
THINK_START, THINK_END = 5, 6  # the demo tokenizer's <think> and </think>

SETTINGS = [
    InterventionSet.from_mapping({"tip_alpha": 3.0, "tip_beta": 12, "tip_triggers": ["Alternatively", "Wait"]}),
    InterventionSet.from_mapping({"tip_alpha": "inf", "tip_beta": 6, "tip_triggers": ["Wait"], "tip_scope": "all"}),
    InterventionSet.from_mapping({"nowait": 1, "nowait_keywords": ["wait"]}),
    InterventionSet.from_mapping({"budget_min": 30}),
    InterventionSet.from_mapping({"budget_max": 9}),
    InterventionSet.from_mapping({"budget_min": 35, "budget_word": "Wait"}),
    InterventionSet.from_mapping({"cyclic_amplitude": 2.0, "cyclic_period": 8, "cyclic_words": ["Wait", "Alternatively"]}),
    InterventionSet.from_mapping({"gated_alpha": 2.0, "gated_beta": 20, "gated_triggers": ["Alternatively", "Wait"], "gated_threshold": 0.5}),
    InterventionSet.from_mapping(
        {"tip_alpha": 1.5, "tip_beta": 10, "tip_triggers": ["Alternatively"], "nowait": 1, "nowait_keywords": ["wait"], "budget_max": 25}
    ),
]


@pytest.fixture(scope="module")
def engine():
    return mlx_lm.load(str(MODEL_DIR))


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MODEL_DIR))


@pytest.fixture(scope="module")
def reference(hf_tokenizer):
    return Reference(hf_tokenizer, gate_margin=1e-3)


@pytest.fixture(scope="module")
def prompts(engine):
    _, tokenizer = engine
    problems = make_problems(4, seed=7)
    return [tokenizer.apply_chat_template([{"role": "user", "content": p.prompt_text()}], add_generation_prompt=True) for p in problems]


def generated_ids(prompt_ids: list[int], processed: Recorder) -> list[int]:
    return processed.histories[-1][len(prompt_ids) :] + [int(np.argmax(processed.rows[-1]))]


def test_every_intervention_matches_the_reference_step_for_step(engine, reference, prompts):
    model, tokenizer = engine
    changed = 0
    for settings in SETTINGS:
        processor = ReasoningInterventionsProcessor(tokenizer, settings)  # reused over the prompts
        for prompt in prompts:
            raw, processed = Recorder(), Recorder()
            mlx_lm.generate(model, tokenizer, prompt, max_tokens=MAX_TOKENS, logits_processors=[raw, processor, processed])
            changed += check_trace(reference, settings, prompt, raw, processed, generated_ids(prompt, processed), (THINK_START, THINK_END))
    assert changed >= 100, changed


def test_stream_generate_and_repeated_calls(engine, reference, prompts):
    """One instance across `stream_generate` and `generate`, the same prompt twice in a row."""
    model, tokenizer = engine
    settings = SETTINGS[-1]
    processor = ReasoningInterventionsProcessor(tokenizer, settings)
    for prompt in [prompts[0], prompts[0], prompts[1]]:
        raw, processed = Recorder(), Recorder()
        tokens = [r.token for r in mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=MAX_TOKENS, logits_processors=[raw, processor, processed])]
        check_trace(reference, settings, prompt, raw, processed, tokens, (THINK_START, THINK_END))
        assert processed.histories[-1][len(prompt) :] == tokens[: len(processed.histories[-1]) - len(prompt)]


class RowRecorder:
    """A recorder shared by the rows of a batch: calls grouped by the row's prompt."""

    def __init__(self, prompts: list[list[int]]) -> None:
        self.prompts = prompts
        self.rows = [Recorder() for _ in prompts]

    def __call__(self, tokens, logits):
        history = np.asarray(tokens).tolist()
        matches = [i for i, p in enumerate(self.prompts) if history[: len(p)] == p]
        assert len(matches) == 1, "each row's tokens start with its own prompt"
        return self.rows[matches[0]](tokens, logits)


def test_one_processor_serves_every_row_of_a_batch(engine, reference, prompts):
    """`batch_generate` with one processor instance for the whole batch (mlx-lm calls it row by row)."""
    model, tokenizer = engine
    for settings in (SETTINGS[0], SETTINGS[-1], SETTINGS[5]):
        processor = ReasoningInterventionsProcessor(tokenizer, settings)
        raw, processed = RowRecorder(prompts), RowRecorder(prompts)
        out = mlx_lm.batch_generate(model, tokenizer, prompts, max_tokens=MAX_TOKENS, logits_processors=[raw, processor, processed], return_token_ids=True)
        for i, prompt in enumerate(prompts):
            generated = out.token_ids[i]
            check_trace(reference, settings, prompt, raw.rows[i], processed.rows[i], generated, (THINK_START, THINK_END))
        assert len(processor._follower.sequences) <= len(prompts)


def test_same_biases_as_the_hugging_face_processor(engine, hf_tokenizer, prompts):
    import torch

    from tip_decode.hf import ReasoningInterventionsProcessor as HFProcessor

    model, tokenizer = engine
    for settings in SETTINGS:
        raw, processed = Recorder(), Recorder()
        mlx_lm.generate(
            model, tokenizer, prompts[2], max_tokens=MAX_TOKENS, logits_processors=[raw, ReasoningInterventionsProcessor(tokenizer, settings), processed]
        )
        theirs = HFProcessor(hf_tokenizer, settings)
        for history, before, after in zip(raw.histories, raw.rows, processed.rows):
            got = theirs(torch.tensor([history]), torch.from_numpy(before.copy())[None])
            assert torch.equal(got[0], torch.from_numpy(after)), settings.names


def test_rollback_of_rejected_drafts(engine, reference, prompts):
    """Histories that go back a few tokens (mlx-lm's speculative decoding) resume from the state
    after the shorter history, as a fresh run over the accepted tokens gives."""
    _, tokenizer = engine
    settings = SETTINGS[-1]
    straight, rolled = ReasoningInterventionsProcessor(tokenizer, settings), ReasoningInterventionsProcessor(tokenizer, settings)
    prompt = prompts[0]
    rng = np.random.default_rng(0)
    logits = [mx.array(rng.normal(size=(1, 62)).astype(np.float32)) for _ in range(30)]
    accepted = [int(t) for t in rng.integers(7, 62, size=30)]
    for t in range(30):
        want = np.asarray(straight(mx.array(prompt + accepted[:t]), logits[t]))
        if t % 5 == 4:  # drafts of two wrong tokens, then rejected
            for draft in range(2):
                rolled(mx.array(prompt + accepted[:t] + [61] * (draft + 1)), logits[t])
        got = np.asarray(rolled(mx.array(prompt + accepted[:t]), logits[t]))
        assert np.array_equal(got, want), t


def test_wrapper_and_hf_tokenizer_give_the_same_plan(engine, hf_tokenizer):
    _, tokenizer = engine
    settings = SETTINGS[-1]
    a = ReasoningInterventionsProcessor(tokenizer, settings)
    b = ReasoningInterventionsProcessor(hf_tokenizer, settings)
    assert a.tokenizer is tokenizer._tokenizer
    assert a.plan.rules[0].vocabulary.penalised_ids == b.plan.rules[0].vocabulary.penalised_ids
    with pytest.raises(ValueError, match="shape"):
        a(mx.array([1, 2]), mx.zeros((2, 62)))
    off = ReasoningInterventionsProcessor(tokenizer, {})
    x = mx.zeros((1, 62))
    assert off(mx.array([1]), x) is x


def test_import_is_light_and_a_missing_engine_is_one_line():
    light = "import sys, tip_decode.mlx; print(sorted(m for m in ('transformers', 'mlx_lm', 'vllm', 'llama_cpp') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", light], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    missing = "import sys; sys.modules['mlx'] = None\ntry:\n import tip_decode.mlx\nexcept ImportError as e: print(e)"
    done = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True, check=True)
    assert done.stdout == 'tip_decode.mlx needs MLX: pip install "tip-decode[mlx]" (Linux: mlx[cpu]; plus mlx-lm to generate)\n'


def test_docs_example_runs():
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "mlx.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(page), "exec"), {})


def test_a_forced_token_an_earlier_processor_bans_leaves_the_row(engine, prompts):
    """The budget's maximum would force </think>; a processor before ours bans it: the row is left as
    that processor made it (no forcing, no revival of the banned token, never NaN), the core's rule."""
    model, tokenizer = engine

    def ban_think_end(_tokens, logits):
        return mx.where(mx.arange(logits.shape[-1]) == THINK_END, mx.array(-float("inf"), dtype=logits.dtype), logits)

    prompt = prompts[0]
    free = Recorder()
    mlx_lm.generate(model, tokenizer, prompt, max_tokens=4, logits_processors=[ReasoningInterventionsProcessor(tokenizer, {"budget_max": 2}), free])
    assert int(np.argmax(free.rows[2])) == THINK_END  # the budget alone forces </think> at 2 tokens
    raw, processed = Recorder(), Recorder()
    processors = [ban_think_end, raw, ReasoningInterventionsProcessor(tokenizer, {"budget_max": 2}), processed]
    mlx_lm.generate(model, tokenizer, prompt, max_tokens=4, logits_processors=processors)
    for after in processed.rows:
        assert not np.isnan(after).any() and np.isfinite(after).any()
        assert after[THINK_END] == -np.inf
    np.testing.assert_array_equal(processed.rows[2], raw.rows[2])  # the forcing step: left as it arrived
