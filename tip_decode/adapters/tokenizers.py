"""The tokenizer a serving engine's processor builds its vocabularies with, loaded once per process.

vLLM and SGLang build the processor inside their worker or scheduler processes, several times per
process (SGLang once per batch, vLLM once per engine and again for request validation), and
`AutoTokenizer.from_pretrained` of a 150k-token tokenizer takes about a second: one cache keyed by
everything that selects the files (path, revision, trust_remote_code) serves them all. The
command line and the harness load theirs with `tip_decode.harness.backend_base.load_hf_tokenizer`
(one-line errors, GGUF files, a fast failure without the Hub); a processor inside an engine takes
the engine's own path, which the engine has already loaded once.
"""

from __future__ import annotations

import threading
from typing import Any

_TOKENIZERS: dict[tuple[str, str | None, bool], Any] = {}
_LOCK = threading.Lock()


def engine_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """`AutoTokenizer.from_pretrained(path, revision=..., trust_remote_code=...)`, once per process."""
    key = (path, revision, trust_remote_code)
    with _LOCK:
        if key not in _TOKENIZERS:
            from transformers import AutoTokenizer

            _TOKENIZERS[key] = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        return _TOKENIZERS[key]
