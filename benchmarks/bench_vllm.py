"""Throughput of a vLLM engine with the TIP processor: not loaded vs loaded with TIP off vs TIP on.

Two engines live side by side in one run: one without custom processors and one with
`tip_decode.vllm:ThoughtSwitchPenalty`; the second serves both the TIP-off and the TIP-on
configuration (TIP is chosen per request). Rounds interleave the three configurations in a
shuffled order, and ratios are taken within a round, so that load from other processes on a shared
machine hits all three alike; the spread across rounds is the noise to report.

    python benchmarks/bench_vllm.py                       # tiny random Qwen2 built from ../shared
    python benchmarks/bench_vllm.py --model PATH --requests 64 --max-tokens 256 --rounds 7

Prints a Markdown table and one JSON line with every round.
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
PROCESSOR = "tip_decode.vllm:ThoughtSwitchPenalty"


def build_tiny_model(path: Path, tokenizer_dir: Path, logit_scale: float = 30.0) -> Path:
    """The test suite's tiny random-weight Qwen2 (hidden 128, 2 layers, head_dim 64), real tokenizer."""
    os.environ.setdefault("TIP_DECODE_TOKENIZERS", str(tokenizer_dir.parent))
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_qwen2

    return build_tiny_qwen2(path, tokenizer_dir.name, logit_scale=logit_scale)


def run_round(engine, prompts, params) -> tuple[float, int]:
    start = time.perf_counter()
    outputs = engine.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(o.outputs[0].token_ids) for o in outputs)


def processor_step_ms(vllm_config, config, rows: int, steps: int = 300) -> float:
    """The processor's own cost per decoding step for `rows` TIP rows, driven with vLLM's BatchUpdate.

    Measured in this process with one torch thread, like the engine's worker; this isolates the cost
    that the noisy end-to-end ratios above cannot resolve.
    """
    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate

    from tip_decode.vllm import ThoughtSwitchPenalty

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        processor = ThoughtSwitchPenalty(vllm_config, torch.device("cpu"), False)
        outputs: list[list[int]] = [[] for _ in range(rows)]
        added = [(i, SamplingParams(extra_args=config.to_mapping()), [1, 2, 3], outputs[i]) for i in range(rows)]
        processor.update_state(BatchUpdate(batch_size=rows, removed=[], added=added, moved=[]))
        logits = torch.randn(rows, vllm_config.model_config.get_vocab_size())
        rng = random.Random(0)
        start = time.perf_counter()
        for _ in range(steps):
            for out in outputs:
                out.append(rng.randrange(1000, 100000))
            processor.update_state(None)
            processor.apply(logits)
        return 1000 * (time.perf_counter() - start) / steps
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or Hub id (default: a tiny random Qwen2 built from ../shared)")
    parser.add_argument("--tokenizers", default=os.environ.get("TIP_DECODE_TOKENIZERS", str(ROOT.parent / "shared" / "tokenizers")))
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alpha", default="3.0")
    parser.add_argument("--beta", type=int, default=600)
    parser.add_argument("--triggers", default="reflection", help="trigger list for the TIP-on requests (default: the 17-word preset)")
    args = parser.parse_args()

    from vllm import LLM, SamplingParams

    from tip_decode.core.config import TIPConfig

    workdir = tempfile.mkdtemp(prefix="tip-bench-vllm-")
    model = args.model or str(build_tiny_model(Path(workdir) / "tiny", Path(args.tokenizers) / "qwen3"))
    engine_args = dict(
        dtype="float32",
        enforce_eager=True,
        max_model_len=1024,
        gpu_memory_utilization=0.15,
        kv_cache_memory_bytes=256 * 2**20,
        max_num_seqs=max(32, args.requests),
        seed=0,
    )
    plain = LLM(model, **engine_args)
    with_tip = LLM(model, logits_processors=[PROCESSOR], **engine_args)

    config = TIPConfig(alpha=args.alpha, beta=args.beta, triggers=args.triggers, scope="all")
    prompts = [f"Problem {i}: find the sum of the first {i + 3} odd numbers. Let's think." for i in range(args.requests)]

    def params(extra):
        # Sampling, as reasoning models are run; ignore_eos so every configuration makes the same number of tokens.
        return [SamplingParams(temperature=0.7, seed=i, max_tokens=args.max_tokens, ignore_eos=True, extra_args=extra) for i in range(args.requests)]

    configurations = {
        "not loaded": (plain, params(None)),
        "loaded, TIP off": (with_tip, params({"tip_alpha": 0})),
        "loaded, TIP on": (with_tip, params(config.to_mapping())),
    }
    for engine, p in configurations.values():  # warm-up: first-use costs (vocabulary build, allocations)
        run_round(engine, prompts[:4], p[:4])

    rng = random.Random(0)
    rounds = []
    for r in range(args.rounds):
        order = list(configurations)
        rng.shuffle(order)
        result = {}
        for name in order:
            engine, p = configurations[name]
            elapsed, tokens = run_round(engine, prompts, p)
            result[name] = tokens / elapsed
        rounds.append(result)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:,.0f} tok/s" for k, v in result.items()), file=sys.stderr, flush=True)

    processor_ms = processor_step_ms(with_tip.llm_engine.vllm_config, config, args.requests)
    names = list(configurations)
    ratio_off = [r["loaded, TIP off"] / r["not loaded"] for r in rounds]
    ratio_on = [r["loaded, TIP on"] / r["not loaded"] for r in rounds]
    print(f"\n{args.requests} requests x {args.max_tokens} tokens, {args.rounds} rounds, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| configuration | median tok/s | min | max | median ratio to not loaded | ratio range |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name in names:
        values = [r[name] for r in rounds]
        if name == "not loaded":
            ratio = "1.000 |  "
        else:
            ratios = ratio_off if name == "loaded, TIP off" else ratio_on
            ratio = f"{statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f}"
        print(f"| {name} | {statistics.median(values):,.0f} | {min(values):,.0f} | {max(values):,.0f} | {ratio} |")
    step_ms = 1000 * args.requests / statistics.median(r["not loaded"] for r in rounds)
    print(
        f"\nProcessor alone, same batch ({args.requests} TIP rows, {len(config.triggers)} triggers): "
        f"{processor_ms:.3f} ms per step (update_state + apply), against a median engine step of {step_ms:.1f} ms "
        f"(an upper bound on the TIP-on cost of {processor_ms / step_ms:.1%})."
    )
    print(json.dumps({"requests": args.requests, "max_tokens": args.max_tokens, "triggers": list(config.triggers), "rounds": rounds, "processor_ms_per_step": processor_ms, "engine_step_ms": step_ms}))


if __name__ == "__main__":
    main()
