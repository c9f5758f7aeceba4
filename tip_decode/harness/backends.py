"""Generation backends of the harness: `hf` (transformers), `vllm` (offline engine), `openai` (server).

This module gathers them: the contract is in `backend_base`, each backend in its own module
(`hf_backend`, `vllm_backend`, `served_backends`; llama.cpp and MLX in `local_backends`).

A backend takes a list of `GenerationRequest`s and calls `on_complete(request, completion)` once
per request as soon as that request is finished, so the caller can write the record at once.
Every request carries its own seed and its own interventions (an `InterventionSet`; empty for
standard decoding), which each backend hands to its engine:

- `hf`: one logits processor per distinct configuration, built by `hf_logits_processor`;
- `vllm`: `SamplingParams.extra_args`, every intervention explicit (`request_mapping`);
- `openai`: the same flat keys as `extra_body={"vllm_xargs": ...}`;
- `sglang`: the same flat keys as the processor's `custom_params`.

Seeds and reproducibility:
- `hf`: sampling is done by `RowSampler`, a logits processor that draws each row's token with the
  Gumbel-max trick from a `torch.Generator` seeded with that row's seed. `generate` itself runs
  greedy over the perturbed scores, so a sample depends on its prompt, its seed and the model only,
  not on which other prompts share its batch (up to floating-point differences caused by padding).
- `vllm`: `SamplingParams(seed=...)` per request (vLLM's per-request generator).
- `openai`: the `seed` request field (vLLM servers honour it per request).
Temperature 0 is greedy decoding on every backend; the seed is then irrelevant.
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
