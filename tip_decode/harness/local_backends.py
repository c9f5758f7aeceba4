"""Harness backends for local engines: `llama-cpp` (a GGUF file) and `mlx` (an mlx-lm model folder).

Both generate the requests one after another (one sequence at a time, as these engines run on a
laptop), each with its own seed, and apply its interventions through the engine's processor
(`tip_decode.llama_cpp` / `tip_decode.mlx`; one processor per distinct configuration, reused over
its requests). Sampling is temperature and top-p only, like the other backends: llama.cpp's own
top-k, min-p and repeat penalty and mlx-lm's defaults are turned off. Temperature 0 is greedy.

Seeds: llama.cpp's sampler is seeded with the request's seed before each request (`Llama.set_seed`),
MLX's global generator likewise (`mx.random.seed`), so a sample depends on its prompt, its seed and
the model only. A completion's token ids end with the end-of-sequence token when it stopped there
("stop"), as the `hf` backend records them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tip_decode.adapters.gguf import gguf_hf_tokenizer  # noqa: F401 - its old import path
from tip_decode.harness.backend_base import Backend, Completion, GenerationRequest, OnComplete, OnTokens, SamplingSettings, _first_line, package_version
from tip_decode.harness.preflight import InputError


def gguf_context_length(path: str | Path) -> int | None:
    """The training context of a GGUF model (`<architecture>.context_length`), or None."""
    from tip_decode.adapters.gguf import read_metadata

    metadata = read_metadata(path, prefix="")
    architecture = metadata.get("general.architecture")
    value = metadata.get(f"{architecture}.context_length")
    return int(value) if isinstance(value, int) else None


class LlamaCppBackend(Backend):
    """llama-cpp-python (`llama_cpp.Llama`) on a GGUF file.

    Args:
        model: the GGUF file.
        sampling: the shared sampling settings.
        n_ctx: the context size to allocate (prompt plus response); default: the model's.
        n_threads: CPU threads (default: llama.cpp's choice).
        tokenizer: the transformers tokenizer prompts were built with (default: read from the file).
    """

    name = "llama-cpp"

    def __init__(
        self, model: str, sampling: SamplingSettings | None = None, n_ctx: int | None = None, n_threads: int | None = None, tokenizer: Any = None
    ) -> None:
        try:
            import llama_cpp
        except ImportError:
            raise ImportError('the llama-cpp backend needs llama-cpp-python: pip install "tip-decode[llama-cpp]"') from None
        path = Path(model).expanduser()
        if not path.is_file():
            raise InputError(f"no such GGUF file: {model!r} (the llama-cpp backend takes -m model.gguf)")
        self.sampling = sampling or SamplingSettings()
        self.model_as_typed = model
        self.model = str(path.resolve())
        self.tokenizer = tokenizer if tokenizer is not None else gguf_hf_tokenizer(self.model)
        try:
            self.llm = llama_cpp.Llama(self.model, n_ctx=n_ctx or 0, n_threads=n_threads, verbose=False)
        except Exception as err:
            raise RuntimeError(f"cannot load {model!r} with llama.cpp: {_first_line(err)}") from None
        self._llama_cpp = llama_cpp
        self._processors: dict[Any, Any] = {}

    @property
    def version(self) -> str | None:
        return package_version("llama_cpp_python") or package_version("llama-cpp-python")

    def _processor(self, settings: Any) -> Any:
        if not settings:
            return None
        if settings not in self._processors:
            from tip_decode.llama_cpp import ReasoningInterventionsProcessor

            self._processors[settings] = ReasoningInterventionsProcessor(self.llm, settings)
        return self._processors[settings]

    def generate(self, requests: Sequence[GenerationRequest], on_complete: OnComplete, on_tokens: OnTokens | None = None) -> None:
        llama_cpp = self._llama_cpp
        vocab = self.llm._model.vocab
        for request in requests:
            processor = self._processor(request.interventions)
            processors = llama_cpp.LogitsProcessorList([processor]) if processor is not None else None
            self.llm.set_seed(request.seed)
            tokens: list[int] = []
            reason = "length"
            steps = self.llm.generate(
                list(request.prompt_ids),
                top_k=0,
                top_p=self.sampling.top_p,
                min_p=0.0,
                typical_p=1.0,
                temp=self.sampling.temperature,
                repeat_penalty=1.0,
                logits_processor=processors,
            )
            for token in steps:
                tokens.append(int(token))
                if on_tokens is not None:
                    on_tokens(1)
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = "stop"
                    break
                if len(tokens) >= self.sampling.max_new_tokens:
                    break
            steps.close()
            text_ids = tokens[:-1] if reason == "stop" else tokens
            on_complete(request, Completion(tuple(tokens), self.tokenizer.decode(text_ids, skip_special_tokens=True), reason))

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()


class MLXBackend(Backend):
    """mlx-lm (`mlx_lm.load`) on a model folder.

    Args:
        model: an mlx-lm model folder (or a Hub name already in the local cache).
        sampling: the shared sampling settings.
    """

    name = "mlx"

    def __init__(self, model: str, sampling: SamplingSettings | None = None) -> None:
        try:
            import mlx.core as mx
            import mlx_lm
            from mlx_lm.sample_utils import make_sampler
        except ImportError:
            raise ImportError('the mlx backend needs MLX and mlx-lm: pip install "tip-decode[mlx]" mlx-lm (Linux: mlx[cpu])') from None
        self.sampling = sampling or SamplingSettings()
        self.model_as_typed = model
        path = Path(model).expanduser()
        self.model = str(path.resolve()) if path.exists() else model
        try:
            self._model, self._wrapper = mlx_lm.load(self.model)
        except Exception as err:
            raise RuntimeError(f"cannot load {model!r} with mlx-lm: {_first_line(err)}") from None
        self.tokenizer = self._wrapper._tokenizer
        self._eos = set(int(t) for t in self._wrapper.eos_token_ids)
        self._mx, self._mlx_lm = mx, mlx_lm
        self._sampler = make_sampler(temp=self.sampling.temperature, top_p=self.sampling.top_p if self.sampling.temperature > 0 else 0.0)
        self._processors: dict[Any, Any] = {}

    @property
    def version(self) -> str | None:
        return package_version("mlx-lm")

    def _processor(self, settings: Any) -> Any:
        if not settings:
            return None
        if settings not in self._processors:
            from tip_decode.mlx import ReasoningInterventionsProcessor

            self._processors[settings] = ReasoningInterventionsProcessor(self._wrapper, settings)
        return self._processors[settings]

    def generate(self, requests: Sequence[GenerationRequest], on_complete: OnComplete, on_tokens: OnTokens | None = None) -> None:
        from mlx_lm.generate import generate_step

        mx = self._mx
        for request in requests:
            processor = self._processor(request.interventions)
            mx.random.seed(request.seed)
            tokens: list[int] = []
            reason = "length"
            steps = generate_step(
                mx.array(list(request.prompt_ids)),
                self._model,
                max_tokens=self.sampling.max_new_tokens,
                sampler=self._sampler,
                logits_processors=[processor] if processor is not None else None,
            )
            for token, _ in steps:
                tokens.append(int(token))
                if on_tokens is not None:
                    on_tokens(1)
                if int(token) in self._eos:
                    reason = "stop"
                    break
            steps.close()
            text_ids = tokens[:-1] if reason == "stop" else tokens
            on_complete(request, Completion(tuple(tokens), self.tokenizer.decode(text_ids, skip_special_tokens=True), reason))
