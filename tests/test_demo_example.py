"""examples/demo_trace.py runs as a user runs it and prints the thoughts it claims to print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo_trace.py"


def test_demo_trace_example_shows_thoughts_with_and_without_tip():
    result = subprocess.run([sys.executable, str(EXAMPLE), "--problem", "14"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("problem 14: start ")
    headers = re.findall(r"^--- (.+?): (\d+) switches, (\d+) tokens, answer (\S+) \((correct|wrong)\)$", out, re.MULTILINE)
    assert [h[0] for h in headers] == ["baseline", "TIP alpha=3 beta=20"]
    # Every thought line names its step and where it leads; the first thought of each response has no switch word.
    thoughts = re.findall(r"^  \[\s*(\d+) tokens, step \+(\d+|None): (reaches the goal|dead end|no step)\] (\S+)", out, re.MULTILINE)
    assert len(thoughts) == sum(int(h[1]) + 1 for h in headers)
    assert sum(int(t[0]) for t in thoughts) == sum(int(h[2]) for h in headers)
