"""vLLM with the TIP processor: engine throughput, and the processor at serving batch sizes.

Parts (`--parts`, both by default):

engine  Two engines live side by side in one run: one without custom processors and one with
        `tip_decode.vllm:ThoughtSwitchPenalty`; the second serves both the TIP-off and the TIP-on
        configuration (TIP is chosen per request). Rounds interleave the three configurations in a
        shuffled order, and ratios are taken within a round, so that load from other processes on
        a shared machine hits all three alike; the spread across rounds is the noise to report.
batch   The processor alone, in process, at 64 / 256 / 1,024 running requests of a persistent
        batch driven the way vLLM's V1 `InputBatch` drives it: every step some requests finish
        and new ones take their rows (`BatchUpdateBuilder.removed_append` / `pop_removed` /
        `added`), the rest of the batch is condensed with one-way moves, and two rows swap; the
        builder's `BatchUpdate` goes to `update_state`, then `apply` runs, then every request's
        output grows by one token. TIP (on every row) and vLLM's own `MinTokensLogitsProcessor`
        (which also follows every request's output each step: `min_tokens` is never reached)
        see the same churn in the same run, alternating which goes first; a third instance with
        TIP off on every row shows what TIP-off rows cost. At the full vocabulary width with the
        paper's trigger and with the 17-word `reflection` preset, and at a tiny width (64 logits:
        no penalised column, so only bookkeeping), each with the running requests' outputs 1k and
        16k tokens long (`--cells`, `--histories`). One torch thread, as the engine worker.

mrv2    The processor alone on Model Runner V2's interface (vLLM's own `LogitsProcRequestState` and
        `LogitsContext`, the token history kept as MRV2's `post_update` keeps it), every request
        decoding: without speculative decoding and with `--drafts` draft rows per request (random
        acceptance, then the accepted drafts and the token after them committed). Median ms per
        `apply`, TIP on every request (server default alpha 3, beta 600, scope `all`), one torch thread.
        Runs against another tree's processor with `PYTHONPATH=TREE` (drafts 0 only before issue 22).

    python benchmarks/bench_vllm.py --parts batch         # processor at serving batch sizes (minutes)
    python benchmarks/bench_vllm.py --parts mrv2 --drafts 0,3
    python benchmarks/bench_vllm.py --parts engine --rounds 7
    python benchmarks/bench_vllm.py --model PATH --requests 64 --max-tokens 256 --rounds 7

Prints Markdown tables and one JSON line per part.
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


# ----- the processor at serving batch sizes, through vLLM's BatchUpdateBuilder -----

TIP_ON_ENV = {"TIP_DECODE_ALPHA": "3.0", "TIP_DECODE_BETA": "600", "TIP_DECODE_TRIGGERS": "reflection", "TIP_DECODE_SCOPE": "all"}


def processor_config(workdir: Path, tokenizer_dir: Path, width: int, capacity: int):
    """A real VllmConfig for a model folder holding only a config (logits width `width`) and the tokenizer."""
    from transformers import AutoTokenizer, Qwen2Config
    from vllm.config import ModelConfig, SchedulerConfig, VllmConfig

    path = workdir / f"config-{width}"
    if not path.exists():
        Qwen2Config(
            vocab_size=width,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=4096,
        ).save_pretrained(path)
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(path)
    model = ModelConfig(model=str(path), dtype="float32", max_model_len=1024)
    scheduler = SchedulerConfig(max_num_seqs=capacity, max_num_batched_tokens=max(8192, capacity), max_model_len=1024, is_encoder_decoder=False)
    return VllmConfig(model_config=model, scheduler_config=scheduler)


class PersistentBatch:
    """Rows of running requests, changed the way vLLM's V1 InputBatch changes them.

    Removals register through `BatchUpdateBuilder.removed_append`; additions fill the lowest
    freed row (`pop_removed`) or append; `condense` moves the last requests down into the rows
    still free (one-way moves); `swap` exchanges two rows. `update()` is the step's BatchUpdate.
    """

    def __init__(self) -> None:
        from vllm.v1.sample.logits_processor import BatchUpdateBuilder

        self.builder = BatchUpdateBuilder()
        self.rows: list[tuple | None] = []
        self.num_reqs = 0

    def add(self, request: tuple) -> None:
        index = self.builder.pop_removed()
        if index is None:
            index = self.num_reqs
        if index == len(self.rows):
            self.rows.append(None)
        self.rows[index] = request
        params, prompt, output = request
        self.builder.added.append((index, params, prompt, output))
        self.num_reqs += 1

    def remove(self, index: int) -> None:
        self.builder.removed_append(index)
        self.rows[index] = None
        self.num_reqs -= 1

    def condense(self) -> None:
        from vllm.v1.sample.logits_processor import MoveDirectionality

        empty = self.builder.removed  # descending
        if not empty or self.num_reqs == 0:
            return
        last = self.num_reqs + len(empty) - 1
        while empty:
            while last in empty:
                last -= 1
            hole = self.builder.peek_removed()
            if hole >= last:
                break
            self.builder.pop_removed()
            self.rows[hole], self.rows[last] = self.rows[last], None
            self.builder.moved.append((last, hole, MoveDirectionality.UNIDIRECTIONAL))
            last -= 1
        del self.rows[self.num_reqs :]

    def swap(self, a: int, b: int) -> None:
        from vllm.v1.sample.logits_processor import MoveDirectionality

        self.rows[a], self.rows[b] = self.rows[b], self.rows[a]
        self.builder.moved.append((a, b, MoveDirectionality.SWAP))

    def update(self):
        return self.builder.get_and_reset(self.num_reqs)


def persistent_batch(workdir: Path, tokenizer_dir: Path, rows: int, width: int, triggers: str, history: int, steps: int, seed: int = 0) -> dict:
    """Median ms per step (update_state + apply) of TIP on every row, TIP off on every row, and
    MinTokens, under the same churn, in one run."""
    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor.builtin import MinTokensLogitsProcessor

    from tip_decode.vllm import ThoughtSwitchPenalty

    capacity = rows + 16
    config = processor_config(workdir, tokenizer_dir, width, capacity)
    saved = {k: os.environ.get(k) for k in TIP_ON_ENV}
    try:
        os.environ.update(TIP_ON_ENV, TIP_DECODE_TRIGGERS=triggers)  # the server default: TIP on for every request
        tip_on = ThoughtSwitchPenalty(config, torch.device("cpu"), False)
        for key in TIP_ON_ENV:
            os.environ.pop(key)
        tip_off = ThoughtSwitchPenalty(config, torch.device("cpu"), False)  # no server default: off for every request
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    min_tokens = MinTokensLogitsProcessor(config, torch.device("cpu"), False)
    processors = {"TIP on": tip_on, "MinTokens": min_tokens, "TIP off": tip_off}
    logits = {name: torch.randn(capacity, width) for name in processors}
    rng = random.Random(seed)
    pool = [rng.randrange(1000, min(width, 100_000)) if width > 1000 else rng.randrange(width) for _ in range(4096)]
    stops = [151643, 151645] if width > 151645 else [2, 3]

    def new_request() -> tuple:
        # min_tokens is never reached, so MinTokens follows every request's output every step
        params = SamplingParams(max_tokens=10**9, min_tokens=10**9 - 1, stop_token_ids=stops)
        return params, [rng.choice(pool) for _ in range(16)], []

    def step(update, timed: dict | None, order) -> None:
        for name in order:
            processor = processors[name]
            start = time.perf_counter()
            processor.update_state(update)
            processor.apply(logits[name][: batch.num_reqs])
            if timed is not None:
                timed[name].append(time.perf_counter() - start)

    batch = PersistentBatch()
    for _ in range(rows):
        batch.add(new_request())
    step(batch.update(), None, list(processors))
    # Running requests with `history` tokens of output: grow every list at once, one catch-up step.
    for request in batch.rows:
        request[2].extend(rng.choices(pool, k=history))
    step(None, None, list(processors))
    timed: dict[str, list[float]] = {name: [] for name in processors}
    counts = {"added": 0, "removed": 0, "moved": 0, "swapped": 0}
    for k in range(steps + 10):
        finished = [i for i, r in enumerate(batch.rows) if r is not None and rng.random() < 0.02]
        for index in finished:
            batch.remove(index)
        arrivals = max(0, min(capacity - batch.num_reqs, rows - batch.num_reqs + rng.choice((-1, 0, 1))))
        for _ in range(arrivals):
            batch.add(new_request())
        moves_before = len(batch.builder.moved)
        batch.condense()
        moved = len(batch.builder.moved) - moves_before
        if batch.num_reqs >= 2:
            batch.swap(*rng.sample(range(batch.num_reqs), 2))
        update = batch.update()
        order = ["TIP on", "MinTokens"] if k % 2 == 0 else ["MinTokens", "TIP on"]
        step(update, timed if k >= 10 else None, [*order, "TIP off"])
        if k >= 10:
            counts["added"] += arrivals
            counts["removed"] += len(finished)
            counts["moved"] += moved
            counts["swapped"] += 1
        for request in batch.rows:
            request[2].append(rng.choice(pool))
    medians = {name: 1e3 * statistics.median(values) for name, values in timed.items()}
    group = next(iter(tip_on._groups))
    return {
        "rows": rows,
        "width": width,
        "triggers": triggers,
        "penalised_columns": int(group.tables.columns.numel()),
        "patterns": group.tables.rule("tip").switch.num_patterns,
        "history": history,
        "steps": steps,
        "churn": counts,
        "tip_on_ms": medians["TIP on"],
        "min_tokens_ms": medians["MinTokens"],
        "tip_off_ms": medians["TIP off"],
        "ratio": medians["TIP on"] / medians["MinTokens"],
    }


def batch_part(args) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="tip-bench-batch-"))
    tokenizer_dir = Path(args.tokenizers) / "qwen3"
    results = []
    try:
        for cell in args.cells.split(","):
            width, triggers = int(cell.split(":")[0]), cell.split(":")[1]
            for rows in [int(r) for r in args.batch_rows.split(",")]:
                for history in [int(h) for h in args.histories.split(",")]:
                    r = persistent_batch(workdir, tokenizer_dir, rows, width, triggers, history, args.batch_steps)
                    results.append(r)
                    print(
                        f"width {width} {triggers} rows {rows} history {history}: TIP on {r['tip_on_ms']:.3f} ms, MinTokens "
                        f"{r['min_tokens_ms']:.3f} ms, TIP off {r['tip_off_ms']:.3f} ms, ratio {r['ratio']:.2f} {r['churn']}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        torch.set_num_threads(threads)
    print(f"\nPersistent batch, {args.batch_steps} steps per cell, 1 torch thread, load average {os.getloadavg()}\n")
    print("| width | triggers (columns) | running requests | output history | TIP on ms/step | MinTokens ms/step | TIP / MinTokens | TIP off ms/step |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['width']:,} | {r['triggers']} ({r['penalised_columns']}) | {r['rows']:,} | {r['history']:,} | {r['tip_on_ms']:.3f} | {r['min_tokens_ms']:.3f} | "
            f"{r['ratio']:.2f} | {r['tip_off_ms']:.4f} |"
        )
    print(json.dumps({"part": "batch", "results": results}))


def mrv2_apply_ms(workdir: Path, tokenizer_dir: Path, rows: int, width: int, triggers: str, drafts: int, steps: int, seed: int = 0) -> dict:
    """Median ms per `apply` on Model Runner V2 with `rows` decoding requests and `drafts` drafts each."""
    from types import SimpleNamespace

    import numpy as np
    import torch
    from vllm import SamplingParams
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState

    from tip_decode.vllm import ThoughtSwitchPenalty

    class HostAndDevice:  # MRV2's UvaBackedTensor views on a CPU-only machine (no pinned memory)
        def __init__(self, size) -> None:
            self.np = np.zeros(size, dtype=np.int32)
            self.gpu = torch.from_numpy(self.np)

    max_len = 64 + steps * (drafts + 1) + 1
    real = processor_config(workdir, tokenizer_dir, width, rows)
    config = SimpleNamespace(
        model_config=real.model_config,
        scheduler_config=real.scheduler_config,
        reasoning_config=None,
        speculative_config=SimpleNamespace(num_speculative_tokens=drafts) if drafts else None,
    )
    rs = LogitsProcRequestState(
        device=torch.device("cpu"),
        max_num_reqs=rows,
        vocab_size=width,
        all_token_ids=HostAndDevice((rows, max_len)),
        prompt_len=HostAndDevice(rows),
        prefill_len=HostAndDevice(rows),
        total_len=HostAndDevice(rows),
    )
    saved = {k: os.environ.get(k) for k in TIP_ON_ENV}
    os.environ.update(TIP_ON_ENV, TIP_DECODE_TRIGGERS=triggers)
    try:
        processor = ThoughtSwitchPenalty(config, rs)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    rng = random.Random(seed)
    pool = [rng.randrange(1000, min(width, 100_000)) if width > 1000 else rng.randrange(width) for _ in range(4096)]
    for slot in range(rows):
        processor.add_request(slot, SamplingParams())
        rs.all_token_ids.np[slot, :17] = rng.choices(pool, k=17)  # a 16-token prompt and one output token
        rs.prompt_len.np[slot], rs.prefill_len.np[slot], rs.total_len.np[slot] = 16, 17, 17
    processor.apply_staged_writes()
    logits = torch.randn(rows * (drafts + 1), width)
    mapping = np.arange(rows, dtype=np.int32)
    expanded = torch.from_numpy(np.repeat(mapping, drafts + 1))
    local = torch.from_numpy(np.tile(np.arange(drafts + 1, dtype=np.int32), rows))
    timed, accepted = [], 0
    for step in range(steps + 10):
        total = rs.total_len.np.astype(np.int64)
        proposals = np.array(rng.choices(pool, k=rows * drafts), dtype=np.int32).reshape(rows, drafts)
        inputs = np.concatenate([rs.all_token_ids.np[mapping, total - 1][:, None], proposals], axis=1).reshape(-1)
        positions = (total[:, None] - 1 + np.arange(drafts + 1)[None, :]).reshape(-1)
        ctx = LogitsContext(
            expanded_idx_mapping=expanded,
            idx_mapping=torch.from_numpy(mapping),
            idx_mapping_np=mapping,
            expanded_local_pos=local,
            input_ids=torch.from_numpy(inputs),
            pos=torch.from_numpy(positions),
            seq_lens_upper_bound_np=(total + drafts).astype(np.int32),
        )
        start = time.perf_counter()
        processor.apply(logits, ctx)
        if step >= 10:
            timed.append(time.perf_counter() - start)
        for slot in range(rows):
            taken = rng.randint(0, drafts)
            accepted += taken if step >= 10 else 0
            tokens = [*proposals[slot, :taken], rng.choice(pool)]
            rs.all_token_ids.np[slot, total[slot] : total[slot] + len(tokens)] = tokens
            rs.total_len.np[slot] = total[slot] + len(tokens)
    return {
        "rows": rows,
        "width": width,
        "triggers": triggers,
        "drafts": drafts,
        "steps": steps,
        "accepted_per_step": accepted / steps,
        "apply_ms": 1e3 * statistics.median(timed),
    }


def mrv2_part(args) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="tip-bench-mrv2-"))
    tokenizer_dir = Path(args.tokenizers) / "qwen3"
    results = []
    try:
        for cell in args.cells.split(","):
            width, triggers = int(cell.split(":")[0]), cell.split(":")[1]
            for rows in [int(r) for r in args.batch_rows.split(",")]:
                for drafts in [int(d) for d in args.drafts.split(",")]:
                    r = mrv2_apply_ms(workdir, tokenizer_dir, rows, width, triggers, drafts, args.batch_steps)
                    results.append(r)
                    print(f"width {width} {triggers} rows {rows} drafts {drafts}: {r['apply_ms']:.3f} ms", file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(threads)
    import tip_decode

    print(
        f"\nModel Runner V2, {args.batch_steps} steps per cell, 1 torch thread, tip_decode from {Path(tip_decode.__file__).parent}, "
        f"load average {os.getloadavg()}\n"
    )
    print("| width | triggers | decoding requests | drafts per request | logits rows | apply ms/step |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['width']:,} | {r['triggers']} | {r['rows']:,} | {r['drafts']} | {r['rows'] * (r['drafts'] + 1):,} | {r['apply_ms']:.3f} |")
    print(json.dumps({"part": "mrv2", "results": results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or Hub id (default: a tiny random Qwen2 with the qwen3 tokenizer of tests/vendored)")
    parser.add_argument("--tokenizers", default=str(vendored.tokenizers_dir()))
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alpha", default="3.0")
    parser.add_argument("--beta", type=int, default=600)
    parser.add_argument("--triggers", default="reflection", help="trigger list for the TIP-on requests (default: the 17-word preset)")
    parser.add_argument("--parts", default="engine,batch")
    parser.add_argument("--batch-rows", default="64,256,1024")
    parser.add_argument(
        "--cells",
        default="151680:alternatively,151680:reflection,64:reflection",
        help="WIDTH:TRIGGERS of the batch part (151,680: the width of a qwen3 model; 64: bookkeeping only)",
    )
    parser.add_argument("--histories", default="1024,16384", help="output tokens of the running requests (batch part)")
    parser.add_argument("--batch-steps", type=int, default=200)
    parser.add_argument("--drafts", default="0,3", help="draft rows per request (mrv2 part; 0: no speculative decoding)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "batch" in parts:
        batch_part(args)
    if "mrv2" in parts:
        mrv2_part(args)
    if "engine" not in parts:
        return

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
    print(
        json.dumps(
            {
                "requests": args.requests,
                "max_tokens": args.max_tokens,
                "triggers": list(config.triggers),
                "rounds": rounds,
                "processor_ms_per_step": processor_ms,
                "engine_step_ms": step_ms,
            }
        )
    )


if __name__ == "__main__":
    main()
