"""Generation backends of the harness, gathered under their old import path.

The contract (requests, completions, seeds and reproducibility per backend) is documented in
`backend_base`; each backend lives in its own module (`hf_backend`, `vllm_backend`,
`served_backends`; llama.cpp and MLX in `local_backends`).
"""

from __future__ import annotations

from tip_decode.harness.backend_base import (
    Backend,
    Completion,
    GenerationRequest,
    OnComplete,
    OnTokens,
    SamplingSettings,
    load_hf_tokenizer,
    package_version,
)
from tip_decode.harness.hf_backend import HFBackend, hf_logits_processor
from tip_decode.harness.served_backends import OpenAIBackend, SGLangBackend
from tip_decode.harness.vllm_backend import VLLM_PROCESSOR, VLLMBackend

__all__ = [
    "VLLM_PROCESSOR",
    "Backend",
    "Completion",
    "GenerationRequest",
    "HFBackend",
    "OnComplete",
    "OnTokens",
    "OpenAIBackend",
    "SGLangBackend",
    "SamplingSettings",
    "VLLMBackend",
    "hf_logits_processor",
    "load_hf_tokenizer",
    "package_version",
]
