"""The backends `tip-decode compare` / `grid` can generate with, each registered once.

An entry names the backend (`--backend NAME`), the command-line options only it reads (giving one
with another backend is a usage error), how its tokenizer and context length are found before
anything loads (`vocabulary`; a served backend asks its server instead), and the `factory` that
makes the `Backend` (a local model loads there, after every check, with the run folder locked).
`compare._prepare` only looks entries up: adding a backend is its `Backend` class (see
`tip_decode.harness.backend_base`) plus one `register_backend` call here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tip_decode.cli.common import one_line

#: --base-url's default is the OpenAI route of `tip-decode serve`; SGLang's server listens elsewhere.
OPENAI_URL, SGLANG_URL = "http://127.0.0.1:8000/v1", "http://127.0.0.1:30000"


@dataclass(frozen=True)
class BackendSetup:
    """What a backend's `vocabulary` and `factory` get: compare's options and what was resolved."""

    opts: dict[str, Any]
    #: The model as resolved (a local folder's absolute path; a served model's name as given).
    model: str
    #: --tokenizer, resolved (None: the model's own).
    tokenizer_name: str | None
    sampling: Any
    #: The checked --device (hf only; None otherwise).
    device: str | None = None
    #: The tokenizer and the longest prompt (tokens), known once the checks have run.
    tokenizer: Any = None
    longest: int = 0


@dataclass(frozen=True)
class BackendEntry:
    """One backend of `compare`: its name, its own options, its preflight and its factory."""

    name: str
    #: compare options only this backend reads.
    options: tuple[str, ...]
    #: Makes the backend: loads a local model (after every check) or connects to a server.
    factory: Callable[[BackendSetup], Any]
    #: (tokenizer, context length or None, where the length comes from), before the model loads;
    #: None for a served backend, whose factory runs first and whose server knows its context.
    vocabulary: Callable[[BackendSetup], tuple[Any, int | None, str]] | None = None

    @property
    def served(self) -> bool:
        return self.vocabulary is None


_REGISTRY: dict[str, BackendEntry] = {}


def register_backend(entry: BackendEntry) -> None:
    """Make `entry` a `--backend` choice of `compare` and `grid` (a name is registered once)."""
    if not entry.name or entry.name in _REGISTRY:
        raise ValueError(f"backend name {entry.name!r} is empty or already registered")
    _REGISTRY[entry.name] = entry


def backend_names() -> tuple[str, ...]:
    """The registered backends, in registration order (`hf` first: the default)."""
    return tuple(_REGISTRY)


def backend_entry(name: str) -> BackendEntry:
    """The entry of `name` (a `ValueError` naming the known ones for any other)."""
    if name not in _REGISTRY:
        raise ValueError(f"no backend {name!r} (known: {', '.join(_REGISTRY)})")
    return _REGISTRY[name]


# ----------------------------------------------------------------------------- preflights


def _model_config(model: str, opts: dict[str, Any]) -> tuple[Any, str]:
    """The model's config.json (its context length and vocabulary size), read before the weights."""
    from transformers import AutoConfig

    from tip_decode.harness.hub import check_hub_source

    check_hub_source(model, "model")  # seconds, not a minute of retries, without a network
    try:
        config = AutoConfig.from_pretrained(model)
    except Exception as err:  # transformers raises OSError, ValueError, HTTP errors...
        raise RuntimeError(f"cannot load model {opts['model']!r}: {one_line(err)}") from None
    return config, "its config.json"


def _checkpoint_vocabulary(setup: BackendSetup) -> tuple[Any, int | None, str]:
    """A transformers checkpoint (hf, vllm, mlx): config.json only, seconds before the weights."""
    from tip_decode.harness.backends import load_hf_tokenizer
    from tip_decode.harness.preflight import check_vocabulary_fits, context_length

    opts = setup.opts
    config, where = _model_config(setup.model, opts)
    if opts["backend"] == "vllm" and opts["max_model_len"]:
        context, where = opts["max_model_len"], "--max-model-len"
    else:
        context = context_length(config)
    tokenizer = load_hf_tokenizer(setup.tokenizer_name or setup.model)
    check_vocabulary_fits(tokenizer, config, opts["model"])
    return tokenizer, context, where


