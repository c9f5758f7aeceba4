"""Cost of the TIP processor inside SGLang: end-to-end ratios and the time spent in the processor per step.

Runs with the SGLang interpreter (`bash .ci/sglang-env.sh /tmp/sglang-venv` builds one):

    /tmp/sglang-venv/bin/python benchmarks/bench_sglang.py                  # tiny random Qwen2, CPU
    /tmp/sglang-venv/bin/python benchmarks/bench_sglang.py --requests 32 --max-tokens 128 --rounds 5

One offline `sglang.Engine` (overlap scheduler on, `SGLANG_ENABLE_DELAY_SAMPLE=1`, as `tip-decode serve
--engine sglang` runs it) serves every configuration, since processors are chosen per request:
- `none`: no processor;
- `tip-off`: the processor with `tip_alpha: 0` (its bookkeeping only);
- `tip-on`: the processor with the "reflection" trigger preset, scope "all", beta 600 (the window is
  open at every step: the penalty is written every step);
- `tip-on-timed`: the same through a subclass (benchmarks/sglang_timing.py) that records the seconds
  spent inside the processor per call; its wall time is not used in the ratios.
Rounds shuffle the order; ratios are taken within a round. Prints a Markdown table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import vendored  # noqa: E402  (the tokenizers and data the tests ship; TIP_DECODE_TOKENIZERS / TIP_DECODE_DATA override)

HERE = Path(__file__).resolve().parent


def build_tiny_model(path: Path, tokenizers: Path) -> Path:
    os.environ.setdefault("TIP_DECODE_TOKENIZERS", str(tokenizers))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_qwen2

    return build_tiny_qwen2(path, "qwen3", logit_scale=30.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the tests' tiny Qwen2)")
    parser.add_argument("--tokenizers", default=str(vendored.tokenizers_dir()))
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-sglang-"))
    model = args.model or str(build_tiny_model(work / "model", Path(args.tokenizers)))
    timing_file = work / "processor-times.txt"
    os.environ["SGLANG_ENABLE_DELAY_SAMPLE"] = "1"
    os.environ["TIP_DECODE_BENCH_TIMING"] = str(timing_file)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(HERE))

    import sglang
    import sglang_timing
    from transformers import AutoTokenizer

    from tip_decode.sglang import custom_params, processor_string

    tokenizer = AutoTokenizer.from_pretrained(model)
    engine = sglang.Engine(
        model_path=model,
        device="cpu",
        model_impl="transformers",
        dtype="float32",
        enable_custom_logit_processor=True,
        mem_fraction_static=0.05,
        max_total_tokens=16384,
        max_running_requests=max(32, args.requests),
        log_level="warning",
    )
    prompts = [tokenizer.encode(f"Question {i}: how many primes are below {10 * (i + 2)}?\nAnswer:") for i in range(args.requests)]
    tip_on = custom_params(alpha=3.0, beta=600, triggers="reflection", scope="all")
    configs = {
        "none": (None, None),
        "tip-off": (processor_string(), custom_params(alpha=0)),
        "tip-on": (processor_string(), tip_on),
        "tip-on-timed": (processor_string(sglang_timing.TimedThoughtSwitchPenalty), tip_on),
    }

    def run(name: str) -> tuple[float, int]:
        processor, params = configs[name]
        sampling = {"temperature": 0.0, "max_new_tokens": args.max_tokens, "min_new_tokens": args.max_tokens}
        if params is not None:
            sampling["custom_params"] = params
        kwargs = {"custom_logit_processor": [processor] * len(prompts)} if processor else {}
        start = time.perf_counter()
        outputs = engine.generate(input_ids=prompts, sampling_params=[dict(sampling) for _ in prompts], **kwargs)
        return time.perf_counter() - start, sum(len(o["output_ids"]) for o in outputs)

    for name in configs:  # warm-up: vocabularies, first-call allocations
        run(name)
    rng = random.Random(0)
    rounds = []
    for _ in range(args.rounds):
        order = list(configs)
        rng.shuffle(order)
        timing_file.write_text("")
        result = {name: run(name) for name in order}
        calls = [line.split() for line in timing_file.read_text().splitlines() if line.strip()]
        seconds = [float(c[0]) for c in calls]
        rows = [int(c[1]) for c in calls]
        wall_on, tokens_on = result["tip-on"]
        steps = len(calls)
        rounds.append(
            {
                "wall_s": {k: v[0] for k, v in result.items()},
                "tokens": {k: v[1] for k, v in result.items()},
                "ratio_tip_off": result["tip-off"][0] / result["none"][0],
                "ratio_tip_on": wall_on / result["none"][0],
                "processor_calls": steps,
                "processor_ms_per_call": 1e3 * statistics.mean(seconds),
                "processor_ms_per_call_median": 1e3 * statistics.median(seconds),
                "rows_per_call": statistics.mean(rows),
                "step_ms_tip_on": 1e3 * wall_on / steps,
                "processor_share_of_step": statistics.mean(seconds) / (wall_on / steps),
            }
        )
    engine.shutdown()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def spread(key: str) -> str:
        values = [r[key] for r in rounds]
        return f"{min(values):.3f}-{max(values):.3f}"

    print(
        f"SGLang {sglang.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {args.requests} requests x {args.max_tokens} tokens, {args.rounds} rounds\n"
    )
    print("| quantity | median | range over rounds |")
    print("| --- | --- | --- |")
    print(f"| wall time TIP off / no processor | {med('ratio_tip_off'):.3f} | {spread('ratio_tip_off')} |")
    print(f"| wall time TIP on / no processor | {med('ratio_tip_on'):.3f} | {spread('ratio_tip_on')} |")
    print(f"| time in the processor per call (ms, {med('rows_per_call'):.0f} rows) | {med('processor_ms_per_call'):.3f} | {spread('processor_ms_per_call')} |")
    print(f"| step time with TIP on (ms) | {med('step_ms_tip_on'):.2f} | {spread('step_ms_tip_on')} |")
    print(f"| processor share of the step | {med('processor_share_of_step'):.3f} | {spread('processor_share_of_step')} |")
    print(json.dumps({"requests": args.requests, "max_tokens": args.max_tokens, "rounds": rounds}))


if __name__ == "__main__":
    main()
