"""The backend contract of the harness (`GenerationRequest`, `Completion`, `SamplingSettings`, `Backend`).

Each backend lives in its own module (`hf_backend`, `vllm_backend`, `served_backends`,
`local_backends`) and registers itself for `tip-decode compare` in `tip_decode.cli.backends`; `backends` re-exports them all.

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

import importlib.metadata
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tip_decode.core.config import TIPConfig
from tip_decode.harness.configs import RunConfig
from tip_decode.harness.hub import check_hub_source
from tip_decode.harness.preflight import InputError, resolve_source


@dataclass(frozen=True)
class GenerationRequest:
    """One sample to generate: `key` is (problem id, sample index, config name).

    `interventions` takes an `InterventionSet`, a `TIPConfig` (TIP alone) or None (standard
    decoding); it is stored as an `InterventionSet` without the interventions its values turn off.
    """

    key: tuple[str, int, str]
    prompt: str
    prompt_ids: tuple[int, ...]
    seed: int
    interventions: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "interventions", RunConfig("request", self.interventions).interventions)

    @property
    def tip(self) -> TIPConfig | None:
        """The request's TIP setting (None: TIP off)."""
        return self.interventions.tip


@dataclass(frozen=True)
class Completion:
    """A finished sample: generated token ids (no prompt), their text, and why generation stopped."""

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling settings shared by every configuration of a run (only TIP differs between them)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 4096

    def __post_init__(self) -> None:
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            raise ValueError(f"`temperature` has to be a number >= 0, but is {self.temperature!r}")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` has to be in (0, 1], but is {self.top_p!r}")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` has to be a positive integer, but is {self.max_new_tokens!r}")


OnComplete = Callable[[GenerationRequest, Completion], None]
#: Called with a number of newly generated tokens (of samples that may not be finished yet).
OnTokens = Callable[[int], None]


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def load_hf_tokenizer(name: str) -> Any:
    """`AutoTokenizer.from_pretrained` with one-line errors: "no such folder" for a missing path
    (`InputError`), a `RuntimeError` naming the tokenizer otherwise."""
    from transformers import AutoTokenizer

    source = resolve_source(name, "tokenizer")
    if source.endswith(".gguf"):  # a llama.cpp model file: its own vocabulary
        from tip_decode.adapters.gguf import GGUFError, gguf_hf_tokenizer

        if not os.path.isfile(source):
            raise InputError(f"no such file: {name!r} (the GGUF file does not exist)")
        try:
            return gguf_hf_tokenizer(source)
        except GGUFError as err:
            raise InputError(str(err)) from None
    check_hub_source(source, "tokenizer")  # seconds, not a minute of retries, without a network
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as err:  # transformers raises OSError, ValueError, HTTP errors...
        if os.path.isdir(source) and not _holds_tokenizer_files(source):
            # transformers' message for this case is a list over several lines whose first line
            # ends in "from one of:"; say what is wrong instead.
            raise RuntimeError(
                f"cannot load tokenizer {name!r}: the folder holds no tokenizer files (tokenizer.json, tokenizer_config.json, "
                "tokenizer.model, vocab.json or vocab.txt); pass the folder that holds them"
            ) from None
        raise RuntimeError(f"cannot load tokenizer {name!r}: {_first_line(err)}") from None


def load_hf_causal_lm(name: str, dtype: Any = "auto") -> Any:
    """`AutoModelForCausalLM.from_pretrained` with the dtype keyword the installed transformers
    reads and one-line errors: "no such folder" for a missing path (`InputError`), a `RuntimeError`
    naming the model otherwise. `dtype`: "auto" (the checkpoint's) or a torch dtype."""
    from transformers import AutoModelForCausalLM

    source = resolve_source(name, "model")
    check_hub_source(source, "model")
    try:
        return AutoModelForCausalLM.from_pretrained(source, **{hf_dtype_keyword(): dtype})
    except Exception as err:  # transformers raises OSError, ValueError, HTTP errors...
        raise RuntimeError(f"cannot load model {name!r}: {_first_line(err)}") from None


def hf_dtype_keyword() -> str:
    """`from_pretrained`'s dtype keyword: `dtype` from transformers 4.56, `torch_dtype` before.
    Older releases do not refuse an unknown `dtype`: they store it in the model's config, load in
    the default dtype, and fail later when the config is written out as JSON."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def _holds_tokenizer_files(folder: str) -> bool:
    names = {entry.name for entry in os.scandir(folder) if entry.is_file()}
    return bool(names & {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt"}) or any(
        name.endswith((".model", ".tiktoken")) for name in names
    )


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class Backend:
    """Interface of a generation backend (see the module docstring)."""

    name: str = ""
    #: The model as recorded: the absolute path of a local folder, else the name (a Hub id, a served name).
    model: str = ""
    #: The model as the user wrote it.
    model_as_typed: str = ""
    tokenizer: Any = None

    @property
    def version(self) -> str | None:
        return None

    def generate(self, requests: Sequence[GenerationRequest], on_complete: OnComplete, on_tokens: OnTokens | None = None) -> None:
        """Generate every request; `on_complete` once per finished request.

        The one contract of every backend (the harness calls nothing else): `on_tokens`, when given,
        receives counts of newly generated tokens (progress) that add up to every token generated:
        while generation runs where the engine streams them, else as each request finishes.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the engine (vLLM) or client; the default does nothing."""
