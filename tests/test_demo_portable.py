"""The shipped demo model loads the same on every supported transformers (4.51.1 ... 5.x).

CI runs this file in the main environment (newest transformers and torch) and in the floor
environment (.ci/floor-constraints.txt: the lowest supported transformers, torch and the rest), so
the recorded reference below is checked on both ends of the range on every run.

The reference (tests/data/demo_model_reference.npz) was recorded from the files as transformers
5.19 saved them, before tip_decode.demo.portable rewrote their config keys, with transformers 5.19 and
torch 2.13.0 (CPU): the prompt texts, their token ids, the logits of every position of three prompt +
trace sequences, and up to 60 greedy tokens per prompt. Rewrite it with
`python tests/test_demo_portable.py --write-reference [MODEL_DIR]`.

Measured against it: bit-identical logits and greedy tokens with transformers 4.51.1 + torch 2.3.0 (the
floor set) and with 4.51.1, 4.57.6, 5.19.0 and 5.24.0 + torch 2.13.0. Other torch builds may differ in
the last bits: with torch 2.1.0, where transformers uses eager attention instead of SDPA, the largest
logit difference was 9.1e-6 (logits reach 18.8); LOGIT_ATOL leaves ten times that.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tip_decode.demo import MODEL_DIR
from tip_decode.demo.portable import make_portable, portable_config, portable_tokenizer_config

REFERENCE = Path(__file__).resolve().parent / "data" / "demo_model_reference.npz"
LOGIT_ATOL = 1e-4
GREEDY_TOKENS = 60
SEQUENCES = 3


def load(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)


def reference_inputs(tokenizer) -> tuple[list[str], list[list[int]]]:
    """Prompt texts (chat template applied) of held-out problems, and prompt + one written trace as ids."""
    from tip_decode.demo.task import TaskSettings, make_problems, write_trace

    problems = make_problems(SEQUENCES)
    rng = random.Random(1)
    texts, sequences = [], []
    for problem in problems:
        text = tokenizer.apply_chat_template([{"role": "user", "content": problem.prompt_text()}], tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        texts.append(text)
        sequences.append(prompt_ids + tokenizer.convert_tokens_to_ids(write_trace(problem, rng, TaskSettings())))
    return texts, sequences


def sequence_logits(model, sequences: list[list[int]]) -> np.ndarray:
    """Logits at every position, one unpadded sequence at a time, stacked: (total positions, vocab)."""
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.tensor([ids])).logits[0].float().numpy() for ids in sequences])


def greedy(model, tokenizer, texts: list[str]) -> np.ndarray:
    """Up to GREEDY_TOKENS greedy tokens per prompt, generated as one left-padded batch (pad id after eos)."""
    import torch

    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **batch,
            do_sample=False,
            max_new_tokens=GREEDY_TOKENS,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return out[:, batch["input_ids"].shape[1] :].numpy()


def write_reference(model_dir: Path) -> None:
    import torch
    import transformers

    model, tokenizer = load(model_dir)
    texts, sequences = reference_inputs(tokenizer)
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez(
        REFERENCE,
        texts=np.array(texts),
        ids=np.concatenate([np.array(ids, dtype=np.int64) for ids in sequences]),
        lengths=np.array([len(ids) for ids in sequences], dtype=np.int64),
        logits=sequence_logits(model, sequences).astype(np.float32),
        greedy=greedy(model, tokenizer, texts).astype(np.int64),
        versions=np.array([f"transformers {transformers.__version__}", f"torch {torch.__version__}"]),
    )


@pytest.fixture(scope="module")
def shipped():
    return load(MODEL_DIR)


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def test_shipped_folder_is_already_portable(tmp_path):
    copy = shutil.copytree(MODEL_DIR, tmp_path / "model")
    assert make_portable(copy) == []
    config = json.loads((MODEL_DIR / "config.json").read_text())
    # 4.x reads rope_theta and torch_dtype, 5.x rope_parameters and dtype: one value each.
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == 10000.0
    assert config["torch_dtype"] == config["dtype"] == "float32"
    tokenizer_config = json.loads((MODEL_DIR / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_portable_config_fills_in_either_spelling():
    from_5x = portable_config({"rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}, "dtype": "bfloat16"})
    from_4x = portable_config({"rope_theta": 5e5, "rope_scaling": None, "torch_dtype": "bfloat16"})
    for config in (from_5x, from_4x):
        assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == 5e5
        assert config["torch_dtype"] == config["dtype"] == "bfloat16"
    assert portable_tokenizer_config({"tokenizer_class": "TokenizersBackend"})["model_input_names"] == ["input_ids", "attention_mask"]


@pytest.mark.parametrize(
    "config, message",
    [
        ({"dtype": "float32"}, "names no rope base"),
        ({"rope_parameters": {"rope_theta": 1e4, "rope_type": "yarn", "factor": 4.0}}, "scales it"),
        ({"rope_theta": 1e4, "rope_scaling": {"type": "linear", "factor": 2.0}}, "scales it"),
    ],
)
def test_portable_config_refuses_what_it_cannot_write_for_both(config, message):
    with pytest.raises(ValueError, match=message):
        portable_config(config)


def test_tokenizer_returns_only_what_the_model_takes(shipped):
    from tip_decode.demo.tokenizer import build_tokenizer

    _, tokenizer = shipped
    # A 4.x fast tokenizer adds token_type_ids unless told otherwise, and generate() rejects them.
    assert set(tokenizer(["start 1 goal 2"])) == {"input_ids", "attention_mask"}
    assert set(build_tokenizer()(["start 1 goal 2"])) == {"input_ids", "attention_mask"}


def test_prompts_tokenize_as_recorded(shipped, reference):
    model, tokenizer = shipped
    texts, sequences = reference_inputs(tokenizer)
    assert texts == reference["texts"].tolist()
    assert [len(ids) for ids in sequences] == reference["lengths"].tolist()
    assert sum(sequences, []) == reference["ids"].tolist()


def test_logits_match_the_recorded_reference(shipped, reference):
    model, _ = shipped
    lengths = reference["lengths"].tolist()
    ids = reference["ids"].tolist()
    sequences = [ids[sum(lengths[:i]) : sum(lengths[: i + 1])] for i in range(len(lengths))]
    logits = sequence_logits(model, sequences)
    expected = reference["logits"]
    assert logits.shape == expected.shape
    difference = float(np.abs(logits - expected).max())
    assert difference <= LOGIT_ATOL, f"largest logit difference {difference:.3g} (recorded with {reference['versions'].tolist()})"
    assert (logits.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_greedy_continuations_match_the_recorded_reference(shipped, reference):
    model, tokenizer = shipped
    assert greedy(model, tokenizer, reference["texts"].tolist()).tolist() == reference["greedy"].tolist()


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "--write-reference":
        sys.exit(f"usage: python {sys.argv[0]} --write-reference [MODEL_DIR]")
    write_reference(Path(sys.argv[2]) if len(sys.argv) > 2 else MODEL_DIR)
    print(f"wrote {REFERENCE}")