def _gguf_vocabulary(setup: BackendSetup) -> tuple[Any, int | None, str]:
    """-m model.gguf: context and vocabulary from the file's metadata."""
    from tip_decode.harness.backends import load_hf_tokenizer
    from tip_decode.harness.local_backends import gguf_context_length, gguf_hf_tokenizer

    tokenizer = load_hf_tokenizer(setup.tokenizer_name) if setup.tokenizer_name else gguf_hf_tokenizer(setup.model)
    return tokenizer, gguf_context_length(setup.model), "its GGUF metadata"


# ----------------------------------------------------------------------------- factories


def _typed(engine: Any, setup: BackendSetup) -> Any:
    engine.model_as_typed = setup.opts["model"]
    return engine


def _hf(setup: BackendSetup) -> Any:
    from tip_decode.harness.backends import HFBackend

    return _typed(HFBackend(setup.model, tokenizer=setup.tokenizer, sampling=setup.sampling, batch_size=setup.opts["batch_size"], device=setup.device), setup)


def _vllm_engine_options(opts: dict[str, Any], tokenizer: str | None) -> dict[str, Any]:
    engine: dict[str, Any] = {
        "dtype": opts["dtype"],
        "tensor_parallel_size": opts["tensor_parallel_size"],
        "enforce_eager": opts["enforce_eager"],
        "seed": opts["seed"],
    }
    for key in ("max_model_len", "max_num_batched_tokens", "gpu_memory_utilization"):
        if opts[key]:
            engine[key] = opts[key]
    if tokenizer:
        engine["tokenizer"] = tokenizer
    return engine


def _vllm(setup: BackendSetup) -> Any:
    from tip_decode.harness.backends import VLLMBackend

    return _typed(VLLMBackend(setup.model, sampling=setup.sampling, **_vllm_engine_options(setup.opts, setup.tokenizer_name)), setup)


def _openai(setup: BackendSetup) -> Any:
    from tip_decode.harness.backends import OpenAIBackend

    opts = setup.opts
    return OpenAIBackend(
        opts["base_url"], opts["model"], tokenizer=setup.tokenizer_name, sampling=setup.sampling, concurrency=opts["concurrency"], api_key=opts["api_key"]
    )


def _sglang(setup: BackendSetup) -> Any:
    from tip_decode.harness.backends import SGLangBackend

    opts = setup.opts
    url = SGLANG_URL if opts["base_url"] == OPENAI_URL else opts["base_url"]
    return SGLangBackend(url, opts["model"], tokenizer=setup.tokenizer_name, sampling=setup.sampling, concurrency=opts["concurrency"])


def _llama_cpp(setup: BackendSetup) -> Any:
    from tip_decode.harness.local_backends import LlamaCppBackend

    n_ctx = setup.longest + setup.sampling.max_new_tokens
    return _typed(LlamaCppBackend(setup.model, sampling=setup.sampling, n_ctx=n_ctx, tokenizer=setup.tokenizer), setup)


def _mlx(setup: BackendSetup) -> Any:
    from tip_decode.harness.local_backends import MLXBackend

    return _typed(MLXBackend(setup.model, sampling=setup.sampling), setup)


register_backend(BackendEntry("hf", ("batch_size", "device"), _hf, _checkpoint_vocabulary))
register_backend(
    BackendEntry(
        "vllm",
        ("dtype", "max_model_len", "gpu_memory_utilization", "max_num_batched_tokens", "tensor_parallel_size", "enforce_eager"),
        _vllm,
        _checkpoint_vocabulary,
    )
)
register_backend(BackendEntry("openai", ("base_url", "api_key", "concurrency"), _openai))
register_backend(BackendEntry("sglang", ("base_url", "concurrency"), _sglang))
register_backend(BackendEntry("llama-cpp", (), _llama_cpp, _gguf_vocabulary))
register_backend(BackendEntry("mlx", (), _mlx, _checkpoint_vocabulary))
