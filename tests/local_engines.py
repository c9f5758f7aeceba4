"""Support for the local-engine tests (llama-cpp-python, mlx-lm): engines, a tiny GGUF, the reference.

- `require(module, env)`: import an engine; locally a missing engine skips the module, under CI
  (`TIP_DECODE_REQUIRE_LLAMA_CPP=1` / `TIP_DECODE_REQUIRE_MLX=1`, set by .ci/run) it fails it.
- `tiny_gguf`: a tiny random-weight Qwen2 with the real qwen3 tokenizer (think markers),
  saved by transformers and converted by llama.cpp's own `convert_hf_to_gguf.py`, found through
  `TIP_DECODE_LLAMA_CPP_SOURCE` (the unpacked llama-cpp-python source distribution, or its
  `vendor/llama.cpp` folder; .ci/run sets it).
- `Recorder` and `check_trace`: the raw and processed logits of every step, recorded by processors
  placed before and after the one under test, and their difference checked against the slow
  reference (tests/reference_interventions.py) and against the engine's greedy choice.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_interventions import Reference, Row

ENV_LLAMA_CPP_SOURCE = "TIP_DECODE_LLAMA_CPP_SOURCE"
THINK_START, THINK_END = 151667, 151668  # qwen3


def require(module: str, env: str, install: str):
    """The engine module, or a skip (locally) / failure (under CI, `env`=1) naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        message = f"{module} cannot be imported ({err}); {install}"
        if os.environ.get(env) == "1":
            pytest.fail(f"{env}=1 but {message}", pytrace=False)
        pytest.skip(message, allow_module_level=True)


def converter_script() -> Path:
    """llama.cpp's convert_hf_to_gguf.py from the llama-cpp-python source distribution."""
    source = os.environ.get(ENV_LLAMA_CPP_SOURCE)
    hint = f"set {ENV_LLAMA_CPP_SOURCE} to the unpacked llama-cpp-python sdist (pip download --no-binary :all: --no-deps llama-cpp-python)"
    if not source:
        if os.environ.get("TIP_DECODE_REQUIRE_LLAMA_CPP") == "1":
            pytest.fail(f"TIP_DECODE_REQUIRE_LLAMA_CPP=1 but {ENV_LLAMA_CPP_SOURCE} is not set; {hint}", pytrace=False)
        pytest.skip(f"{ENV_LLAMA_CPP_SOURCE} is not set; {hint}")
    for candidate in (Path(source) / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py", Path(source) / "convert_hf_to_gguf.py"):
        if candidate.is_file():
            return candidate
    pytest.fail(f"no convert_hf_to_gguf.py under {source} ({hint})", pytrace=False)


def build_tiny_model(path: Path, tokenizer, seed: int = 0, logit_scale: float = 30.0) -> Path:
    """A tiny random-weight Qwen2, its output layer scaled so that greedy choices are well separated
    (untied: tied random embeddings make the model repeat its input token)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer) + (-len(tokenizer)) % 64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def convert_to_gguf(model_dir: Path, out: Path) -> Path:
    """Run llama.cpp's converter (in this interpreter) on a saved Hugging Face model."""
    script = converter_script()
    done = subprocess.run(
        [sys.executable, str(script), str(model_dir), "--outfile", str(out), "--outtype", "f32"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(f"convert_hf_to_gguf.py failed ({done.returncode}):\n{done.stderr[-3000:]}", pytrace=False)
    return out


_GGUF: dict[str, Path] = {}


def tiny_gguf(tmp_path_factory, qwen3_tokenizer) -> Path:
    """The tiny qwen3-tokenizer model as a GGUF file (built once per session; test modules wrap
    this in a fixture)."""
    if "qwen3" not in _GGUF:
        folder = tmp_path_factory.mktemp("tiny-gguf")
        model_dir = build_tiny_model(folder / "hf", qwen3_tokenizer)
        _GGUF["qwen3"] = convert_to_gguf(model_dir, folder / "tiny-qwen3.gguf")
    return _GGUF["qwen3"]


class Recorder:
    """A processor that keeps a float32 copy of the logits row it is given and returns them as is."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.histories: list[list[int]] = []

    def __call__(self, tokens, logits):
        self.histories.append([int(t) for t in np.asarray(tokens).tolist()])
        self.rows.append(np.array(logits, dtype=np.float32).reshape(-1))
        return logits


def prompt_facts(prompt_ids: list[int], start: int, end: int) -> tuple[bool, int]:
    last = {token: i for i, token in enumerate(prompt_ids)}
    opened = last.get(start, -1) > last.get(end, -1)
    return opened, (len(prompt_ids) - last[start] - 1 if opened else 0)


def check_trace(
    reference: Reference, settings, prompt_ids: list[int], raw: Recorder, processed: Recorder, generated: list[int] | None, markers: tuple[int, int]
) -> int:
    """Every step's processed-minus-raw logits equal the reference's; each generated token is the
    greedy choice of the expected logits. Returns the number of steps whose logits changed."""
    assert len(raw.rows) == len(processed.rows) > 0
    opened, thinking = prompt_facts(prompt_ids, *markers)
    history = raw.histories[-1][len(prompt_ids) :]
    row = Row(opened, thinking, history, logits=[torch.from_numpy(r) for r in raw.rows])
    changed = 0
    for t, (before, after) in enumerate(zip(raw.rows, processed.rows)):
        assert raw.histories[t] == prompt_ids + history[:t], f"step {t}: the engine passed another history"
        bias, forced, uncertain = reference.expected(settings, row, t)
        if uncertain:
            continue
        want = before.copy()
        ids = sorted(set(bias) | ({forced} if forced is not None else set()))
        if ids:
            want[ids] = Reference.apply(torch.from_numpy(before), ids, bias, forced).numpy()
        # Untouched ids bit for bit; touched ones to float32 rounding (the reference computes
        # cyclic's wave in float64, the rules in float32), infinities exactly.
        touched = np.zeros(len(want), dtype=bool)
        touched[ids] = True
        close = touched & np.isclose(after, want, rtol=1e-6, atol=1e-5)
        mismatch = np.flatnonzero(~((want == after) | close))
        assert not len(mismatch), f"step {t}: ids {mismatch[:8].tolist()} got {after[mismatch[:8]]} want {want[mismatch[:8]]} ({settings.names})"
        if generated is not None and t < len(generated):
            assert generated[t] == int(np.argmax(want)), f"step {t}: generated {generated[t]}, greedy choice {int(np.argmax(want))}"
        changed += bool((after != before).any())
    return changed
