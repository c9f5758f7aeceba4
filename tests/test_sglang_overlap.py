"""SGLang's own launcher with its default overlap scheduler and no delayed sampling.

`python -m sglang.launch_server --enable-custom-logit-processor`, as SGLang documents it: the
processor runs before the previous step's token reaches `output_ids`, so it sees each request's
output one token late. It then applies, at step t, exactly the penalty the reference gives for step
t-1 (docs/sglang.md), warns once in the server log, and counts the late rows. One server start.
The processor finds the tokenizer through SGLang's server arguments here (no TIP_DECODE_TOKENIZER).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sglang_support import (
    PROMPTS,
    SERVER_ARGS,
    batch_generate,
    build_model,
    free_port,
    greedy,
    mixed_batch_check,
    read_records,
    sglang_python,
    start_server,
    stop,
    subprocess_env,
    untouched_outputs,
)

pytestmark = [pytest.mark.sglang, pytest.mark.slow]


@pytest.fixture(scope="module")
def python() -> str:
    return sglang_python()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, python) -> Path:
    return build_model(tmp_path_factory.mktemp("sglang-tiny"))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def plain(python, model_dir, tmp_path_factory):
    """SGLang's own launcher, overlap scheduler on, no delayed sampling (what SGLang's docs give)."""
    folder = tmp_path_factory.mktemp("sglang-plain")
    port = free_port()
    env = subprocess_env(TIP_DECODE_SGLANG_RECORD=str(folder / "record.jsonl"))
    for name in ("SGLANG_ENABLE_DELAY_SAMPLE", "TIP_DECODE_TOKENIZER", "TIP_DECODE_ALPHA"):
        env.pop(name, None)
    command = [
        python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enable-custom-logit-processor",
        *SERVER_ARGS,
    ]
    server = start_server(command, env, folder / "server.log", port)
    server.record = folder / "record.jsonl"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        stop(server.process)


def test_mixed_batch_is_one_token_late_under_plain_overlap(plain, tokenizer):
    """Overlap scheduler on, no delayed sampling: step t gets exactly the reference penalty of step t-1."""
    untouched = untouched_outputs(plain, tokenizer)
    mixed_batch_check(batch_generate(plain), tokenizer, untouched, lag=True)
    assert "SGLANG_ENABLE_DELAY_SAMPLE=1" in plain.log(), "the processor did not warn about the late output"


def test_plain_overlap_rows_are_seen_late(plain, tokenizer):
    import sglang_recorder

    from tip_decode.sglang import custom_params, processor_string

    plain.record.unlink(missing_ok=True)
    body = {
        "input_ids": tokenizer.encode(PROMPTS[2]),
        "sampling_params": greedy(6, custom_params=custom_params(alpha=1.0, beta=8)),
        "custom_logit_processor": processor_string(sglang_recorder.RecordingThoughtSwitchPenalty),
    }
    plain.generate(body)
    records = read_records(plain.record)
    # Prefill sees the (empty) output in time; each of the 5 decode steps sees it one token late.
    assert records[-1]["lagging_rows"] - records[0]["lagging_rows"] == 5 - 1 + (records[0]["lagging_rows"] > 0), records
