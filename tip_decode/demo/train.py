"""Train the demo model: `python -m tip_decode.demo.train [--out DIR] [--steps N] [--seed S]`.

A tiny Qwen3 (transformers) learns the step-search traces of `tip_decode.demo.task`, generated
fresh for every batch from the training split, with the loss on the response only. The script is
seeded, writes the model and tokenizer with `save_pretrained` (then `tip_decode.demo.portable`
makes the folder load the same on transformers 4.x and 5.x), and records how they were made
(settings, time, losses, a held-out check) in TRAINING.json beside them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tip_decode.demo.task import TaskSettings, make_problem, prompt_words, write_trace

logger = logging.getLogger("tip_decode.demo.train")

MODEL_DIR = Path(__file__).resolve().parent / "model"
#: Architecture of the shipped model: Qwen3 (Qwen2 would make AutoTokenizer swap in the byte-level
#: Qwen2 tokenizer class). head_dim 64 is what vLLM's CPU attention accepts.
ARCHITECTURE = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=64,
    max_position_embeddings=512,
    tie_word_embeddings=True,
    rope_theta=10000.0,
)


def training_batches(rng: random.Random, tokenizer: Any, settings: TaskSettings, size: int, group: int = 8):
    """Yield (input_ids, labels) batches of fresh training traces, labels -100 on prompt and padding.

    Traces are drawn `group` batches at a time and sorted by length before batching, so that a
    batch holds traces of similar length and little compute goes to padding.
    """
    import torch

    while True:
        rows: list[tuple[list[int], int]] = []
        while len(rows) < size * group:
            problem = make_problem(rng, settings, split="train")
            prompt = prompt_words(problem)
            trace = write_trace(problem, rng, settings)
            if len(prompt) + len(trace) > settings.max_trace_tokens:
                continue
            rows.append((tokenizer.convert_tokens_to_ids(prompt + trace), len(prompt)))
        rows.sort(key=lambda row: len(row[0]))
        batches = [rows[i : i + size] for i in range(0, len(rows), size)]
        rng.shuffle(batches)
        for chunk in batches:
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            for i, (ids, prompt_len) in enumerate(chunk):
                input_ids[i, : len(ids)] = torch.tensor(ids)
                labels[i, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
            yield input_ids, labels


def train(
    out: Path,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    threads: int,
    eval_problems: int,
    layers: int = ARCHITECTURE["num_hidden_layers"],
    intermediate: int = ARCHITECTURE["intermediate_size"],
    max_seconds: float | None = None,
) -> dict:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from tip_decode.demo.evaluate import DEMO_MAX_NEW_TOKENS, sample, score
    from tip_decode.demo.portable import make_portable
    from tip_decode.demo.task import make_problems
    from tip_decode.demo.tokenizer import build_tokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    settings = TaskSettings()
    tokenizer = build_tokenizer()
    architecture = {**ARCHITECTURE, "num_hidden_layers": layers, "intermediate_size": intermediate}
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **architecture,
    )
    model = Qwen3ForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))) * 0.95 + 0.05

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    losses: list[float] = []
    began = time.perf_counter()
    model.train()
    batches = training_batches(rng, tokenizer, settings, batch_size)
    for step in range(steps):
        input_ids, labels = next(batches)
        # Padding sits only at the end of each row and its labels are -100, so causal attention alone
        # keeps it out of every real position and no attention mask is needed (the fast SDPA path).
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            logger.info("step %d/%d loss %.4f (%.0f s)", step + 1, steps, losses[-1], time.perf_counter() - began)
        if max_seconds is not None and time.perf_counter() - began > max_seconds:
            logger.warning("stopping at step %d of %d: --max-seconds %s reached", step + 1, steps, max_seconds)
            break
    train_seconds = time.perf_counter() - began
    model.eval()
    problems = make_problems(eval_problems)
    check = score(tokenizer, problems, sample(model, tokenizer, problems, seed=seed))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # save_pretrained writes only the running transformers' keys; the shipped folder loads on 4.x and 5.x.
    make_portable(out)
    record = {
        "command": (
            f"python -m tip_decode.demo.train --steps {steps} --batch-size {batch_size} --lr {lr} --seed {seed} "
            f"--threads {threads} --layers {layers} --intermediate {intermediate}"
        ),
        "seed": seed,
        "steps": steps,
        "steps_done": len(losses),
        "batch_size": batch_size,
        "learning_rate": lr,
        "parameters": parameters,
        "architecture": {"model_type": "qwen3", **architecture, "vocab_size": len(tokenizer)},
        "task_settings": asdict(settings),
        "train_seconds": round(train_seconds, 1),
        "threads": threads,
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "torch": torch.__version__,
        "loss_first_50": round(sum(losses[:50]) / len(losses[:50]), 4),
        "loss_last_50": round(sum(losses[-50:]) / len(losses[-50:]), 4),
        "heldout_check": {"max_new_tokens": DEMO_MAX_NEW_TOKENS, "temperature": 1.0, **asdict(check)},
    }
    (out / "TRAINING.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="folder to write the model to (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for this model size on a busy machine)")
    parser.add_argument("--eval-problems", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=None, help="stop early (and say so in TRAINING.json)")
    parser.add_argument("--layers", type=int, default=ARCHITECTURE["num_hidden_layers"])
    parser.add_argument("--intermediate", type=int, default=ARCHITECTURE["intermediate_size"])
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "threads", "eval_problems", "layers", "intermediate"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} has to be a positive integer, but is {getattr(args, name)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    record = train(
        args.out, args.steps, args.batch_size, args.lr, args.seed, args.threads, args.eval_problems, args.layers, args.intermediate, args.max_seconds
    )
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
