"""Speculative decoding on Model Runner V2: every draft row gets the bias of the drafts committed one by one.

The processor is driven through the installed vLLM's own `LogitsProcRequestState` / `LogitsContext`
(`vllm_world.Mrv2Batch` keeps the token history as MRV2 does) with `num_speculative_tokens` drafts:
random batches of requests, 0 to K drafts per request and step, random acceptance (rejection
sampling's outcome: drafts accepted while they equal the token sampled at the row before),
preemption and resumption, chunked prefill. Two oracles, every step:

- the slow reference (tests/reference_interventions.py) at every row, draft rows included: the
  history is the committed output plus the drafts before the row;
- a second processor without speculative decoding, fed the committed tokens one at a time with the
  same logits: its output at each position must equal the speculative processor's row for that
  position, bit for bit (accepted drafts and the token after them).

A rejected draft must leave no trace: every later row still matches both.
`TIP_SPEC_STEPS` sets the steps per intervention: 2,000 by default (the main environment, vLLM 0.32);
tests/test_vllm_versions.py runs this file in vLLM 0.34's environment with 10,000.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import pytest
import torch

vllm = pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

from reference_interventions import Reference, Row  # noqa: E402
from vllm import SamplingParams  # noqa: E402
from vllm_world import BaseStats, Mrv2Batch, Scheduled, World, compare, expected_row, fake_config, make_base, restore, verify  # noqa: E402

from tip_decode.core.interventions import InterventionSet  # noqa: E402
from tip_decode.core.interventions.drafts import forget_drafts  # noqa: E402
from tip_decode.vllm import ThoughtSwitchPenalty  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: The demo model's real tokenizer (62 tokens, think markers, "Alternatively", "Wait"): logits rows
#: of 64 columns keep 10^4 steps per intervention within seconds. The qwen3 run adds the multi-token
#: triggers of a real 151k vocabulary.
DEMO_TOKENIZER = ROOT / "tip_decode" / "demo" / "model"
STEPS = int(os.environ.get("TIP_SPEC_STEPS", "2000"))

TRIGGERS = ["alternatively", "wait"]
BY_INTERVENTION = {
    "tip": [
        {"tip_alpha": 2.0, "tip_beta": 5, "tip_triggers": TRIGGERS, "tip_scope": "think"},
        {"tip_alpha": "inf", "tip_beta": 3, "tip_triggers": TRIGGERS, "tip_scope": "all"},
        {"tip_alpha": 1.5, "tip_beta": 8},
    ],
    "nowait": [{"nowait": 1}, {"nowait_keywords": ["wait"], "nowait_scope": "all"}],
    "cyclic": [
        {"cyclic_amplitude": 2.0, "cyclic_period": 7, "cyclic_shift": 0.1},
        {"cyclic": 1, "cyclic_period": 5, "cyclic_start": 2, "cyclic_end": 15, "cyclic_scope": "all"},
    ],
    "gated": [
        {"gated_alpha": 2.0, "gated_beta": 6, "gated_triggers": TRIGGERS, "gated_threshold": 0.9},
        {"gated": 1, "gated_threshold": 1.4, "gated_scope": "all"},
    ],
    "budget": [
        {"budget_min": 6, "budget_max": 11, "budget_word": "Wait"},
        {"budget_min": 5},
        {"budget_max": 4},
        {"budget_min": 3, "budget_max": 9, "budget_word": "Wait Wait"},
    ],
}
#: A request of each kind runs beside untouched ones.
UNTOUCHED = [{}, {"tip_alpha": 0}]


@pytest.fixture
def no_server_default(monkeypatch):
    for key in ("TIP_DECODE_ALPHA", "TIP_DECODE_BETA", "TIP_DECODE_TRIGGERS", "TIP_DECODE_SCOPE", "TIP_DECODE_INTERVENTIONS", "TIP_DECODE_TOKENIZER"):
        monkeypatch.delenv(key, raising=False)


def run_speculative(tokenizer_path: str, width: int, request_args: list[dict], steps: int, seed: int, drafts: int = 5, capacity: int = 4) -> dict[str, int]:
    """Drive a speculative processor and its one-token-at-a-time twin; returns what was exercised."""
    max_len = 64
    spec_batch, twin_batch = Mrv2Batch(capacity, width, max_len), Mrv2Batch(capacity, width, max_len)
    processor = ThoughtSwitchPenalty(fake_config(tokenizer_path, capacity, width, speculative=drafts), spec_batch.rs)
    twin = ThoughtSwitchPenalty(fake_config(tokenizer_path, capacity, width), twin_batch.rs)
    assert processor._layout.drafts == drafts and twin._layout.drafts == 0
    rng = random.Random(seed)
    world = World(processor.tokenizer, rng, request_args)
    rows_most = capacity * (drafts + 1)
    base = make_base(rows_most, width, world, seed=seed)
    stats = BaseStats(base)
    touched = world.touched(processor)
    ids = touched.tolist()
    work = base.clone()
    slots: dict = {}
    waiting: list = []
    counts = {
        "steps": 0,
        "added": 0,
        "resumed": 0,
        "chunked": 0,
        "draft_rows": 0,
        "accepted": 0,
        "rejected": 0,
        "twin_rows": 0,
        "changed_draft_rows": 0,
        "forced_draft_rows": 0,
        "forced_rows": 0,
    }
    problems: list[str] = []
    for step in range(steps):
        for slot, req in list(slots.items()):
            if len(req.output) >= req.max_len or rng.random() < 0.03:
                del slots[slot]
                if len(req.output) < req.max_len:
                    waiting.append(req)  # preempted: comes back later, in any free slot, with its output so far
        for slot in [s for s in range(capacity) if s not in slots]:
            if rng.random() < 0.5:
                continue
            req = world.admit(waiting, counts)
            slots[slot] = req
            for batch, proc in ((spec_batch, processor), (twin_batch, twin)):
                batch.add(proc, slot, req.params, req.prompt + req.output, len(req.prompt))
        processor.apply_staged_writes()
        twin.apply_staged_writes()
        order = [s for s in slots if rng.random() < 0.9]
        rng.shuffle(order)
        if not order:
            continue
        scheduled: list[Scheduled] = []
        row = 0
        for slot in order:
            proposal = [world.next_token() for _ in range(rng.randint(0, drafts))]
            sch = spec_batch.schedule(slot, row, rng, proposal, counts)
            scheduled.append(sch)
            row += len(sch.positions)
        twin_batch.computed.update(spec_batch.computed)
        ctx = spec_batch.context(scheduled)
        for sch in scheduled:
            req = slots[sch.slot]
            for j in range(len(sch.positions)):
                stats.record(req, sch.first_row + j, base, position=len(req.output) + j)
        out = processor.apply(work[:row], ctx)
        counts["steps"] += 1
        # Every row against the reference: the committed output plus the drafts before the row.
        forced_at: dict[int, int] = {}
        for sch in scheduled:
            req = slots[sch.slot]
            for j in range(len(sch.positions)):
                r = sch.first_row + j
                got = out[r, touched]
                if req.settings is None:
                    expected, forced, uncertain = base[r, touched], None, False
                else:
                    expected, forced, uncertain = expected_row(world, req, req.output + sch.drafts[:j], base[r], ids)
                if forced is not None:
                    forced_at[r] = forced
                    counts["forced_rows"] += 1
                    counts["forced_draft_rows"] += j > 0
                assert not torch.isnan(got).any()
                counts["draft_rows"] += j > 0
                counts["changed_draft_rows"] += j > 0 and not torch.equal(got, base[r, touched])
                if not uncertain and (bad := compare(got, expected)):
                    problems.append(
                        f"step {step} slot {sch.slot} row {j} of {len(sch.positions)} settings {req.settings} output {req.output} "
                        f"drafts {sch.drafts}: ids {[ids[i] for i in bad]} got {got[bad].tolist()} expected {expected[bad].tolist()}"
                    )
        # Sampling: a target token per row (the forced one, mostly), then rejection sampling's outcome.
        committed: dict[int, list[int]] = {}
        for sch in scheduled:
            if not sch.samples:
                committed[sch.slot] = []
                continue
            targets = []
            for j in range(len(sch.positions)):
                forced = forced_at.get(sch.first_row + j)
                if forced is not None and rng.random() < 0.9:
                    targets.append(forced)
                elif j < len(sch.drafts) and rng.random() < 0.6:
                    targets.append(sch.drafts[j])
                else:
                    targets.append(world.next_token())
            tokens = verify(sch.drafts, targets)
            committed[sch.slot] = tokens
            counts["accepted"] += len(tokens) - 1
            counts["rejected"] += len(sch.drafts) - (len(tokens) - 1)
        # The twin: the same positions one committed token at a time, with the same logits rows.
        depth = max(max(len(t), 1) for t in committed.values())
        for s in range(depth):
            sub = [sch for sch in scheduled if s < max(len(committed[sch.slot]), 1)]
            twin_rows = [sch.first_row + s for sch in sub]
            twin_ctx = twin_batch.context([Scheduled(sch.slot, k, [sch.positions[0] + s], [sch.inputs[s]]) for k, sch in enumerate(sub)])
            twin_out = twin.apply(base[twin_rows].clone(), twin_ctx)
            for k, sch in enumerate(sub):
                r = sch.first_row + s
                if not torch.equal(twin_out[k, touched], out[r, touched]):
                    req = slots[sch.slot]
                    problems.append(
                        f"step {step} slot {sch.slot} row {s}: one token at a time gives {twin_out[k, touched].tolist()}, "
                        f"speculative {out[r, touched].tolist()} (settings {req.settings}, output {req.output}, drafts {sch.drafts})"
                    )
                counts["twin_rows"] += 1
                if s < len(committed[sch.slot]):
                    twin_batch.commit(sch.slot, [committed[sch.slot][s]])
        for sch in scheduled:
            spec_batch.commit(sch.slot, committed[sch.slot])
            slots[sch.slot].output += committed[sch.slot]
        restore(work, base, touched, step)
        assert not problems, f"{len(problems)} divergences, first: {problems[:3]}"
    return counts


@pytest.mark.parametrize("intervention", sorted(BY_INTERVENTION))
def test_draft_rows_equal_drafts_committed_one_by_one(no_server_default, intervention):
    """TIP_SPEC_STEPS steps per intervention (10^4 in vLLM 0.34's environment), 0 to 5 drafts, preemption, rejection."""
    width = 64
    counts = run_speculative(str(DEMO_TOKENIZER), width, BY_INTERVENTION[intervention] + UNTOUCHED, STEPS, seed=sorted(BY_INTERVENTION).index(intervention))
    print(f"\n{intervention}: {counts}")
    floor = STEPS // 50
    exercised = {k: v for k, v in counts.items() if "forced" not in k or intervention == "budget"}
    assert min(exercised.values()) >= floor, counts
    assert counts["steps"] >= STEPS * 0.9, counts


def test_qwen3_vocabulary_mixed(no_server_default, tokenizers_dir):
    """Every intervention together on the real 151k qwen3 vocabulary (multi-token triggers)."""
    from test_vllm_batch import REQUEST_ARGS, WIDTH

    steps = 400
    counts = run_speculative(str(tokenizers_dir / "qwen3"), WIDTH, REQUEST_ARGS, steps, seed=7, drafts=3, capacity=3)
    print(f"\nqwen3 mixed: {counts}")
    assert min(counts.values()) >= steps // 50, counts


def test_one_speculative_token(no_server_default):
    counts = run_speculative(str(DEMO_TOKENIZER), 64, BY_INTERVENTION["budget"] + BY_INTERVENTION["gated"], 800, seed=11, drafts=1, capacity=3)
    assert counts["accepted"] > 50 and counts["rejected"] > 50, counts


def test_placeholder_tokens_never_reach_the_state(no_server_default):
    """A -1 (async scheduling's placeholder) at a row's input is neither committed nor fed to the drafts after it."""
    width = 64
    batch = Mrv2Batch(2, width, 32)
    processor = ThoughtSwitchPenalty(fake_config(str(DEMO_TOKENIZER), 2, width, speculative=2), batch.rs)
    params = SamplingParams(extra_args={"tip_alpha": 2.0, "tip_beta": 50, "tip_triggers": TRIGGERS, "tip_scope": "all"})
    batch.add(processor, 0, params, [7, 8], 2)
    processor.apply_staged_writes()
    rng = random.Random(0)
    prefill = batch.schedule(0, 0, rng)
    while not prefill.samples:
        processor.apply(torch.zeros(1, width), batch.context([prefill]))
        prefill = batch.schedule(0, 0, rng)
    processor.apply(torch.zeros(1, width), batch.context([prefill]))
    batch.commit(0, [9])
    state = processor._slot_group[0].state
    kept = processor._layout.draft_row(torch.tensor([0, 0]), torch.tensor([1, 2]))
    assert int(state.column("position")[0]) == 0
    # The newest committed token still a placeholder at apply time: not fed.
    decode = batch.schedule(0, 0, rng, [-1, 10])
    decode.inputs[0] = -1
    out = processor.apply(torch.zeros(3, width), batch.context([decode]))
    assert int(state.column("position")[0]) == 0 and not torch.isnan(out).any()
    # Filled in: fed once. A placeholder draft is not fed, and no state after it is ever resumed from.
    decode = batch.schedule(0, 0, rng, [-1, 10])
    out = processor.apply(torch.zeros(3, width), batch.context([decode]))
    assert int(state.column("position")[0]) == 1 and not torch.isnan(out).any()
    assert (state.ints[kept, state.layout.POSITION] < 0).all()
    # A real draft is kept at the position it was fed at (what a later step resumes from).
    decode = batch.schedule(0, 0, rng, [10, 11])
    processor.apply(torch.zeros(3, width), batch.context([decode]))
    assert state.ints[kept, state.layout.POSITION].tolist() == [2, 3]
    assert not math.isnan(float(out.sum()))


def test_accepted_drafts_are_replayed_when_no_kept_state_fits(no_server_default):
    """The safety net: accepted drafts whose kept states are gone are replayed from the committed
    history (TIP alone decides nothing in apply, so the result is exact), and the slot goes on."""
    width = 64
    batch = Mrv2Batch(1, width, 32)
    processor = ThoughtSwitchPenalty(fake_config(str(DEMO_TOKENIZER), 1, width, speculative=3), batch.rs)
    settings = {"tip_alpha": 2.0, "tip_beta": 4, "tip_triggers": TRIGGERS, "tip_scope": "all"}
    batch.add(processor, 0, SamplingParams(extra_args=settings), [7, 8], 2)
    processor.apply_staged_writes()
    rng = random.Random(0)
    prefill = batch.schedule(0, 0, rng)
    while not prefill.samples:
        processor.apply(torch.zeros(1, width), batch.context([prefill]))
        prefill = batch.schedule(0, 0, rng)
    processor.apply(torch.zeros(1, width), batch.context([prefill]))
    batch.commit(0, [9])
    alternatively = 10
    decode = batch.schedule(0, 0, rng, [alternatively, 9, 9])
    processor.apply(torch.zeros(4, width), batch.context([decode]))
    batch.commit(0, [alternatively, 9, 8])  # two drafts accepted, then 8 sampled
    group = processor._slot_group[0]
    forget_drafts(group.state, processor._layout, torch.tensor([0]))
    decode = batch.schedule(0, 0, rng, [9])
    out = processor.apply(torch.zeros(2, width), batch.context([decode]))
    state = group.state
    assert int(state.column("position")[0]) == 4  # 9, Alternatively, 9, 8
    reference = Reference(processor.tokenizer)
    config = InterventionSet.from_mapping(settings)
    for row, history in enumerate(([9, alternatively, 9, 8], [9, alternatively, 9, 8, 9])):
        bias, _, _ = reference.expected(config, Row(False, 0, history), len(history))
        assert out[row, alternatively] == bias.get(alternatively, 0.0), (row, bias)
    # The switch at output position 1 opened a 4-token window: still open for row 0, closed for row 1.
    assert out[0, alternatively] == -2.0 and out[1, alternatively] == 0.0
