"""Per-step cost of the llama-cpp-python and mlx-lm processors next to the engine's own step.

For each engine, on its tiny test model, the same greedy generation runs without a processor and
with one per intervention setting, alternately (ABAB...), and every processor call is timed inside
the engine (a wrapper around `__call__`). Reported per generated token: the engine's own step
(medians of the runs without a processor), the processor's call, and the whole step with it.

    TIP_DECODE_LLAMA_CPP_SOURCE=... flock /work/heavy.lock python benchmarks/bench_local.py --out bench-local.json

Models: llama.cpp runs a tiny random Qwen2 (hidden 64, 2 layers) with the real qwen3 vocabulary
(151,680 logits per step), converted by llama.cpp's own converter; mlx-lm runs the shipped demo
model (62 logits per step). Both are far smaller than real models, so the processor's share of a
step here is an upper bound of its share on a real model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "tip": {"tip_alpha": 3.0, "tip_beta": 600},
    "nowait": {"nowait": 1},
    "budget": {"budget_min": 40, "budget_max": 200},
    "tip+nowait+budget": {"tip_alpha": 3.0, "tip_beta": 600, "nowait": 1, "budget_max": 200},
    "gated": {"gated_alpha": 3.0, "gated_beta": 600},
}


class Timed:
    def __init__(self, processor):
        self.processor = processor
        self.seconds: list[float] = []

    def __call__(self, tokens, logits):
        start = time.perf_counter()
        out = self.processor(tokens, logits)
        self.seconds.append(time.perf_counter() - start)
        return out


def bench_llama(tokens: int, rounds: int) -> dict:
    import llama_cpp

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from local_engines import build_tiny_model, convert_to_gguf
    from transformers import AutoTokenizer

    from tip_decode.llama_cpp import ReasoningInterventionsProcessor

    folder = Path(tempfile.mkdtemp())
    import vendored  # tests/vendored.py: the tokenizers the tests ship (TIP_DECODE_TOKENIZERS overrides)

    tokenizer = AutoTokenizer.from_pretrained(str(vendored.tokenizers_dir() / "qwen3"))
    gguf = convert_to_gguf(build_tiny_model(folder / "hf", tokenizer), folder / "tiny.gguf")
    llm = llama_cpp.Llama(str(gguf), n_ctx=tokens + 64, n_threads=2, seed=0, verbose=False)
    prompt = "<|im_start|>user\nHow many primes are below 100?<|im_end|>\n<|im_start|>assistant\n<think>\n"

    def run(processor):
        processors = llama_cpp.LogitsProcessorList([processor]) if processor is not None else None
        start = time.perf_counter()
        out = llm(prompt, max_tokens=tokens, temperature=0.0, repeat_penalty=1.0, logits_processor=processors)
        return (time.perf_counter() - start) / max(1, out["usage"]["completion_tokens"])

    return _bench(run, lambda s: ReasoningInterventionsProcessor(llm, s), rounds, {"model": "tiny Qwen2, qwen3 vocabulary", "logits": llm.n_vocab()})


def bench_mlx(tokens: int, rounds: int) -> dict:
    import mlx_lm

    from tip_decode.demo import MODEL_DIR
    from tip_decode.demo.task import make_problems
    from tip_decode.mlx import ReasoningInterventionsProcessor

    model, tokenizer = mlx_lm.load(str(MODEL_DIR))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": make_problems(1)[0].prompt_text()}], add_generation_prompt=True)

    def run(processor):
        count = 0
        start = time.perf_counter()
        for _ in mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=tokens, logits_processors=[processor] if processor else None):
            count += 1
        return (time.perf_counter() - start) / max(1, count)

    settings = {k: v for k, v in SETTINGS.items()}
    settings["tip"] = {"tip_alpha": 3.0, "tip_beta": 600, "tip_triggers": ["Alternatively", "Wait"]}
    return _bench(run, lambda s: ReasoningInterventionsProcessor(tokenizer, s), rounds, {"model": "demo model", "logits": 62}, settings)


def _bench(run, make, rounds: int, info: dict, settings: dict | None = None) -> dict:
    settings = settings or SETTINGS
    run(None)  # warm-up
    base: list[float] = []
    rows = {}
    timed = {name: Timed(make(s)) for name, s in settings.items()}
    steps: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(rounds):
        for name, processor in timed.items():
            base.append(run(None))
            steps[name].append(run(processor))
    engine = statistics.median(base)
    for name, processor in timed.items():
        call = statistics.median(processor.seconds)
        step = statistics.median(steps[name])
        rows[name] = {"processor_call_us": round(call * 1e6, 1), "step_with_processor_ms": round(step * 1e3, 3), "share_of_step": round(call / step, 4)}
    return {**info, "engine_step_ms": round(engine * 1e3, 3), "settings": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", default="llama-cpp,mlx")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = {"tokens": args.tokens, "rounds": args.rounds}
    if "llama-cpp" in args.engines:
        result["llama-cpp"] = bench_llama(args.tokens, args.rounds)
    if "mlx" in args.engines:
        result["mlx"] = bench_mlx(args.tokens, args.rounds)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
