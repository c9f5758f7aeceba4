"""GPU check of TIPLogitsProcessor: run it through `bash benchmarks/gpu_check.sh` (see there).

Needs PyTorch, transformers (and its `tokenizers`) and this repository on PYTHONPATH; no vLLM, no
network, no tokenizer files: a small byte-level BPE tokenizer is trained here, in memory, on text
that holds every trigger word, so that the switch vocabulary has single-token hits and multi-token
patterns as real reasoning-model vocabularies do.

Sections, each written to the JSON file as soon as it is done:
- exactness: real `generate` calls of a tiny random Qwen2 on CUDA (greedy with left padding,
  sampling with num_return_sequences, beam search, beam search with a repeated prompt, assisted
  decoding, and one instance across all of these calls), once with CUDA-graph steps and once
  eager; every processor call is compared with tests/reference.py bit for bit. With graphs, the
  graph must have passed its own check against the eager step (no "differed" warning) and be in
  use at the end of each generation.
- interventions: `ReasoningInterventionsProcessor` with every intervention at once (tip, nowait,
  cyclic, gated, budget min and max) in greedy, sampling, beam search and assisted `generate`
  calls: every call against tests/reference_interventions.py, and on CUDA the graph run equal bit
  for bit to the eager run, the graph having passed its own check and in use at the end.
- sync: steady-state calls (the graph's checked steps included) under
  torch.cuda.set_sync_debug_mode("error"), at batch 1, 16 and 64 with distinct prompts and with
  beam-search-like reordering (4 prompts x 4 beams, 64 beams), graphs and eager. The first call of
  a generation is left out: with more than one row it reads which rows share a prompt (one sync
  per generation, measured under per_call).
- per_call: milliseconds per call (host wall clock, synchronised around each call) of TIP with
  graphs, TIP eager and transformers' SuppressTokensLogitsProcessor, at width 151,936, batch 1 /
  16 / 64 and 64 reordering beams; and the first call of a generation.
- share: whole `generate` (64 new tokens, greedy) of a random-weight model shaped like Qwen2.5-0.5B
  (bfloat16) without TIP, with TIP (graphs) and with TIP (eager), interleaved, at batch 1 / 16 / 64:
  the share of a decode step that TIP costs.

Exit status: 0 all checks passed, 1 a check failed ("failures" in the JSON), 2 no CUDA device.
`--cpu-dry-run` runs smaller versions of the sections on the CPU (no graph, no sync check), to
test this script where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # reference.py: plain Python, no pytest

TRIGGERS = ("alternatively", "hmm", "wait")
WIDTH = 151_936
PROMPTS = [
    "Solve 2+3. <think>\n",  # ends inside an open think block
    "Question: what is seven times six? Think step by step.",  # waits for a generated <think>
    "<think>short</think> Now answer briefly:",  # closed block in the prompt
]


class Section(Exception):
    """A check inside a section failed; the message says which."""


# ----- setup -----


def build_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained here on text that holds every trigger word."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tip_decode.core.config import TIPConfig

    words = TIPConfig(triggers="reflection").triggers
    text = (
        "Let me think about this problem step by step. The value is 12, so x = 3. Alternatively, we "
        "could try another approach. Wait, maybe check it again. Hmm, but perhaps I should verify the "
        "answer. Actually, let me check: the sum is 7. However, hold on. "
    )
    corpus = [text] * 50 + [f" {w} {w.capitalize()} {w}" for w in words]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=["<|endoftext|>", "<think>", "</think>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_qwen2(width: int, device: Any, seed: int) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=width,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=0,
    )
    return Qwen2ForCausalLM(config).to(device).eval()


def recorder() -> Any:
    """A logits processor that records what it sees and changes nothing."""
    from transformers import LogitsProcessor

    class Recorder(LogitsProcessor):
        def __init__(self) -> None:
            self.calls: list[tuple[Any, Any]] = []

        def __call__(self, input_ids, scores):
            self.calls.append((input_ids.clone(), scores.clone()))
            return scores

    return Recorder()


class WarningLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def bias_processor(tokenizer, vocab) -> Any:
    """Makes switch tokens, their prefixes and think markers likely, so the window opens and closes."""
    from transformers import SequenceBiasLogitsProcessor

    bias: dict[int, float] = {}
    for token in vocab.token_ids:
        bias[token] = 6.0
    for pattern in vocab.multi_token:
        bias.setdefault(pattern.prefix[0], 5.0)
        for token in (*pattern.prefix[1:], pattern.completion):
            bias.setdefault(token, 4.0)
    bias[vocab.think.start_id] = 6.0
    bias[vocab.think.end_id] = 3.0
    for token in tokenizer.encode(".", add_special_tokens=False):
        bias.setdefault(token, 4.0)
    return SequenceBiasLogitsProcessor(sequence_bias=[[[t], v] for t, v in bias.items()])


def prompt_open(prompt: list[int], vocab) -> bool:
    starts = [i for i, t in enumerate(prompt) if t == vocab.think.start_id]
    ends = [i for i, t in enumerate(prompt) if t == vocab.think.end_id]
    return bool(starts) and (not ends or starts[-1] > ends[-1])


def compare_with_reference(before: Any, after: Any, tip, prompt_len: int) -> dict:
    """Every call of the processor against tests/reference.py, bit for bit."""
    import torch
    from reference import penalised

    checked = fired = 0
    problems: list[str] = []
    alpha, beta = tip.config.alpha, tip.config.beta
    for step, ((ids, raw), (ids_after, processed)) in enumerate(zip(before.calls, after.calls)):
        ids, raw, processed = ids.cpu(), raw.cpu(), processed.cpu()
        if not torch.equal(ids, ids_after.cpu()):
            problems.append(f"call {step}: input ids differ around the processor")
            continue
        for row in range(ids.shape[0]):
            prompt, generated = ids[row, :prompt_len].tolist(), ids[row, prompt_len:].tolist()
            expected_ids = penalised(tip.vocabulary, tip.scope, prompt_open(prompt, tip.vocabulary), generated, len(generated), beta)
            expected = raw[row].clone()
            if expected_ids:
                index = torch.tensor(sorted(expected_ids))
                expected[index] = expected[index] - alpha if not math.isinf(alpha) else -math.inf
            if not torch.equal(processed[row], expected):
                problems.append(f"call {step} row {row}: processed scores differ from the reference")
            checked += 1
            fired += bool(expected_ids)
    return {"row_steps_checked": checked, "row_steps_penalised": fired, "problems": problems[:5], "problem_count": len(problems)}


# ----- sections -----


def section_tokenizer(ctx: dict) -> dict:
    from tip_decode import SwitchVocabulary

    tokenizer = build_tokenizer()
    tokenizer.padding_side = "left"
    vocab = SwitchVocabulary.from_tokenizer(tokenizer, TRIGGERS)
    reflection = SwitchVocabulary.from_tokenizer(tokenizer, "reflection")
    ctx.update(tokenizer=tokenizer, vocab=vocab)
    result = {
        "size": len(tokenizer),
        "hits": len(vocab.token_ids),
        "multi_token_patterns": len(vocab.multi_token),
        "reflection_penalised_ids": len(reflection.penalised_ids),
        "think_markers": vocab.think.available,
    }
    if not (vocab.token_ids and vocab.multi_token and vocab.think.available):
        raise Section(f"the trained tokenizer lacks hits, multi-token patterns or think markers: {result}")
    return result


def section_exactness(ctx: dict) -> dict:
    import torch
    from transformers import LogitsProcessorList

    from tip_decode.hf import TIPLogitsProcessor

    device, tokenizer, vocab = ctx["device"], ctx["tokenizer"], ctx["vocab"]
    width = len(tokenizer) + (-len(tokenizer)) % 64
    model = tiny_qwen2(width, device, seed=0)
    assistant = tiny_qwen2(width, device, seed=7)
    bias = bias_processor(tokenizer, vocab)
    new_tokens = 24 if ctx["dry_run"] else 40
    cases = [
        ("greedy, 3 prompts, left padding", PROMPTS, dict(do_sample=False)),
        ("sampling, num_return_sequences=3", PROMPTS[:2], dict(do_sample=True, num_return_sequences=3, top_k=0)),
        ("beam search, 4 beams", PROMPTS[:2], dict(num_beams=4, num_return_sequences=2, do_sample=False)),
        ("beam search, a prompt twice", [PROMPTS[1], PROMPTS[0], PROMPTS[1]], dict(num_beams=3, do_sample=True)),
        ("assisted decoding", PROMPTS[:1], dict(assistant_model=assistant, do_sample=False)),
        ("one row, prompt extends the last one", [PROMPTS[0] + " Then check it twice."], dict(do_sample=False)),
    ]
    log = WarningLog()
    logging.getLogger("tip_decode.adapters.hf").addHandler(log)
    results, failures = [], []
    try:
        for graphs in [False] if ctx["dry_run"] else [True, False]:
            reused = TIPLogitsProcessor(vocab, alpha=2.0, beta=5, scope="think")
            reused.use_cuda_graphs = graphs
            for instance in ("new instance", "one instance across calls"):
                for seed, (name, prompts, kwargs) in enumerate(cases):
                    if instance == "new instance":
                        tip = TIPLogitsProcessor(vocab, alpha=2.0, beta=5, scope="think")
                        tip.use_cuda_graphs = graphs
                    else:
                        tip = reused
                    inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
                    before, after = recorder(), recorder()
                    warnings_before = len(log.messages)
                    torch.manual_seed(seed)
                    model.generate(
                        **inputs,
                        logits_processor=LogitsProcessorList([bias, before, tip, after]),
                        max_new_tokens=new_tokens,
                        pad_token_id=tokenizer.pad_token_id,
                        **kwargs,
                    )
                    result = compare_with_reference(before, after, tip, inputs["input_ids"].shape[1])
                    result.update(
                        case=name,
                        instance=instance,
                        cuda_graphs=graphs,
                        calls=len(before.calls),
                        graph_in_use_at_end=tip.graph_active,
                        warnings=log.messages[warnings_before:],
                    )
                    results.append(result)
                    label = f"{name} ({instance}, graphs={graphs})"
                    if result["problem_count"]:
                        failures.append(f"{label}: {result['problem_count']} row-steps differ from the reference, first: {result['problems'][0]}")
                    if not result["row_steps_penalised"]:
                        failures.append(f"{label}: the penalty never acted, so nothing was shown")
                    if graphs and any("differed" in m for m in result["warnings"]):
                        failures.append(f"{label}: the CUDA-graph step differed from the eager step: {result['warnings']}")
                    if graphs and not tip.graph_active:
                        failures.append(f"{label}: the CUDA graph was not in use at the end ({result['warnings']})")
                    print(
                        f"  exactness {label}: {result['row_steps_checked']} row-steps, penalised in "
                        f"{result['row_steps_penalised']}, problems {result['problem_count']}, graph at end {tip.graph_active}",
                        flush=True,
                    )
    finally:
        logging.getLogger("tip_decode.adapters.hf").removeHandler(log)
    if failures:
        raise Section("; ".join(failures[:4]) + (f" (+{len(failures) - 4} more)" if len(failures) > 4 else ""), results)
    return {"cases": results}


def intervention_settings() -> Any:
    """Every intervention at once, sized so that each acts within a few dozen tokens."""
    from tip_decode.core.interventions import InterventionSet

    return InterventionSet.from_mapping(
        {
            "tip_alpha": 2.0,
            "tip_beta": 5,
            "tip_triggers": ["alternatively"],
            "tip_scope": "think",
            "nowait_keywords": ["hmm"],
            "cyclic_amplitude": 0.5,
            "cyclic_period": 6,
            "cyclic_words": ["Wait", "Hmm"],
            "gated_alpha": 1.5,
            "gated_beta": 8,
            "gated_triggers": ["wait"],
            "gated_threshold": 4.0,
            "budget_min": 6,
            "budget_max": 20,
        }
    )


def compare_with_intervention_reference(reference: Any, settings: Any, before: Any, after: Any, prompt_len: int) -> dict:
    """Every call against tests/reference_interventions.py (within 1e-4: biases are summed in
    float32 by the processor, in float64 by the reference); ancestors found by their ids (beams)."""
    import torch
    from reference_interventions import FORCED, Row

    calls = [(ids.cpu(), raw.cpu(), out.cpu()) for (ids, raw), (_, out) in zip(before.calls, after.calls)]
    # The raw scores a history was last seen with, by its ids: beams move rows between calls, and
    # assisted decoding calls the processor once per candidate position and rolls back.
    latest: dict[tuple[int, ...], tuple[int, int]] = {}
    entropies: dict[tuple[int, int], float] = {}
    tops: dict[tuple[int, int], int] = {}
    checked = changed = 0
    problems: list[str] = []
    for c, (ids, raw, out) in enumerate(calls):
        t = ids.shape[1] - prompt_len
        for b, history in enumerate(ids.tolist()):
            latest[tuple(history)] = (c, b)
        for b, history in enumerate(ids.tolist()):
            ancestors = [latest[tuple(history[: prompt_len + s])] for s in range(t + 1)]
            for key in ancestors:
                if key not in entropies:
                    logits = calls[key[0]][1][key[1]]
                    probs = torch.softmax(logits.double(), dim=-1)
                    entropies[key] = float(-(probs[probs > 0] * probs[probs > 0].log()).sum())
                    tops[key] = int(logits.argmax())
            prompt = history[:prompt_len]
            starts = [i for i, x in enumerate(prompt) if x == reference.markers.start_id]
            ends = [i for i, x in enumerate(prompt) if x == reference.markers.end_id]
            opened = bool(starts) and (not ends or starts[-1] > ends[-1])
            row = Row(opened, len(prompt) - starts[-1] - 1 if opened else 0, history[prompt_len:])
            row.entropies = {s: entropies[key] for s, key in enumerate(ancestors)}
            row.tops = {s: tops[key] for s, key in enumerate(ancestors)}
            bias, forced, uncertain = reference.expected(settings, row, t)
            if uncertain:
                continue
            want = raw[b].clone()
            for token, value in bias.items():
                if value != 0:
                    want[token] = want[token] + torch.tensor(value, dtype=want.dtype)
            if forced is not None:
                want[forced] = FORCED
            if not torch.allclose(out[b], want, atol=1e-4, rtol=0, equal_nan=False):
                problems.append(f"call {c} row {b}: processed scores differ from the reference")
            checked += 1
            changed += bool((out[b] != raw[b]).any())
    return {"row_steps_checked": checked, "row_steps_changed": changed, "problems": problems[:5], "problem_count": len(problems)}


def section_interventions(ctx: dict) -> dict:
    """ReasoningInterventionsProcessor with every intervention (gated and budget read the whole
    logits rows, so the graph copies them in): each call against the slow reference, and on CUDA
    the graph run equal bit for bit to the eager run of the same generation."""
    import torch
    from reference_interventions import Reference
    from transformers import LogitsProcessorList

    from tip_decode.hf import ReasoningInterventionsProcessor

    device, tokenizer, vocab = ctx["device"], ctx["tokenizer"], ctx["vocab"]
    width = len(tokenizer) + (-len(tokenizer)) % 64
    model = tiny_qwen2(width, device, seed=0)
    assistant = tiny_qwen2(width, device, seed=7)
    bias = bias_processor(tokenizer, vocab)
    settings = intervention_settings()
    reference = Reference(tokenizer, gate_margin=1e-3)
    new_tokens = 24 if ctx["dry_run"] else 40
    cases = [
        ("greedy, 3 prompts, left padding", PROMPTS, dict(do_sample=False)),
        ("sampling, num_return_sequences=3", PROMPTS[:2], dict(do_sample=True, num_return_sequences=3, top_k=0)),
        ("beam search, 4 beams", PROMPTS[:2], dict(num_beams=4, num_return_sequences=2, do_sample=False)),
        ("assisted decoding", PROMPTS[:1], dict(assistant_model=assistant, do_sample=False)),
    ]
    log = WarningLog()
    logging.getLogger("tip_decode.adapters.hf").addHandler(log)
    results, failures = [], []
    try:
        for seed, (name, prompts, kwargs) in enumerate(cases):
            runs = {}
            for graphs in [False] if device.type != "cuda" else [True, False]:
                processor = ReasoningInterventionsProcessor(tokenizer, settings)
                processor.use_cuda_graphs = graphs
                inputs = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
                before, after = recorder(), recorder()
                warnings_before = len(log.messages)
                torch.manual_seed(seed)
                model.generate(
                    **inputs,
                    logits_processor=LogitsProcessorList([bias, before, processor, after]),
                    max_new_tokens=new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    **kwargs,
                )
                result = compare_with_intervention_reference(reference, settings, before, after, inputs["input_ids"].shape[1])
                result.update(
                    case=name, cuda_graphs=graphs, calls=len(before.calls), graph_in_use_at_end=processor.graph_active, warnings=log.messages[warnings_before:]
                )
                results.append(result)
                runs[graphs] = after.calls
                label = f"{name} (graphs={graphs})"
                if result["problem_count"]:
                    failures.append(f"{label}: {result['problem_count']} row-steps differ from the reference, first: {result['problems'][0]}")
                if not result["row_steps_changed"]:
                    failures.append(f"{label}: no intervention acted, so nothing was shown")
                if graphs and any("differed" in m for m in result["warnings"]):
                    failures.append(f"{label}: the CUDA-graph step differed from the eager step: {result['warnings']}")
                if graphs and not processor.graph_active:
                    failures.append(f"{label}: the CUDA graph was not in use at the end ({result['warnings']})")
                print(
                    f"  interventions {label}: {result['row_steps_checked']} row-steps, changed in "
                    f"{result['row_steps_changed']}, problems {result['problem_count']}, graph at end {processor.graph_active}",
                    flush=True,
                )
            if True in runs:
                same = len(runs[True]) == len(runs[False]) and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(runs[True], runs[False]))
                results[-1]["graph_equals_eager"] = same
                if not same:
                    failures.append(f"{name}: the graph run and the eager run returned different scores")
    finally:
        logging.getLogger("tip_decode.adapters.hf").removeHandler(log)
    if failures:
        raise Section("; ".join(failures[:4]) + (f" (+{len(failures) - 4} more)" if len(failures) > 4 else ""), results)
    return {"settings": settings.to_mapping(), "cases": results}


def _driver(torch, device, batch: int, prompts: int, history: int, steps: int, seed: int, width: int):
    """ids of a first call and of `steps` following calls (each one token longer), all built in
    advance on the device; with fewer prompts than rows, rows reorder within their prompt's group."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 150_000, (prompts, history), generator=generator)
    group = batch // prompts
    ids = base.repeat_interleave(group, dim=0).to(device)
    calls = [ids]
    for _ in range(steps):
        if group > 1:
            within = torch.randint(0, group, (batch,), generator=generator)
            parents = (torch.arange(batch) // group) * group + within
            ids = ids[parents.to(device)]
        ids = torch.cat((ids, torch.randint(0, 150_000, (batch, 1), generator=generator).to(device)), dim=1)
        calls.append(ids)
    return calls, torch.randn(batch, width, generator=generator).to(device)


SHAPES = [  # name, rows, distinct prompts
    ("batch 1", 1, 1),
    ("batch 16, distinct prompts", 16, 16),
    ("batch 64, distinct prompts", 64, 64),
    ("16 rows: 4 prompts x 4 beams, reordering", 16, 4),
    ("64 beams of one prompt, reordering", 64, 1),
]


def new_reflection_tip(ctx: dict, graphs: bool):
    from tip_decode.hf import TIPLogitsProcessor

    tip = TIPLogitsProcessor.from_tokenizer(ctx["tokenizer"], alpha=3.0, beta=600, triggers="reflection", scope="all")
    tip.use_cuda_graphs = graphs
    return tip


def section_sync(ctx: dict) -> dict:
    import torch

    device = ctx["device"]
    results, failures = [], []
    for name, rows, prompts in SHAPES:
        for graphs in (True, False):
            tip = new_reflection_tip(ctx, graphs)
            calls, scores = _driver(torch, device, rows, prompts, 256, 30, seed=rows + prompts, width=WIDTH)
            tip(calls[0], scores)  # first call: outside the check (one sync when rows > 1)
            torch.cuda.synchronize()
            error = None
            torch.cuda.set_sync_debug_mode("error")
            try:
                for ids in calls[1:]:
                    tip(ids, scores)
            except RuntimeError as err:
                error = str(err).splitlines()[0]
            finally:
                torch.cuda.set_sync_debug_mode(0)
            torch.cuda.synchronize()
            results.append(
                {
                    "shape": name,
                    "cuda_graphs": graphs,
                    "steps": len(calls) - 1,
                    "sync_error": error,
                    "graph_in_use_at_end": tip.graph_active,
                    "tracks_reordering": tip.tracks_reordering,
                }
            )
            if error:
                failures.append(f"{name} (graphs={graphs}): host-device sync in a steady-state step: {error}")
            if graphs and not tip.graph_active:
                failures.append(f"{name}: the CUDA graph was not in use at the end")
            print(f"  sync {name}, graphs={graphs}: {'ok' if not error else error}", flush=True)
    if failures:
        raise Section("; ".join(failures), results)
    return {"cases": results}


def _time_calls(torch, device, processor, calls, scores) -> tuple[float, float]:
    """(first call ms, median ms of the steady-state calls), each synchronised on both sides."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    start = time.perf_counter()
    processor(calls[0], scores)
    sync()
    first = time.perf_counter() - start
    times = []
    for k, ids in enumerate(calls[1:]):
        sync()
        start = time.perf_counter()
        processor(ids, scores)
        sync()
        if k >= 8:  # after the graph's checked steps and its verdict
            times.append(time.perf_counter() - start)
    return 1e3 * first, 1e3 * statistics.median(times)


def section_per_call(ctx: dict) -> dict:
    import torch
    from transformers import SuppressTokensLogitsProcessor

    device = ctx["device"]
    shapes = SHAPES[:2] if ctx["dry_run"] else SHAPES
    width = 4096 if ctx["dry_run"] else WIDTH
    results = []
    for name, rows, prompts in shapes:
        calls, scores = _driver(torch, device, rows, prompts, 1024, 40, seed=rows, width=width)
        row: dict[str, Any] = {"shape": name, "rows": rows, "history": 1024, "width": width}
        for label, graphs in (("tip_graph", True), ("tip_eager", False)):
            if graphs and device.type != "cuda":
                continue
            tip = new_reflection_tip(ctx, graphs)
            best = min((_time_calls(torch, device, tip, calls, scores) for _ in range(3)), key=lambda t: t[1])
            tip.reset()
            row[f"{label}_first_call_ms"], row[f"{label}_ms"] = best
        suppress = SuppressTokensLogitsProcessor(list(tip.vocabulary.penalised_ids), device=device)
        row["suppress_ms"] = min(_time_calls(torch, device, suppress, calls, scores)[1] for _ in range(3))
        results.append(row)
        print(f"  per call {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k.endswith("_ms")), flush=True)
    return {"cases": results}


def section_share(ctx: dict) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    device = ctx["device"]
    dry = ctx["dry_run"]
    if dry:
        config = Qwen2Config(
            vocab_size=WIDTH,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        )
        dtype, batches, new_tokens, rounds = torch.float32, (1, 4), 8, 1
    else:
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
        dtype, batches, new_tokens, rounds = torch.bfloat16, (1, 16, 64), 64, 3
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    model = model.to(dtype).eval()
    parameters = sum(p.numel() for p in model.parameters())
    modes = ["without TIP", "TIP, eager"] + (["TIP, CUDA graphs"] if device.type == "cuda" else [])
    results = []
    for batch in batches:
        ids = torch.randint(0, 150_000, (batch, 64), device=device)
        processors = {"without TIP": None, "TIP, eager": new_reflection_tip(ctx, False), "TIP, CUDA graphs": new_reflection_tip(ctx, True)}

        def run(mode: str, processors: dict = processors, ids: torch.Tensor = ids) -> float:
            tip = processors[mode]
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.no_grad():
                model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    logits_processor=[tip] if tip else [],
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    do_sample=False,
                    pad_token_id=0,
                )
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

        for mode in modes:
            run(mode)  # warm-up
        times: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(rounds):
            for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:  # order rotates between rounds
                times[mode].append(run(mode))
        medians = {m: statistics.median(v) for m, v in times.items()}
        plain = medians["without TIP"]
        row = {
            "batch": batch,
            "new_tokens": new_tokens,
            "step_ms_without_tip": 1e3 * plain / new_tokens,
            "runs_s": times,
            "median_s": medians,
            "share": {m: (medians[m] - plain) / plain for m in modes if m != "without TIP"},
        }
        results.append(row)
        print(
            f"  share batch {batch}: step {row['step_ms_without_tip']:.2f} ms without TIP; "
            + ", ".join(f"{m} {100 * s:+.2f}%" for m, s in row["share"].items()),
            flush=True,
        )
    return {
        "model": "random Qwen2, Qwen2.5-0.5B shape" if not dry else "random Qwen2, tiny (dry run)",
        "parameters": parameters,
        "dtype": str(dtype),
        "cases": results,
    }


# ----- driver -----


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("gpu_check_out/gpu_check.json"))
    parser.add_argument("--cpu-dry-run", action="store_true", help="smaller sections on the CPU, to test this script")
    parser.add_argument("--budget-s", type=float, default=440.0, help="sections that would start after this are skipped")
    args = parser.parse_args()
    started = time.monotonic()
    report: dict[str, Any] = {"status": "running", "failures": []}
    args.json.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        report["seconds"] = round(time.monotonic() - started, 1)
        args.json.write_text(json.dumps(report, indent=2, default=str))

    try:
        import torch
        import transformers
    except ImportError as err:
        report["status"] = f"missing package: {err}"
        write()
        print(f"gpu_check: {err}; it needs torch and transformers", file=sys.stderr)
        return 1
    report["environment"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        report["status"] = "no CUDA device: nothing checked"
        write()
        print(
            f"gpu_check: no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False): "
            f"nothing was checked; run it on a GPU machine. Report: {args.json}"
        )
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu_dry_run else "cpu")
    if device.type == "cuda":
        report["environment"].update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda)
    report["dry_run"] = args.cpu_dry_run
    ctx: dict[str, Any] = {"device": device, "dry_run": args.cpu_dry_run}
    sections = [("tokenizer", section_tokenizer), ("exactness", section_exactness), ("interventions", section_interventions)]
    if device.type == "cuda":
        sections.append(("sync", section_sync))
    sections += [("per_call", section_per_call), ("share", section_share)]
    for name, section in sections:
        if time.monotonic() - started > args.budget_s:
            report[name] = {"skipped": "time budget spent"}
            report["failures"].append(f"{name}: skipped, time budget spent")
            continue
        print(f"[{time.monotonic() - started:6.1f} s] {name}", flush=True)
        try:
            report[name] = section(ctx)
        except Section as failure:
            report[name] = {"failed": str(failure.args[0]), "cases": failure.args[1] if len(failure.args) > 1 else None}
            report["failures"].append(f"{name}: {failure.args[0]}")
        except KeyboardInterrupt:
            report[name] = {"interrupted": "the run was cut (time limit)"}
            report["failures"].append(f"{name}: interrupted")
            write()
            break
        except Exception as err:  # report and go on: one broken section must not hide the others
            report[name] = {"error": repr(err), "traceback": traceback.format_exc()}
            report["failures"].append(f"{name}: {err!r}")
        write()
        if name == "tokenizer" and "failed" in report[name]:
            break
    report["status"] = "passed" if not report["failures"] else "failed"
    if args.cpu_dry_run:
        report["status"] += " (CPU dry run: no GPU check was made)"
    write()
    print(f"gpu_check: {report['status']} in {report['seconds']} s; report: {args.json}")
    for failure in report["failures"]:
        print(f"  FAILED {failure}")
    return 0 if not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
