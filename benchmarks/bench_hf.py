"""Cost of TIPLogitsProcessor, measured side by side with transformers' own processors in one run.

Parts (`--parts`, all by default):

per-call  TIPLogitsProcessor vs SuppressTokensLogitsProcessor on the same ids, vocabulary width
          151,936, batch 1 / 16 / 64 / 256 / 1,024, token histories of 1k and 16k, rows with
          prompts of their own (what greedy search and sampling feed a processor). Each processor
          is driven through real consecutive calls (a first call that sees the history, then
          steps one token longer each); calls of the two processors alternate, three rounds, best
          median kept. Also: the memory TIP holds, the first call of a generation (the one call
          that reads a tensor back to the host when batch > 1), and a batch of one whose 16k
          history is generated step by step.
beam      64 beams that really reorder every step (each step's rows are random previous rows plus
          a token, as beam search feeds them), TIP vs Suppress; and the same 64 rows without
          reordering, to show what the parent search costs.
generate  whole `generate` with vs without TIP, interleaved pairs, on a random-weight model shaped
          like Qwen2.5-0.5B (hidden 896, 24 layers, 14 heads, 2 KV heads, width 151,936, tied
          embeddings: 494M parameters, float32), built locally. Reports the ratio of medians and
          the mean of per-pair ratios with a 95% t interval and a BCa bootstrap interval
          (scipy.stats).

    flock /tmp/tip-heavy.lock python benchmarks/bench_hf.py [--parts per-call,beam,generate] [--threads 1] [--json out.json]
    python benchmarks/bench_hf.py --device cuda --sync-check   # on a GPU

With --sync-check on CUDA the steady-state calls run under torch.cuda.set_sync_debug_mode("error"),
which raises on any host-device synchronisation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, SuppressTokensLogitsProcessor

from tip_decode.core.interventions.plan import PlanTables
from tip_decode.core.vocabulary import SwitchVocabulary
from tip_decode.hf import TIPLogitsProcessor

WIDTH = 151_936
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import vendored  # noqa: E402  (the tokenizers and data the tests ship; TIP_DECODE_TOKENIZERS / TIP_DECODE_DATA override)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def held_bytes(obj, seen=None) -> int:
    """Bytes of the tensors a processor holds between calls (shared lookup tables excluded)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (PlanTables, SwitchVocabulary)):
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        # Views of one storage (the state's `ints` and `floats`) count once.
        storage = obj.untyped_storage()
        if ("storage", storage.data_ptr()) in seen:
            return 0
        seen.add(("storage", storage.data_ptr()))
        return storage.nbytes()
    if isinstance(obj, dict):
        return sum(held_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(held_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith("tip_decode"):
        return sum(held_bytes(v, seen) for v in vars(obj).values())
    return 0


def new_tip(tokenizer) -> TIPLogitsProcessor:
    return TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=600, triggers="reflection", scope="all")


def drive(processor, ids, scores, steps, device, sync_check=False, reorder=None, seed=0) -> tuple[float, float]:
    """(seconds of the first call, median seconds per steady-state call) over consecutive calls.

    `reorder(generator, rows)` gives each step's parent rows (beam search); None keeps rows in place.
    """
    generator = torch.Generator().manual_seed(seed)
    rows = ids.shape[0]
    new = torch.randint(0, 150_000, (rows, steps + 6), generator=generator).to(device)
    synchronize(device)
    start = time.perf_counter()
    processor(ids, scores)  # first call: sees the whole history once
    synchronize(device)
    first = time.perf_counter() - start
    times = []
    for k in range(steps + 5):
        parents = reorder(generator, rows) if reorder is not None else None
        ids = torch.cat((ids[parents.to(device)] if parents is not None else ids, new[:, k : k + 1]), dim=1)
        timed = k >= 5  # five warm-up steps
        check = timed and sync_check and device.type == "cuda"
        synchronize(device)
        if check:
            torch.cuda.set_sync_debug_mode("error")
        start = time.perf_counter()
        try:
            processor(ids, scores)
        finally:
            if check:
                torch.cuda.set_sync_debug_mode(0)
        synchronize(device)
        if timed:
            times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def per_call(tokenizer, device, batches, histories, steps, sync_check) -> list[dict]:
    rows = []
    for batch in batches:
        for history in histories:
            ids = torch.randint(0, 150_000, (batch, history), device=device)
            scores = torch.randn(batch, WIDTH, device=device)
            tip = new_tip(tokenizer)
            suppress = SuppressTokensLogitsProcessor(list(tip.vocabulary.penalised_ids), device=device)
            tip_times, suppress_times, firsts, suppress_firsts = [], [], [], []
            for round_ in range(3):  # the two processors alternate; best median of each kept
                tip.reset()
                first, step = drive(tip, ids, scores, steps, device, sync_check, seed=round_)
                tip_times.append(step)
                firsts.append(first)
                first, step = drive(suppress, ids, scores, steps, device, seed=round_)
                suppress_times.append(step)
                suppress_firsts.append(first)
            rows.append(
                {
                    "batch": batch,
                    "history": history,
                    "history_kind": "first call",
                    "tip_ms": 1e3 * min(tip_times),
                    "suppress_ms": 1e3 * min(suppress_times),
                    "tip_first_call_ms": 1e3 * min(firsts),
                    "suppress_first_call_ms": 1e3 * min(suppress_firsts),
                    "tip_held_bytes": held_bytes(tip),
                    "tracks_reordering": tip.tracks_reordering,
                }
            )
            print(
                f"  per call batch {batch:5d} history {history:6d}: TIP {rows[-1]['tip_ms']:8.3f} ms, "
                f"Suppress {rows[-1]['suppress_ms']:8.3f} ms, held {rows[-1]['tip_held_bytes'] / 1024:.1f} KiB",
                flush=True,
            )
            del ids, scores
    return rows


def generated_history(tokenizer, device, history: int, steps: int) -> dict:
    """Batch 1: the processor's state follows `history` generated tokens, fed one call at a time."""
    tip = new_tip(tokenizer)
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
    return {"batch": 1, "history": history, "history_kind": "generated", "tip_ms": 1e3 * statistics.median(times), "tip_held_bytes": held_bytes(tip)}


def beam(tokenizer, device, beams: int, history: int, steps: int, sync_check: bool) -> list[dict]:
    def reorder(generator, rows):
        return torch.randint(0, rows, (rows,), generator=generator).sort().values

    prompt = torch.randint(0, 150_000, (1, history), device=device)
    ids = prompt.expand(beams, history).contiguous()
    scores = torch.randn(beams, WIDTH, device=device)
    out = []
    for name, order in (("beam search (rows reorder every step)", reorder), ("same rows, no reordering", None)):
        tip = new_tip(tokenizer)
        suppress = SuppressTokensLogitsProcessor(list(tip.vocabulary.penalised_ids), device=device)
        tip_times, suppress_times = [], []
        for round_ in range(3):
            tip.reset()
            tip_times.append(drive(tip, ids, scores, steps, device, sync_check, order, seed=round_)[1])
            suppress_times.append(drive(suppress, ids, scores, steps, device, False, order, seed=round_)[1])
        out.append(
            {
                "case": name,
                "beams": beams,
                "history": history,
                "tip_ms": 1e3 * min(tip_times),
                "suppress_ms": 1e3 * min(suppress_times),
                "tip_held_bytes": held_bytes(tip),
                "tracks_reordering": tip.tracks_reordering,
            }
        )
        print(f"  {name}: TIP {out[-1]['tip_ms']:.3f} ms, Suppress {out[-1]['suppress_ms']:.3f} ms", flush=True)
    return out


def whole_generate(tokenizer, device, batch: int, new_tokens: int, pairs: int) -> dict:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=WIDTH,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config).to(device).eval()
    parameters = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, 150_000, (batch, 32), device=device)
    common = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    tip = new_tip(tokenizer)

    def one(with_tip: bool) -> float:
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), logits_processor=[tip] if with_tip else [], **common)
        synchronize(device)
        return time.perf_counter() - start

    one(False), one(True)  # warm-up
    plain, with_tip = [], []
    for pair in range(pairs):  # interleaved, order alternating, so drifting load hits both alike
        first_with_tip = pair % 2 == 1
        a = one(first_with_tip)
        b = one(not first_with_tip)
        t_tip, t_plain = (a, b) if first_with_tip else (b, a)
        plain.append(t_plain)
        with_tip.append(t_tip)
        print(f"  pair {pair + 1}/{pairs}: without {t_plain:.3f} s, with {t_tip:.3f} s", flush=True)
    ratios = [t / p for t, p in zip(with_tip, plain)]
    result = {
        "model": "random Qwen2, Qwen2.5-0.5B shape",
        "parameters": parameters,
        "batch": batch,
        "new_tokens": new_tokens,
        "pairs": pairs,
        "plain_median_s": statistics.median(plain),
        "tip_median_s": statistics.median(with_tip),
        "ratio_of_medians": statistics.median(with_tip) / statistics.median(plain),
        "mean_pair_ratio": statistics.fmean(ratios),
        "plain_runs_s": plain,
        "tip_runs_s": with_tip,
        "step_ms_without_tip": 1e3 * statistics.median(plain) / new_tokens,
    }
    try:
        from scipy import stats
    except ImportError:
        result["ci95_t"] = result["ci95_bootstrap"] = None
        print("  scipy not installed: no intervals (pip install scipy)")
    else:
        sem = stats.sem(ratios)
        result["ci95_t"] = list(stats.t.interval(0.95, len(ratios) - 1, loc=statistics.fmean(ratios), scale=sem))
        boot = stats.bootstrap((ratios,), statistics.fmean, confidence_level=0.95, method="BCa", random_state=0)
        result["ci95_bootstrap"] = [boot.confidence_interval.low, boot.confidence_interval.high]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokenizer", default=str(vendored.tokenizers_dir() / "qwen3"))
    parser.add_argument("--parts", default="per-call,beam,generate")
    parser.add_argument("--batches", default="1,16,64,256,1024")
    parser.add_argument("--histories", default="1024,16384")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--beams", type=int, default=64)
    parser.add_argument("--generate-batch", type=int, default=4)
    parser.add_argument("--generate-tokens", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: both sides of every ratio alike, steadier on a shared machine)")
    parser.add_argument("--sync-check", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    batches = [int(b) for b in args.batches.split(",")]
    histories = [int(h) for h in args.histories.split(",")]
    info = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }
    print(f"device: {info['device']}, torch {info['torch']}, {info['threads']} threads, load average {info['load_average']}")
    results: dict = {"info": info}

    if "per-call" in parts:
        calls = per_call(tokenizer, device, batches, histories, args.steps, args.sync_check)
        calls.append(generated_history(tokenizer, device, histories[-1], args.steps))
        results["per_call"] = calls
        print("\n| batch | history | history fed as | TIP ms/call | Suppress ms/call | TIP / Suppress | TIP first call ms | TIP holds |")
        print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        for r in calls:
            suppress = r.get("suppress_ms")
            extra = f"{suppress:.3f} | {r['tip_ms'] / suppress:.2f} | {r['tip_first_call_ms']:.1f}" if suppress else "- | - | -"
            print(f"| {r['batch']} | {r['history']:,} | {r['history_kind']} | {r['tip_ms']:.3f} | {extra} | {r['tip_held_bytes'] / 1024:.1f} KiB |")
        print("\n| batch | 16k / 1k history (TIP per call) |")
        print("| ---: | ---: |")
        for batch in batches:
            by_history = {r["history"]: r["tip_ms"] for r in calls if r["batch"] == batch and r["history_kind"] == "first call"}
            print(f"| {batch} | {by_history[histories[-1]] / by_history[histories[0]]:.2f} |")

    if "beam" in parts:
        results["beam"] = beam(tokenizer, device, args.beams, 1024, args.steps, args.sync_check)
        print(f"\n| {args.beams} rows | TIP ms/call | Suppress ms/call | TIP / Suppress | TIP holds |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for r in results["beam"]:
            print(f"| {r['case']} | {r['tip_ms']:.3f} | {r['suppress_ms']:.3f} | {r['tip_ms'] / r['suppress_ms']:.2f} | {r['tip_held_bytes'] / 1024:.1f} KiB |")

    if "generate" in parts:
        gen = whole_generate(tokenizer, device, args.generate_batch, args.generate_tokens, args.pairs)
        results["generate"] = gen
        intervals = ""
        if gen["ci95_t"] is not None:
            intervals = (
                f", 95% t interval {gen['ci95_t'][0]:.4f}-{gen['ci95_t'][1]:.4f}, BCa bootstrap {gen['ci95_bootstrap'][0]:.4f}-{gen['ci95_bootstrap'][1]:.4f}"
            )
        print(
            f"\ngenerate ({gen['model']}, {gen['parameters'] / 1e6:.0f}M parameters), batch {gen['batch']}, "
            f"{gen['new_tokens']} new tokens, {gen['pairs']} pairs: median without TIP {gen['plain_median_s']:.3f} s "
            f"({gen['step_ms_without_tip']:.1f} ms per step), with TIP {gen['tip_median_s']:.3f} s; ratio of medians "
            f"{gen['ratio_of_medians']:.4f}; mean per-pair ratio {gen['mean_pair_ratio']:.4f}{intervals}"
        )
    results["info"]["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
