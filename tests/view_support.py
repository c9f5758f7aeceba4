"""What the viewer's tests share: one real demo run per test session, and record files to view."""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path

from click.testing import CliRunner

from tip_decode.cli import main

# click >= 8.2 keeps stderr out of result.stdout; click 8.1 mixes it in unless told not to.
STDERR_APART = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
DEMO_PROBLEMS = 30


def invoke(args: list[str]):
    return CliRunner(**STDERR_APART).invoke(main, args, catch_exceptions=False)


@functools.cache
def demo_run(base: Path) -> Path:
    """A real `tip-decode demo` run (the shipped model, baseline and TIP), made once per session."""
    out = base / "view-demo-run"
    result = invoke(["demo", "--out", str(out), "--problems", str(DEMO_PROBLEMS), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


#: R1-style responses (the chat template opened <think>), two samples of p1 and one of p2, and a
#: response whose text would end the page's script element if it were not escaped.
TRACES = [
    {
        "id": "a",
        "problem_id": "p1",
        "problem": "What is 2x when x = 3?",
        "response": "2x = 6, so the answer is 6.\n\nWait, x+1? Then 4.</think>\n\\boxed{4}",
        "answer": "6",
    },
    {"id": "b", "problem_id": "p1", "problem": "What is 2x when x = 3?", "response": "2x = 6.</think>\nThe answer is \\boxed{6}.", "answer": "6"},
    {"id": "c", "problem_id": "p2", "problem": "Pick 2.", "response": "Perhaps 9.\n\nAlternatively 8.</think>\\boxed{8}", "answer": 2},
    {
        "id": "d",
        "problem_id": "p3",
        "problem": "<b>not bold</b> & </script><script>window.injected = 1</script>",
        "response": "x </script><script>window.injected = 1</script> <!-- so 5.\n\nWait, é ü 漢字 🙂 then 5.</think>\\boxed{5}",
        "answer": "5",
    },
]
