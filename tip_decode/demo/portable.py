"""Write the demo model's folder so that transformers 4.x and 5.x load it the same way.

`save_pretrained` writes the keys of the transformers version that runs it, and the two major
versions read different ones:

- config.json: 5.x reads the rotary base from `rope_parameters` and the weights' dtype from
  `dtype`; 4.x reads `rope_theta` and `torch_dtype` and ignores the other two (it would fall back to
  its default rope base, which equals ours only by chance). Both pairs are written, with one value.
- tokenizer_config.json: 5.x names its tokenizers-file class `TokenizersBackend`, which 4.x does not
  have; both know `PreTrainedTokenizerFast` (5.x maps it to the same backend). `model_input_names`
  leaves out `token_type_ids`, which a 4.x fast tokenizer would otherwise return and `generate`
  rejects for a model that takes none.

The weights and tokenizer.json are untouched: the same weights give the same logits
(tests/test_demo_portable.py holds them to a recorded reference in both CI environments).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The tokenizer class that every supported transformers version resolves to the fast tokenizer.
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
MODEL_INPUT_NAMES = ["input_ids", "attention_mask"]


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with both transformers 4.x and 5.x spellings of rope base and dtype."""
    out = dict(config)
    rope = dict(out.get("rope_parameters") or {})
    theta = rope.get("rope_theta", out.get("rope_theta"))
    if theta is None:
        raise ValueError("config.json names no rope base (neither `rope_parameters.rope_theta` nor `rope_theta`)")
    if rope.get("rope_type", "default") != "default" or out.get("rope_scaling") is not None:
        raise ValueError("only the default rotary embedding is written portably; this config scales it")
    out["rope_parameters"] = {**rope, "rope_theta": float(theta), "rope_type": "default"}
    out["rope_theta"] = float(theta)
    dtype = out.get("dtype", out.get("torch_dtype"))
    if dtype is not None:
        out["dtype"] = out["torch_dtype"] = dtype
    return out


def portable_tokenizer_config(config: dict[str, Any]) -> dict[str, Any]:
    """The tokenizer config with a class name and model inputs that 4.x and 5.x both read."""
    return {**config, "tokenizer_class": PORTABLE_TOKENIZER_CLASS, "model_input_names": list(MODEL_INPUT_NAMES)}


def make_portable(model_dir: Path) -> list[str]:
    """Rewrite config.json and tokenizer_config.json in `model_dir` in place; returns the files changed."""
    rewrites = {"config.json": portable_config, "tokenizer_config.json": portable_tokenizer_config}
    changed = []
    for name, rewrite in rewrites.items():
        path = Path(model_dir) / name
        before = json.loads(path.read_text())
        after = rewrite(before)
        if after != before:
            path.write_text(json.dumps(after, indent=2, sort_keys=True) + "\n")
            changed.append(name)
    return changed
