"""The TIP processor inside SGLang's offline `sglang.Engine`, overlap scheduler off.

One engine per module, in a subprocess of the SGLang interpreter (tests/sglang_engine_worker.py):
with `disable_overlap_schedule=True` the processor sees each request's current output, so the
penalty is exact at every step, for a batch that mixes TIP settings, TIP off and requests without
the processor; greedy TIP output equals HF `generate` with `TIPLogitsProcessor`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sglang_support import (
    ENGINE_KWARGS,
    PROMPTS,
    EngineWorker,
    build_model,
    greedy,
    hf_parity_check,
    mixed_batch_check,
    sglang_python,
    subprocess_env,
)

pytestmark = [pytest.mark.sglang, pytest.mark.slow]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    sglang_python()
    return build_model(tmp_path_factory.mktemp("sglang-engine-tiny"))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def engine(model_dir, tmp_path_factory):
    python = sglang_python()
    log = tmp_path_factory.mktemp("sglang-engine") / "engine.log"
    env = subprocess_env()
    env.pop("SGLANG_ENABLE_DELAY_SAMPLE", None)
    worker = EngineWorker(python, {"model_path": str(model_dir), "disable_overlap_schedule": True, **ENGINE_KWARGS}, log, env)
    try:
        yield worker
    finally:
        worker.close()


def engine_generate(engine: EngineWorker):
    def generate(input_ids, sampling_params, processors, token_ids_logprob):
        kwargs = {"input_ids": input_ids, "sampling_params": sampling_params}
        if any(p is not None for p in processors):
            kwargs["custom_logit_processor"] = processors
        if token_ids_logprob is not None:
            kwargs.update(return_logprob=True, token_ids_logprob=token_ids_logprob)
        replies = engine.call("generate", **kwargs)
        assert isinstance(replies, list) and len(replies) == len(input_ids)
        return replies

    return generate


@pytest.fixture(scope="module")
def untouched(engine, tokenizer) -> list[list[int]]:
    replies = engine_generate(engine)([tokenizer.encode(p) for p in PROMPTS], [greedy(24) for _ in PROMPTS], [None] * len(PROMPTS), None)
    return [list(r["output_ids"]) for r in replies]


def test_mixed_batch_matches_reference_without_overlap(engine, tokenizer, untouched):
    mixed_batch_check(engine_generate(engine), tokenizer, untouched, lag=False)


def test_greedy_output_equals_hf_generate_with_tip(engine, tokenizer, untouched, model_dir):
    hf_parity_check(engine_generate(engine), tokenizer, untouched, model_dir)


def test_processor_string_equals_sglang_to_str():
    """The client helper builds, without SGLang or dill, the string SGLang's own `to_str()` builds."""
    import subprocess

    import sglang_recorder

    from tip_decode.sglang import processor_string

    code = (
        "import sglang_recorder, tip_decode.sglang as t\n"
        "from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor as C\n"
        "print(C.to_str.__func__(t.ThoughtSwitchPenalty)); print(C.to_str.__func__(sglang_recorder.RecordingThoughtSwitchPenalty))\n"
        "print(type(C.from_str(C.to_str.__func__(t.ThoughtSwitchPenalty))).__name__)"
    )
    result = subprocess.run([sglang_python(), "-c", code], capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-3000:]
    theirs, theirs_recorder, loaded = result.stdout.strip().splitlines()[-3:]
    assert theirs == processor_string()
    assert theirs_recorder == processor_string(sglang_recorder.RecordingThoughtSwitchPenalty)
    assert loaded == "ThoughtSwitchPenalty"
