"""A command whose optional package is missing says what to install, in one line, before any model loads."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys
for name in sys.argv[2].split(","):
    sys.modules[name] = None          # as if the eval extra were not installed
from tip_decode.cli import main
main(["demo", "--problems", "2", "--out", sys.argv[1]])
"""


@pytest.mark.parametrize("package", ["tqdm", "scipy"])
def test_missing_eval_extra_is_one_clear_line(tmp_path, package):
    blocked = {"tqdm": "tqdm,tqdm.auto", "scipy": "scipy,scipy.stats"}[package]
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out"), blocked], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert f"this command needs the package '{package}': pip install \"tip-decode[eval]\"" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "baseline.jsonl").exists()  # nothing was generated first
