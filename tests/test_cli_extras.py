"""A command whose optional package is missing says what to install, in one line."""

import subprocess
import sys

SCRIPT = """
import sys
sys.modules["tqdm"] = None          # as if the eval extra were not installed
sys.modules["tqdm.auto"] = None
from tip_decode.cli import main
main(["demo", "--problems", "2", "--out", sys.argv[1]])
"""


def test_missing_eval_extra_is_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "this command needs the package 'tqdm': pip install \"tip-decode[eval]\"" in result.stderr
    assert "Traceback" not in result.stderr
