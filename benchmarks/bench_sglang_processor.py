"""The SGLang processor's own cost per decoding step, per intervention, and TIP-only against an older commit.

Calls `tip_decode.sglang.ThoughtSwitchPenalty` the way SGLang's scheduler does (one call per step with
the logits rows of its requests and one `custom_params` dict per row holding a weak proxy of the
request as `__req__`), for a batch of requests that all use one configuration; each request's
`output_ids` grows by one token per step. Times the call with one torch thread. No SGLang, no
engine: this isolates the processor (bench_sglang.py measures it inside a real engine).

    python benchmarks/bench_sglang_processor.py                          # every configuration, this tree
    python benchmarks/bench_sglang_processor.py --compare-with 997ffa7   # TIP-only: this tree vs that commit

`--compare-with` exports the commit with `git archive` and runs the TIP-only measurement in fresh
subprocesses, alternating old and new, so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import weakref
from pathlib import Path

# One set of configurations, measured on both engines (the script runs from benchmarks/).
from bench_interventions import CONFIGURATIONS, WIDTH, compare_trees, each_configuration

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import vendored  # noqa: E402  (the tokenizers and data the tests ship; TIP_DECODE_TOKENIZERS / TIP_DECODE_DATA override)


class Request:
    """What the processor reads of SGLang's `Req` (the scheduler hands it a weak proxy)."""

    def __init__(self, rid: str, prompt: list[int]) -> None:
        self.rid = rid
        self.origin_input_ids = prompt
        self.output_ids: list[int] = []

    def finished(self) -> bool:
        return False


def measure(extra: dict, rows: int, steps: int) -> float:
    """Median milliseconds per processor call for `rows` requests sharing `extra`."""
    import torch

    from tip_decode.sglang import ThoughtSwitchPenalty

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    requests = [Request(f"r{i}", [100 + i, 200, 300]) for i in range(rows)]
    params = [{**extra, "__req__": weakref.proxy(r)} for r in requests]
    logits = torch.randn(rows, WIDTH, generator=generator)
    tokens = torch.randint(1000, 100000, (steps + 1, rows), generator=generator).tolist()
    processor = ThoughtSwitchPenalty()
    processor(logits.clone(), params)  # the first call builds the plan (the tokenizer's vocabulary)
    times = []
    for step in range(steps):
        for request, token in zip(requests, tokens[step]):
            request.output_ids.append(token)
        batch = logits.clone()
        start = time.perf_counter()
        processor(batch, params)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_child(tree: Path, extra: dict, args: argparse.Namespace) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree), TIP_DECODE_TOKENIZER=args.tokenizer)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(extra), "--rows", str(args.rows), "--steps", str(args.steps)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True, cwd=tree)
    return json.loads(result.stdout.strip().splitlines()[-1])["ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=str(vendored.tokenizers_dir() / "qwen3"))
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare-with", metavar="GITREF", help="measure TIP-only here and at GITREF, alternating")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"ms": measure(json.loads(args.child), args.rows, args.steps)}))
        return
    tip = CONFIGURATIONS["TIP (reflection preset)"]
    if args.compare_with:
        compare_trees(
            args.compare_with,
            lambda tree: run_child(tree, tip, args),
            args.rounds,
            f"TIP-only SGLang processor, {args.rows} rows, {args.steps} steps, one thread",
            "call",
        )
        return
    each_configuration(
        lambda extra: run_child(ROOT, extra, args),
        args.rounds,
        f"SGLang processor alone, {args.rows} rows, {args.steps} steps, one thread, width {WIDTH}",
        "call",
    )


if __name__ == "__main__":
    main()
