"""Served backends: `openai` (a vLLM server through the OpenAI API) and `sglang` (its /generate route)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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
from tip_decode.harness.configs import request_mapping
from tip_decode.harness.preflight import InputError

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
        import openai

        try:
            complete_concurrently(requests, self._one, self.concurrency, on_complete, on_tokens)
        except openai.APIConnectionError:
            raise RuntimeError(f"lost the connection to the server at {self.base_url}") from None
        except openai.BadRequestError as err:
            raise RuntimeError(f"the server rejected a request: {err.message}") from None


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
            source = tokenizer or info.get("tokenizer_path") or self.model
            try:
                tokenizer = load_hf_tokenizer(source)
            except (RuntimeError, InputError) as err:  # the server's path may not exist on this machine
                raise type(err)(f"{err} (pass --tokenizer: the served model's tokenizer folder)") from None
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

    def generate(self, requests: Sequence[GenerationRequest], on_complete: OnComplete, on_tokens: OnTokens | None = None) -> None:
        complete_concurrently(requests, self._one, self.concurrency, on_complete, on_tokens)


def complete_concurrently(
    requests: Sequence[GenerationRequest], one: Callable[[GenerationRequest], Completion], workers: int, on_complete: OnComplete, on_tokens: OnTokens | None
) -> None:
    """`one` request at a time in each of `workers` threads, which only wait on HTTP; each
    completion is reported (written and graded) here in the calling thread as it finishes, its
    tokens counted then (a server answers whole). An error stops the run: what is still queued is
    cancelled."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {pool.submit(one, r): r for r in requests}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    request = pending.pop(future)
                    completion = future.result()
                    if on_tokens is not None:
                        on_tokens(len(completion.token_ids))
                    on_complete(request, completion)
        finally:
            for future in pending:
                future.cancel()
