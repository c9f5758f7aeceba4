"""Running real SGLang servers and engines for the tests, and checking what the processor applied.

SGLang lives in its own virtual environment (`bash .ci/sglang-env.sh DIR` builds it; CI builds it
fresh); the tests find its interpreter through `TIP_DECODE_SGLANG_PYTHON` and start servers and
engines as subprocesses of it. Without it the SGLang tests skip locally and FAIL under CI
(`TIP_DECODE_REQUIRE_SGLANG=1`), so a CI run can never pass without exercising a real SGLang.

Every server or engine start is serialised through `flock /tmp/tip-heavy.lock`-style locking by the
caller (the test suite as a whole runs under it); each start takes 40-70 s on two CPU cores, so the
fixtures are module-scoped: one start per configuration.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import reference
from conftest import ROOT, build_tiny_qwen2

TESTS = Path(__file__).resolve().parent
ENV_PYTHON = "TIP_DECODE_SGLANG_PYTHON"
ENV_REQUIRE = "TIP_DECODE_REQUIRE_SGLANG"
START_TIMEOUT_S = float(os.environ.get("TIP_DECODE_SGLANG_TIMEOUT", "420"))
#: Server / engine arguments that keep SGLang small on a shared 2-core CPU machine. The KV pool is
#: capped by max-total-tokens; mem-fraction-static only has to exceed the share of the machine's free
#: memory that other processes take while the model loads (SGLang measures free memory before and after
#: the load, and at 0.05 another test's engine starting alongside was enough to fail the check).
SERVER_ARGS = [
    "--device",
    "cpu",
    "--model-impl",
    "transformers",
    "--dtype",
    "float32",
    "--mem-fraction-static",
    "0.25",
    "--max-total-tokens",
    "8192",
    "--max-running-requests",
    "32",
    "--skip-server-warmup",
    "--log-level",
    "warning",
]
ENGINE_KWARGS = {
    "device": "cpu",
    "model_impl": "transformers",
    "dtype": "float32",
    "mem_fraction_static": 0.25,
    "max_total_tokens": 8192,
    "max_running_requests": 32,
    "log_level": "warning",
    "enable_custom_logit_processor": True,
}
TINY_LOGIT_SCALE = 30.0
PROMPTS = [
    "Question: how many primes are below 100?\nAnswer:",
    "<|im_start|>user\nSolve 2x + 3 = 11.<|im_end|>\n<|im_start|>assistant\n<think>\n",
    "The quick brown fox",
]


def sglang_python() -> str:
    """The SGLang interpreter, or a skip (locally) / failure (CI) that says how to get one."""
    path = os.environ.get(ENV_PYTHON)
    required = os.environ.get(ENV_REQUIRE) == "1"
    hint = f"set {ENV_PYTHON} to the python of an SGLang environment (bash .ci/sglang-env.sh /tmp/sglang-venv prints it)"
    if not path:
        if required:
            pytest.fail(f"{ENV_REQUIRE}=1 but {ENV_PYTHON} is not set; {hint}", pytrace=False)
        pytest.skip(f"no SGLang environment: {hint}")
    problem = _check_python(path)
    if problem:
        if required:
            pytest.fail(f"{ENV_PYTHON}={path} is not usable: {problem}", pytrace=False)
        pytest.skip(f"{ENV_PYTHON}={path} is not usable: {problem}")
    return path


@cache
def _check_python(path: str) -> str | None:
    try:
        result = subprocess.run([path, "-c", "import sglang, tip_decode.sglang"], capture_output=True, text=True, timeout=300, env=subprocess_env())
    except OSError as err:
        return str(err)
    return None if result.returncode == 0 else result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of SGLang subprocesses: this checkout's tip_decode and the tests' helpers first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra)
    return env


def build_model(path: Path) -> Path:
    """The tiny random Qwen2 with the real qwen3 tokenizer, output layer scaled for greedy parity."""
    return build_tiny_qwen2(path, "qwen3", seed=0, logit_scale=TINY_LOGIT_SCALE)


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- server


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]

    def post(self, path: str, body: dict[str, Any], timeout: float = 300) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def generate(self, body: dict[str, Any]) -> Any:
        status, reply = self.post("/generate", body)
        assert status == 200, f"HTTP {status}: {reply}\n{self.log_tail()}"
        return reply

    def alive(self) -> bool:
        return self.process.poll() is None


def start_server(command: list[str], env: dict[str, str], log_path: Path, port: int) -> Server:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the SGLang server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=5) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(1.0)
    stop(process)
    raise RuntimeError(f"the SGLang server did not answer within {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def stop(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM to the process group the server leads (scheduler and detokenizer included), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # children that outlived their leader
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ----------------------------------------------------------------------------- offline engine


class EngineWorker:
    """An `sglang.Engine` in a subprocess of the SGLang interpreter, driven by JSON lines."""

    def __init__(self, python: str, engine_kwargs: dict[str, Any], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [python, str(TESTS / "sglang_engine_worker.py"), json.dumps(engine_kwargs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        reply = self._read(START_TIMEOUT_S)
        assert reply.get("ready"), reply

    def _read(self, timeout_s: float) -> dict[str, Any]:
        import select

        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 1.0)
            if ready:
                line = self.process.stdout.readline()
                if not line:
                    break
                return json.loads(line)
            if self.process.poll() is not None:
                break
        raise RuntimeError(f"the SGLang engine worker stopped answering:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def call(self, method: str, **kwargs: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"method": method, "kwargs": kwargs}) + "\n").encode())
        self.process.stdin.flush()
        reply = self._read(600)
        if "error" in reply:
            raise RuntimeError(f"engine {method} failed: {reply['error']}\n{self.log_tail()}")
        return reply["result"]

    def close(self) -> None:
        try:
            if self.process.poll() is None and self.process.stdin is not None:
                self.process.stdin.write(b'{"method": "shutdown", "kwargs": {}}\n')
                self.process.stdin.flush()
                self.process.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        stop(self.process, grace_s=10)
        self._log.close()


# ----------------------------------------------------------------------------- checking penalties


def word_triggers(tokenizer: Any, sequences: list[list[int]], count: int) -> list[str]:
    """Words the untouched greedy outputs start tokens with: penalising them changes the output."""
    words: list[str] = []
    for seq in sequences:
        for token in seq:
            text = tokenizer.decode([token]).strip()
            if len(text) >= 3 and text.isascii() and text.isalpha() and text.lower() not in words:
                words.append(text.lower())
    assert len(words) >= count, f"the tiny model generated too few word tokens: {sequences}"
    return words[:count]


def step_logprobs(reply: dict[str, Any]) -> list[dict[int, float]]:
    """Per generated token, {token id: processed log-probability} of the requested ids."""
    return [{int(entry[1]): float(entry[0]) for entry in step} for step in reply["meta_info"]["output_token_ids_logprobs"]]


def prompt_is_open(prompt_ids: list[int], vocab: Any, scope: str) -> bool:
    think = vocab.think
    last = {token: i for i, token in enumerate(prompt_ids)}
    return scope == "think" and last.get(think.start_id, -1) > last.get(think.end_id, -1)


def check_against_reference(
    *,
    vocab: Any,
    ids: list[int],
    anchor: int,
    prompt_ids: list[int],
    config: Any,
    raw: dict[str, Any],
    got: dict[str, Any],
    lag: bool,
) -> tuple[int, int, int]:
    """Assert that `got`'s processed logits are `raw`'s minus the reference penalty at every step.

    Log-probabilities are compared as differences to the never-penalised `anchor` id, which cancels
    the log-softmax normaliser: (got[j] - got[anchor]) - (raw[j] - raw[anchor]) = -penalty[j].
    With `lag`, the penalty of step t must be the reference's for step t-1 (the overlap scheduler
    without delayed sampling: the processor sees the output one token late).

    Returns (steps compared, steps with a penalty, penalty windows that closed).
    """
    generated, base = list(got["output_ids"]), list(raw["output_ids"])
    got_lp, raw_lp = step_logprobs(got), step_logprobs(raw)
    enabled = config is not None and config.enabled
    scope = vocab.resolve_scope(config.scope) if enabled else "all"
    prompt_open = prompt_is_open(prompt_ids, vocab, scope)
    compared = penalised_steps = closed = 0
    was_penalised = False
    for t in range(min(len(generated), len(got_lp), len(raw_lp))):
        if generated[:t] != base[:t]:
            break  # the histories differ from here on: raw values no longer known
        t_ref = max(t - 1, 0) if lag else t
        penalised = reference.penalised(vocab, scope, prompt_open, generated, t_ref, config.beta) if enabled else set()
        for token in ids:
            want = (raw_lp[t][token] - raw_lp[t][anchor]) - (config.alpha if token in penalised else 0.0)
            value = got_lp[t][token] - got_lp[t][anchor]
            assert math.isfinite(want) and value == pytest.approx(want, abs=2e-4), (t, token, token in penalised, value, want)
        compared += 1
        penalised_steps += bool(penalised)
        closed += was_penalised and not penalised
        was_penalised = was_penalised or bool(penalised)
    return compared, penalised_steps, closed


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- scenarios shared by server and engine


def greedy(max_new_tokens: int, **extra: Any) -> dict[str, Any]:
    """Greedy sampling parameters that run the full length (stop tokens masked, as HF's min_new_tokens)."""
    return {"temperature": 0.0, "max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens, **extra}


MIXED_STEPS = 20


def mixed_batch_check(generate: Any, tokenizer: Any, untouched: list[list[int]], lag: bool) -> None:
    """One batch of TIP on / off / different settings per request, plus requests without the processor.

    `generate(input_ids, sampling_params, processors, token_ids_logprob)` returns one reply per row
    (SGLang's `/generate` / `Engine.generate` dicts). Every TIP row's processed logits must equal the
    raw ones minus the reference penalty at every step; every other row's must equal the raw ones.
    """
    from tip_decode import SwitchVocabulary, TIPConfig
    from tip_decode.sglang import custom_params, processor_string

    triggers = word_triggers(tokenizer, untouched, 3)
    vocab = SwitchVocabulary.from_tokenizer(tokenizer, triggers)
    ids = list(vocab.penalised_ids)[:120]
    assert ids, triggers
    anchor = next(i for i in range(1000) if i not in vocab.penalised_ids)
    prompt_ids = [tokenizer.encode(p) for p in PROMPTS]
    # Small alphas: the greedy path stays the untouched one (logits are ~30x separated), so the raw
    # logits along it are known, while switches still happen and move psi.
    configs = [
        TIPConfig(alpha=0.25, beta=6, triggers=triggers, scope="all"),
        TIPConfig(alpha=0.5, beta=4, triggers=triggers, scope="auto"),  # qwen3 has think markers: think
        TIPConfig.off(),
        None,  # no processor at all
    ]
    rows = [(p, c) for p in range(len(PROMPTS)) for c in configs]
    processor = processor_string()
    raw = generate(prompt_ids, [greedy(MIXED_STEPS) for _ in PROMPTS], [None] * len(PROMPTS), [ids + [anchor]] * len(PROMPTS))
    got = generate(
        [prompt_ids[p] for p, _ in rows],
        [greedy(MIXED_STEPS, **({} if c is None else {"custom_params": custom_params(c)})) for _, c in rows],
        [None if c is None else processor for _, c in rows],
        [ids + [anchor]] * len(rows),
    )
    compared = penalised = closed = 0
    for (p, config), reply in zip(rows, got):
        c, n, k = check_against_reference(vocab=vocab, ids=ids, anchor=anchor, prompt_ids=prompt_ids[p], config=config, raw=raw[p], got=reply, lag=lag)
        compared, penalised, closed = compared + c, penalised + n, closed + k
    assert compared >= len(rows) * MIXED_STEPS // 2, compared
    assert penalised >= 4 and closed >= 1, (penalised, closed)


PARITY_STEPS = 24


def hf_parity_check(generate: Any, tokenizer: Any, untouched: list[list[int]], model_dir: Path) -> None:
    """Greedy, float32, TIP banning words the model prefers: SGLang and HF `generate` agree token for token."""
    import torch

    from tip_decode import TIPConfig
    from tip_decode.harness.backend_base import load_hf_causal_lm
    from tip_decode.hf import TIPLogitsProcessor
    from tip_decode.sglang import custom_params, processor_string

    config = TIPConfig(alpha=math.inf, beta=12, triggers=word_triggers(tokenizer, untouched, 4), scope="all")
    prompt_ids = [tokenizer.encode(p) for p in PROMPTS]
    replies = generate(prompt_ids, [greedy(PARITY_STEPS, custom_params=custom_params(config)) for _ in PROMPTS], [processor_string()] * len(PROMPTS), None)
    sglang_on = [list(r["output_ids"]) for r in replies]
    assert sglang_on != [u[:PARITY_STEPS] for u in untouched], "the penalty window changed no output; the test would prove nothing"
    model = load_hf_causal_lm(str(model_dir), dtype=torch.float32).eval()
    for ids, want_off, want_on in zip(prompt_ids, untouched, sglang_on):
        inputs = torch.tensor([ids])
        kwargs = dict(max_new_tokens=PARITY_STEPS, min_new_tokens=PARITY_STEPS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        with torch.no_grad():
            off = model.generate(inputs, attention_mask=torch.ones_like(inputs), **kwargs)[0, len(ids) :].tolist()
            tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=config.alpha, beta=config.beta, triggers=config.triggers, scope="all")
            on = model.generate(inputs, attention_mask=torch.ones_like(inputs), logits_processor=[tip], **kwargs)[0, len(ids) :].tolist()
        assert off == want_off[:PARITY_STEPS]
        assert on == want_on


# ----------------------------------------------------------------------------- server requests


def batch_generate(server: Server):
    def generate(input_ids, sampling_params, processors, token_ids_logprob):
        body = {"input_ids": input_ids, "sampling_params": sampling_params}
        if any(p is not None for p in processors):
            body["custom_logit_processor"] = processors
        if token_ids_logprob is not None:
            body.update(return_logprob=True, token_ids_logprob=token_ids_logprob)
        reply = server.generate(body)
        assert isinstance(reply, list) and len(reply) == len(input_ids), reply
        return reply

    return generate


def untouched_outputs(server: Server, tokenizer) -> list[list[int]]:
    replies = batch_generate(server)([tokenizer.encode(p) for p in PROMPTS], [greedy(24) for _ in PROMPTS], [None] * len(PROMPTS), None)
    return [list(r["output_ids"]) for r in replies]
