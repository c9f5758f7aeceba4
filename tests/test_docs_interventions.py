"""The Python examples of docs/interventions.md run as written (those that need no vLLM engine)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_python_examples_run():
    blocks = [b for b in python_blocks(ROOT / "docs" / "interventions.md") if "vllm" not in b]
    assert blocks, "the page lost its Python examples"
    for block in blocks:
        exec(compile(block, "docs/interventions.md", "exec"), {})
