"""Cost of path-abandonment analysis, measured side by side in one run.

1. AbandonmentDetector per call vs TIPLogitsProcessor and transformers' SuppressTokensLogitsProcessor
   on the same consecutive calls (width 151,936, batch 1 and 16): median seconds per call.
2. Whole `generate` on a small random-weight Qwen2 (width 151,936), greedy: no processor vs the
   detector, runs interleaved and repeated, medians compared.
3. Offline analysis throughput: `analyze_response` (answer-match judge, math-verify grading) over the
   500 MATH-500 reference solutions, qwen3 tokenizer.

    python benchmarks/bench_analysis.py [--threads 1] [--tokenizers DIR] [--data DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import Qwen2Config, Qwen2ForCausalLM, SuppressTokensLogitsProcessor

from tip_decode import SwitchVocabulary
from tip_decode.analysis import analyze_response
from tip_decode.hf import AbandonmentDetector, TIPLogitsProcessor

WIDTH = 151_936
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import vendored  # noqa: E402  (the tokenizers and data the tests ship; TIP_DECODE_TOKENIZERS / TIP_DECODE_DATA override)


def per_call(processor, batch: int, steps: int = 60) -> float:
    torch.manual_seed(0)
    ids = torch.randint(0, 150_000, (batch, 1024))
    scores = torch.randn(batch, WIDTH)
    new = torch.randint(0, 150_000, (batch, steps + 5))
    processor(ids, scores)
    times = []
    for k in range(steps):
        ids = torch.cat((ids, new[:, k : k + 1]), dim=1)
        start = time.perf_counter()
        processor(ids, scores)
        times.append(time.perf_counter() - start)
    return statistics.median(times[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizers", type=Path, default=vendored.tokenizers_dir())
    parser.add_argument("--data", type=Path, default=vendored.data_dir())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is steadiest on a shared box)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = Tokenizer.from_file(str(args.tokenizers / "qwen3" / "tokenizer.json"))
    vocab = SwitchVocabulary.from_tokenizer(tokenizer, "reflection")
    results: dict = {"per_call_ms": {}, "generate_s": {}, "analysis": {}}

    print("1. per call (ms, median), width 151,936, 1,024-token history")
    for batch in (1, 16):
        row = {
            "suppress_tokens": per_call(SuppressTokensLogitsProcessor(list(vocab.token_ids)), batch),
            "tip": per_call(TIPLogitsProcessor(vocab, alpha=3.0, beta=600, scope="all"), batch),
            "detector": per_call(AbandonmentDetector(vocab, scope="all"), batch),
        }
        results["per_call_ms"][batch] = {k: v * 1000 for k, v in row.items()}
        print(f"  batch {batch:2d}: " + ", ".join(f"{k} {v * 1000:.3f}" for k, v in row.items()) + f"; detector / tip = {row['detector'] / row['tip']:.2f}")

    print(f"2. whole generate, {args.new_tokens} new tokens, greedy, batch 4 (s, median of {args.repeats})")
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=WIDTH, hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False
    )
    model = Qwen2ForCausalLM(config).eval()
    inputs = torch.randint(0, 150_000, (4, 32))
    timings: dict[str, list[float]] = {"plain": [], "detector": []}
    for _ in range(args.repeats):
        for name in timings:
            processors = [AbandonmentDetector(vocab, scope="all")] if name == "detector" else []
            start = time.perf_counter()
            model.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                logits_processor=processors,
                pad_token_id=0,
            )
            timings[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in timings.items()}
    results["generate_s"] = medians
    print(f"  plain {medians['plain']:.2f}, with detector {medians['detector']:.2f}; ratio {medians['detector'] / medians['plain']:.3f}")

    print("3. analyze_response over the 500 MATH-500 reference solutions")
    rows = [json.loads(line) for line in (args.data / "math500.jsonl").read_text().splitlines() if line.strip()]
    start = time.perf_counter()
    tokens = 0
    for row in rows:
        a = analyze_response(row["solution"], vocabulary=vocab, tokenizer=tokenizer, reference=row["answer"], scope="all")
        tokens += a.n_tokens
    elapsed = time.perf_counter() - start
    results["analysis"] = {"responses": len(rows), "tokens": tokens, "seconds": elapsed}
    print(f"  {len(rows)} responses, {tokens} tokens in {elapsed:.1f} s: {len(rows) / elapsed:.1f} responses/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
