"""Cost of TIPLogitsProcessor, measured side by side with transformers' own processors in one run.

1. Per call: TIPLogitsProcessor vs SuppressTokensLogitsProcessor on the same ids, vocabulary width
   151,936, batch 1 / 16 / 64, token histories of 1k and 16k. The processor is driven through real
   consecutive calls (a first call that sees the history, then steady-state steps one token longer
   each); at batch 1 the 16k history is also generated step by step, so that its state really
   follows 16k generated tokens.
2. Whole `generate`: a small random-weight Qwen2 (width 151,936) with vs without TIP, greedy,
   runs interleaved and repeated, medians compared.

    python benchmarks/bench_hf.py [--device cuda] [--tokenizer ../shared/tokenizers/qwen3] [--json out.json]

With --sync-check on CUDA the steady-state calls run under torch.cuda.set_sync_debug_mode("error"),
which raises on any host-device synchronisation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, SuppressTokensLogitsProcessor

from tip_decode.hf import TIPLogitsProcessor

WIDTH = 151_936
ROOT = Path(__file__).resolve().parents[1]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(processor, ids: torch.Tensor, scores: torch.Tensor, steps: int, device, sync_check: bool) -> float:
    """Median seconds per call over `steps` consecutive calls, each one token longer."""
    new = torch.randint(0, 150_000, (ids.shape[0], steps + 10), device=device)
    processor(ids, scores)  # first call: sees the whole history once
    for k in range(5):  # warm-up steps
        ids = torch.cat((ids, new[:, k : k + 1]), dim=1)
        processor(ids, scores)
    times = []
    if sync_check and device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        for k in range(5, steps + 5):
            ids = torch.cat((ids, new[:, k : k + 1]), dim=1)
            synchronize(device)
            start = time.perf_counter()
            processor(ids, scores)
            synchronize(device)
            times.append(time.perf_counter() - start)
    finally:
        if sync_check and device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    return statistics.median(times)


def per_call(tokenizer, device, batches, histories, steps, sync_check) -> list[dict]:
    rows = []
    for batch in batches:
        for history in histories:
            ids = torch.randint(0, 150_000, (batch, history), device=device)
            scores = torch.randn(batch, WIDTH, device=device)
            tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=600, triggers="reflection", scope="all")
            suppress = SuppressTokensLogitsProcessor(list(tip.vocabulary.penalised_ids), device=device)
            # interleave the two processors, three rounds, keep the best median of each
            tip_times, suppress_times = [], []
            for _ in range(3):
                tip.reset()
                tip_times.append(time_steps(tip, ids, scores, steps, device, sync_check))
                suppress_times.append(time_steps(suppress, ids, scores, steps, device, False))
            rows.append(
                {
                    "batch": batch,
                    "history": history,
                    "history_kind": "first call",
                    "tip_ms": 1e3 * min(tip_times),
                    "suppress_ms": 1e3 * min(suppress_times),
                }
            )
    return rows


def generated_history(tokenizer, device, history: int, steps: int) -> dict:
    """Batch 1: the processor's state follows `history` generated tokens, fed one call at a time."""
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=600, triggers="reflection", scope="all")
    prompt = torch.randint(0, 150_000, (1, 64), device=device)
    scores = torch.randn(1, WIDTH, device=device)
    tokens = torch.randint(0, 150_000, (1, history + steps), device=device)
    tip(prompt, scores)
    ids = prompt
    times = []
    for k in range(history + steps):
        ids = torch.cat((ids, tokens[:, k : k + 1]), dim=1)
        if k >= history:
            synchronize(device)
            start = time.perf_counter()
        tip(ids, scores)
        if k >= history:
            synchronize(device)
            times.append(time.perf_counter() - start)
    return {"batch": 1, "history": history, "history_kind": "generated", "tip_ms": 1e3 * statistics.median(times)}


def whole_generate(tokenizer, device, batch: int, new_tokens: int, repeats: int) -> dict:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=WIDTH, hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config).to(device).eval()
    ids = torch.randint(0, 150_000, (batch, 32), device=device)
    common = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=600, triggers="reflection", scope="all")

    def one(with_tip: bool) -> float:
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), logits_processor=[tip] if with_tip else [], **common)
        synchronize(device)
        return time.perf_counter() - start

    one(False), one(True)  # warm-up
    plain, with_tip = [], []
    for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
        plain.append(one(False))
        with_tip.append(one(True))
    return {
        "batch": batch,
        "new_tokens": new_tokens,
        "plain_s": statistics.median(plain),
        "tip_s": statistics.median(with_tip),
        "ratio": statistics.median(with_tip) / statistics.median(plain),
        "plain_runs_s": plain,
        "tip_runs_s": with_tip,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokenizer", default=str(ROOT.parent / "shared" / "tokenizers" / "qwen3"))
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--histories", default="1024,16384")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--generate-batch", type=int, default=16)
    parser.add_argument("--generate-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sync-check", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    device = torch.device(args.device)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    batches = [int(b) for b in args.batches.split(",")]
    histories = [int(h) for h in args.histories.split(",")]
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "threads": torch.get_num_threads()}
    calls = per_call(tokenizer, device, batches, histories, args.steps, args.sync_check)
    calls.append(generated_history(tokenizer, device, histories[-1], args.steps))
    gen = whole_generate(tokenizer, device, args.generate_batch, args.generate_tokens, args.repeats)

    print(f"device: {info['device']}, torch {info['torch']}, {info['threads']} threads")
    print("\n| batch | history | history fed as | TIP ms/call | Suppress ms/call | TIP / Suppress |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    for r in calls:
        suppress = r.get("suppress_ms")
        ratio = f"{r['tip_ms'] / suppress:.2f}" if suppress else "-"
        print(f"| {r['batch']} | {r['history']} | {r['history_kind']} | {r['tip_ms']:.3f} | "
              f"{suppress:.3f} | {ratio} |" if suppress else
              f"| {r['batch']} | {r['history']} | {r['history_kind']} | {r['tip_ms']:.3f} | - | - |")
    print("\n| batch | 16k / 1k history (TIP per call) |")
    print("| ---: | ---: |")
    for batch in batches:
        by_history = {r["history"]: r["tip_ms"] for r in calls if r["batch"] == batch and r["history_kind"] == "first call"}
        print(f"| {batch} | {by_history[histories[-1]] / by_history[histories[0]]:.2f} |")
    print(f"\ngenerate, batch {gen['batch']}, {gen['new_tokens']} new tokens: without TIP {gen['plain_s']:.3f} s, "
          f"with TIP {gen['tip_s']:.3f} s, ratio {gen['ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"info": info, "per_call": calls, "generate": gen}, indent=2))


if __name__ == "__main__":
    main()
