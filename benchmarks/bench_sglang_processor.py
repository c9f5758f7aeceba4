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
import tempfile
import time
import weakref
from pathlib import Path

# One set of configurations, measured on both engines (the script runs from benchmarks/).
from bench_interventions import CONFIGURATIONS, WIDTH

ROOT = Path(__file__).resolve().parents[1]


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
    parser.add_argument("--tokenizer", default=str(Path(os.environ.get("TIP_DECODE_TOKENIZERS", ROOT.parent / "shared" / "tokenizers")) / "qwen3"))
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
        old = Path(tempfile.mkdtemp(prefix="tip-bench-sglang-old-"))
        archive = subprocess.run(["git", "archive", args.compare_with], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        rounds = []
        for r in range(args.rounds):
            pair = {}
            for name, tree in (("old", old), ("new", ROOT)) if r % 2 == 0 else (("new", ROOT), ("old", old)):
                pair[name] = run_child(tree, tip, args)
            rounds.append(pair)
            print(f"round {r + 1}: old {pair['old']:.3f} ms, new {pair['new']:.3f} ms", file=sys.stderr, flush=True)
        ratios = [p["new"] / p["old"] for p in rounds]
        print(f"\nTIP-only SGLang processor, {args.rows} rows, {args.steps} steps, one thread; {args.compare_with} vs this tree, {args.rounds} rounds alternating\n")
        print("| tree | median ms per call | min | max |")
        print("| --- | ---: | ---: | ---: |")
        for name in ("old", "new"):
            values = [p[name] for p in rounds]
            label = args.compare_with if name == "old" else "this tree"
            print(f"| {label} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
        print(f"\nmedian ratio new / old {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")
        print(json.dumps({"rounds": rounds}))
        return
    results = {}
    for name, extra in CONFIGURATIONS.items():
        values = [run_child(ROOT, extra, args) for _ in range(args.rounds)]
        results[name] = values
        print(f"{name}: {statistics.median(values):.3f} ms", file=sys.stderr, flush=True)
    print(f"\nSGLang processor alone, {args.rows} rows, {args.steps} steps, one thread, width {WIDTH}, median of {args.rounds} runs\n")
    print("| configuration | median ms per call | min | max | ratio to TIP |")
    print("| --- | ---: | ---: | ---: | ---: |")
    tip_ms = statistics.median(results["TIP (reflection preset)"])
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} | {statistics.median(values) / tip_ms:.2f} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
