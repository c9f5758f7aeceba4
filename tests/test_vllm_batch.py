"""Batch bookkeeping of the vLLM processor (`ThoughtSwitchPenalty`) on both model runners, without an engine.

The V1 runner is driven with vLLM's own `BatchUpdate` records through a randomized persistent
batch (adds, removals, one-way moves, swaps, preemption with resumption, async placeholders,
chunked-prefill steps with no new token, mixed per-request interventions: TIP alone with various
settings, NoWait, CyclicReflex, budgets with and without a forced word, gated TIP, and
combinations); Model Runner V2 through its real `LogitsProcRequestState` / `LogitsContext`
interface objects with slots, reordered rows, chunked prefill and resumption after preemption.
Every step's output is compared with the slow references of tests/reference.py and
tests/reference_interventions.py.

vLLM's MRV2 buffers (`StagedWriteTensor`, `UvaBackedTensor`) need pinned memory, which a CPU-only
machine lacks, so the MRV2 test holds the token history in plain tensors exposing the same
`.gpu` / `.np` attributes the interface documents (tests/vllm_world.py).

The V1-runner tests run where vLLM still has that runner (0.32, 0.33); vLLM 0.34 removed it, and
there they are skipped for that reason (tests/test_vllm_versions.py runs this file on each release).
Speculative decoding on MRV2 is tests/test_vllm_speculative.py.
"""

from __future__ import annotations

import math
import os
import random
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from reference_interventions import Reference

vllm = pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

from vllm import SamplingParams  # noqa: E402
from vllm_world import BaseStats, Mrv2Batch, Req, World, make_base, request_state, restore  # noqa: E402
from vllm_world import fake_config as world_config  # noqa: E402

from tip_decode.adapters.vllm.versions import find_interfaces  # noqa: E402
from tip_decode.core.config import TIPConfig  # noqa: E402
from tip_decode.core.interventions import InterventionSet, plan_for  # noqa: E402
from tip_decode.vllm import ThoughtSwitchPenalty, request_config, server_default  # noqa: E402

#: The V1 model runner's interface exists (vLLM 0.32, 0.33): its tests run.
HAS_V1_RUNNER = find_interfaces().v1 is not None
needs_v1_runner = pytest.mark.skipif(not HAS_V1_RUNNER, reason=f"vLLM {vllm.__version__} has no V1 model runner (removed in 0.34)")
if HAS_V1_RUNNER:
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

WIDTH = 151680  # the tiny Qwen2's padded output width
SERVER_ENV = {
    "TIP_DECODE_ALPHA": "2.5",
    "TIP_DECODE_BETA": "7",
    "TIP_DECODE_TRIGGERS": "hmm,another approach",
    "TIP_DECODE_SCOPE": "all",
}
#: Per-request extra args: TIP off, the server default, different alpha/beta/triggers/scope, and every
#: other intervention alone and combined (the server default TIP applies unless `tip_alpha: 0`).
REQUEST_ARGS = [
    {},
    {"other_feature": 1},
    {"tip_alpha": 0},
    {"tip_beta": 0},
    {"tip_alpha": 3.0, "tip_beta": 5, "tip_triggers": ["alternatively", "wait"], "tip_scope": "think"},
    {"tip_alpha": "inf", "tip_beta": 9, "tip_triggers": ["alternatively", "wait"], "tip_scope": "think"},
    {"tip_alpha": 1.5, "tip_beta": 12, "tip_scope": "auto"},
    {"tip_alpha": 4, "tip_beta": 4, "tip_triggers": ["alternatively", "wait"], "tip_scope": "all"},
    {"tip_alpha": 0, "nowait": 1},
    {"nowait_keywords": ["but", "maybe"], "nowait_scope": "all"},
    {"tip_alpha": 0, "cyclic_amplitude": 2.0, "cyclic_period": 7, "cyclic_shift": 0.1},
    {"cyclic": 1, "cyclic_period": 5, "cyclic_start": 2, "cyclic_end": 15, "budget_max": 9},
    {"tip_alpha": 0, "budget_min": 6, "budget_max": 11, "budget_word": "Wait"},
    {"tip_alpha": 0, "budget_min": 5, "budget_word": " Hmm, wait"},
    {"budget_min": 3},
    {"tip_alpha": 0, "gated_alpha": 2.0, "gated_beta": 6, "gated_triggers": ["wait", "hmm"], "gated_threshold": 11.2},
    {"gated": 1, "gated_threshold": 12.0, "nowait_keywords": "wait", "budget_max": 8, "budget_min": 2, "budget_word": "Wait"},
    # The base rows' confidences (make_base) lie between 4.55 and 4.9; half the rows want to end thinking.
    {"tip_alpha": 0, "deepconf_threshold": 4.7, "deepconf_window": 2},
    {"tip_alpha": 0, "thinkbrake_tau": 1.5, "thinkbrake_boundary": [".\n\n", "\n\n"]},
    {"deepconf_threshold": 4.75, "deepconf_window": 3, "thinkbrake_tau": 0.5, "budget_min": 4, "nowait": 1},
]


def fake_config(tokenizer_path: str, capacity: int):
    return world_config(tokenizer_path, capacity, WIDTH)


@pytest.fixture
def server_env(monkeypatch):
    for key, value in SERVER_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TIP_DECODE_TOKENIZER", raising=False)
    monkeypatch.delenv("TIP_DECODE_INTERVENTIONS", raising=False)


def decides_nothing_from_logits(req: Req) -> bool:
    """The request's interventions read no logits (no gated TIP, budget word, ThinkBrake or DeepConf)."""
    settings = req.settings
    if settings is not None and (settings.thinkbrake is not None or settings.deepconf is not None):
        return False
    return settings is None or (settings.gated is None and (settings.budget is None or settings.budget.word is None))


def check_rows(out: torch.Tensor, base: torch.Tensor, rows: dict[int, Req], world: World, touched_ids: torch.Tensor) -> tuple[list[str], dict[int, int]]:
    """Compare the touched columns of every live row; returns one line per divergence and the forced token per row."""
    problems = []
    forced_tokens: dict[int, int] = {}
    ids = touched_ids.tolist()
    for row, req in rows.items():
        got = out[row, touched_ids]
        if req.settings is None:
            expected = base[row, touched_ids]
            uncertain = False
        else:
            # A placeholder still -1 at apply time: the processor applies the state before it.
            known = req.output[:-1] if req.output and req.output[-1] == -1 else req.output
            req.row.generated = known
            bias, forced, uncertain = world.reference.expected(req.settings, req.row, len(known))
            expected = Reference.apply(base[row], ids, bias, forced)
            if forced is not None:
                forced_tokens[row] = forced
        if uncertain:
            continue
        close = torch.isclose(got, expected, atol=1e-4, rtol=0) | (got == expected)
        if not bool(close.all()):
            bad = (~close).nonzero().flatten().tolist()
            problems.append(
                f"row {row} settings {req.settings} prompt {req.prompt} output {req.output}: "
                f"column ids {[ids[i] for i in bad]} got {got[bad].tolist()} expected {expected[bad].tolist()}"
            )
    return problems, forced_tokens


# ----- V1 model runner -----


@needs_v1_runner
@pytest.mark.parametrize(
    ("request_args", "steps"),
    [
        (REQUEST_ARGS, int(os.environ.get("TIP_V1_STEPS", "5000"))),
        # every request on one configuration: rows are consecutive
        ([{"tip_alpha": 2.0, "tip_beta": 6, "tip_triggers": ["alternatively", "wait"], "tip_scope": "think"}], 2_000),
    ],
    ids=["mixed", "all-tip"],
)
def test_v1_persistent_batch_fuzz_matches_reference(server_env, tokenizers_dir, request_args, steps):
    capacity = 8
    processor = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), capacity), torch.device("cpu"), False)
    rng = random.Random(1234)
    world = World(processor.tokenizer, rng, request_args)
    base = make_base(capacity, WIDTH, world, seed=0)
    stats = BaseStats(base)
    touched = world.touched(processor)
    batch: list[Req | None] = [None] * capacity
    waiting: list[Req] = []
    unfilled: list[tuple[Req, int]] = []
    counts = {
        "added": 0,
        "resumed": 0,
        "removed": 0,
        "moved": 0,
        "swapped": 0,
        "penalised_rows": 0,
        "placeholders": 0,
        "forced_rows": 0,
        "rows_as_slice": 0,
        "rows_as_index": 0,
        "late_placeholders": 0,
        "caught_up": 0,
    }
    divergences: list[str] = []
    work = base.clone()
    started = time.monotonic()
    for _step in range(steps):
        removed: list[int] = []
        added = []
        moved = []
        for i, req in enumerate(batch):
            if req is not None and (len(req.output) >= req.max_len or rng.random() < 0.03):
                batch[i] = None
                removed.append(i)
                counts["removed"] += 1
                if len(req.output) < req.max_len:
                    waiting.append(req)  # preempted: comes back later with its output so far
        free = [i for i in range(capacity) if batch[i] is None]
        rng.shuffle(free)
        for i in free[: rng.randint(0, len(free))]:
            req = world.admit(waiting, counts)
            batch[i] = req
            added.append((i, req.params, req.prompt, req.output))
        for _ in range(rng.choice((0, 0, 1, 2))):
            a, b = rng.sample(range(capacity), 2)
            if rng.random() < 0.5:
                if batch[a] is None and batch[b] is None:
                    continue
                batch[a], batch[b] = batch[b], batch[a]
                moved.append((a, b, MoveDirectionality.SWAP))
                counts["swapped"] += 1
            else:
                if batch[a] is None:
                    continue
                if batch[b] is not None and len(batch[b].output) < batch[b].max_len:
                    waiting.append(batch[b])  # a move may overwrite a live index
                batch[b], batch[a] = batch[a], None
                moved.append((a, b, MoveDirectionality.UNIDIRECTIONAL))
                counts["moved"] += 1
        update = BatchUpdate(batch_size=capacity, removed=removed, added=added, moved=moved) if (removed or added or moved) else None
        processor.update_state(update)
        # Async scheduling: last step's tokens arrive as -1 and are filled in before apply; now and
        # then one is still -1 at apply time and filled after it (the row then has two new tokens
        # at the next step: the catch-up path). Only for rows whose interventions decide nothing
        # from the logits, which a late token would attribute to the wrong step.
        late: list[tuple[Req, int]] = []
        for req, token in unfilled:
            if req.output and req.output[-1] == -1:
                if decides_nothing_from_logits(req) and rng.random() < 0.2:
                    late.append((req, token))
                    counts["late_placeholders"] += 1
                else:
                    req.output[-1] = token
        unfilled = []
        live = {i: req for i, req in enumerate(batch) if req is not None}
        for i, req in live.items():
            stats.record(req, i, base)
        counts["caught_up"] += sum(len(req.output) > processor._seen[i] + 1 for i, req in live.items() if i in processor._rows)
        out = processor.apply(work)
        for group in processor._groups:  # both ways of addressing a group's rows are exercised
            if group.rows is not None:
                counts["rows_as_slice" if isinstance(group.rows, slice) else "rows_as_index"] += 1
        counts["penalised_rows"] += int((out[:, touched] != base[:, touched]).any(dim=1).sum())
        problems, forced = check_rows(out, base, live, world, touched)
        divergences += problems
        counts["forced_rows"] += len(forced)
        restore(work, base, touched, _step)
        for req, token in late:
            req.output[-1] = token
        for i, req in live.items():
            if rng.random() < 0.1:
                continue  # a chunked-prefill step: the row is sampled, the token discarded
            token = world.next_token(forced.get(i))
            if rng.random() < 0.5:
                req.output.append(-1)
                unfilled.append((req, token))
                counts["placeholders"] += 1
            else:
                req.output.append(token)
    elapsed = time.monotonic() - started
    print(f"\n{steps} steps in {elapsed:.1f} s: {counts}")
    assert not divergences, f"{len(divergences)} divergences, first: {divergences[:3]}"
    # The fuzz must exercise what it claims to (nothing is forced when no request has a budget).
    exercised = {k: v for k, v in counts.items() if k != "forced_rows" or any("budget_min" in a or "budget_max" in a for a in request_args)}
    assert min(exercised.values()) > 200, counts


class ReadCountingList(list):
    """A request's output list that counts the entries a processor reads in bulk (iteration, slices
    other than the newest entry alone)."""

    bulk_reads = 0

    def __iter__(self):
        ReadCountingList.bulk_reads += len(self)
        return super().__iter__()

    def __getitem__(self, key):
        if isinstance(key, slice):
            read = range(*key.indices(len(self)))
            if list(read) != [len(self) - 1]:
                ReadCountingList.bulk_reads += len(read)
        return super().__getitem__(key)


@needs_v1_runner
def test_v1_step_reads_only_the_newest_token_of_each_output(server_env, tokenizers_dir):
    """Per-step cost must not grow with the outputs' length: a row just added (no token yet) must
    not make the processor re-read every other request's whole output (it did, every step)."""
    capacity, history = 16, 2000
    processor = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), capacity), "cpu", False)
    params = SamplingParams(extra_args={"tip_beta": 600})
    outputs = [ReadCountingList() for _ in range(8)]
    processor.update_state(BatchUpdate(batch_size=8, removed=[], added=[(i, params, [1, 2], o) for i, o in enumerate(outputs)], moved=[]))
    logits = torch.zeros(capacity, WIDTH)
    rng = random.Random(0)
    for output in outputs:
        output.extend(rng.randrange(1000, 100_000) for _ in range(history))
    processor.apply(logits[:8])  # catches up with 2000 tokens per row once
    ReadCountingList.bulk_reads = 0
    for step in range(20):
        index = 8 + step % 8  # a new request in a free row every step, finished the step after
        added = [(index, params, [1, 2], ReadCountingList())]
        removed = [8 + (step - 1) % 8] if step else []
        processor.update_state(BatchUpdate(batch_size=capacity, removed=removed, added=added, moved=[]))
        for output in outputs:
            output.append(rng.randrange(1000, 100_000))
        processor.apply(logits)
    assert ReadCountingList.bulk_reads == 0
    for i in range(len(outputs)):
        assert processor._seen[i] == history + 20


def test_request_arguments_are_remembered_by_value(server_env, tokenizers_dir):
    processor = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), 2), request_state(2, WIDTH, 8))
    settings = processor._settings_or_off
    first = settings(SamplingParams(extra_args={"tip_beta": 3, "tip_triggers": ["wait"]}))
    again = settings(SamplingParams(extra_args={"tip_triggers": ["wait"], "tip_beta": 3, "other": 1}))
    assert again is first and first.tip.beta == 3 and first.tip.triggers == ("wait",)
    assert settings(SamplingParams(extra_args={"tip_beta": 4, "tip_triggers": ["wait"]})).tip.beta == 4
    assert settings(SamplingParams(extra_args={"tip_beta": 1.5})) is None  # invalid: off
    assert settings(SamplingParams(extra_args={"tip_alpha": 0})) is None
    assert settings(SamplingParams(extra_args={"tip_alpha": 0.5})).tip.alpha == 0.5
    # True == 1 and both hash alike, but only 1 is a valid alpha: the key must tell them apart.
    assert settings(SamplingParams(extra_args={"tip_alpha": 1})).tip.alpha == 1.0
    assert settings(SamplingParams(extra_args={"tip_alpha": True})) is None
    assert settings(SamplingParams(extra_args={"tip_alpha": 1})).tip.alpha == 1.0
    # Inside lists too: a trigger list holding True is refused, one holding "1" is not looked up as it.
    assert settings(SamplingParams(extra_args={"nowait_keywords": ["wait", True]})) is None
    # Other intervention keys are part of the key, and so is vLLM's own thinking budget.
    assert settings(SamplingParams(extra_args={"tip_alpha": 0, "budget_min": 3})).budget.min == 3
    assert settings(SamplingParams(extra_args={"tip_alpha": 0, "budget_min": 4})).budget.min == 4
    with_budget = SamplingParams(extra_args={"tip_alpha": 0, "budget_min": 4})
    with_budget.thinking_token_budget = 3  # budget_min above vLLM's maximum: refused, so off
    assert settings(with_budget) is None
    assert settings(SamplingParams(extra_args={"tip_alpha": 0, "budget_min": 4})).budget.min == 4
    with_budget.thinking_token_budget = 9  # vLLM's maximum becomes the budget's maximum
    assert settings(with_budget).budget.max == 9 and settings(with_budget).budget.min == 4
    # A value that cannot be hashed is parsed every time rather than refused.
    assert settings(SamplingParams(extra_args={"tip_beta": 3, "tip_triggers": ["wait"], "tip_x": {}})) is None
    assert len(processor._settings_cache) <= 12


@needs_v1_runner
def test_v1_unfilled_placeholder_is_deferred(server_env, tokenizers_dir):
    """A -1 still present at apply time is not read as a token; the next step catches up."""
    processor = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), 2), "cpu", False)
    hit = plan_for(processor.tokenizer, InterventionSet(tip=server_default())).rule("tip").vocabulary.token_ids[0]
    params = SamplingParams(extra_args={"tip_beta": 2})
    output: list[int] = []
    processor.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, params, [1, 2], output)], moved=[]))
    base = torch.zeros(1, WIDTH)
    assert processor.apply(base.clone())[0, hit] == -2.5  # window open at position 0
    output += [5, -1]  # token 5 known, the next one still a placeholder
    assert processor.apply(base.clone())[0, hit] == -2.5  # state after [5]: 1 < 0 + 2
    output[-1] = 7
    assert processor.apply(base.clone())[0, hit] == 0.0  # after [5, 7]: window closed (2 >= 2)
    assert processor._seen[0] == 2


@needs_v1_runner
def test_v1_output_that_shrinks_rebuilds_the_row(server_env, tokenizers_dir):
    """vLLM trims a request's output when loading its KV cache fails (the tokens are recomputed):
    the row's state is rebuilt from what is left, as if the discarded tokens had never come."""
    config = fake_config(str(tokenizers_dir / "qwen3"), 2)
    params = SamplingParams(extra_args={"tip_beta": 4})
    shrinking, stepwise = ThoughtSwitchPenalty(config, "cpu", False), ThoughtSwitchPenalty(config, "cpu", False)
    hit = plan_for(shrinking.tokenizer, InterventionSet(tip=server_default())).rule("tip").vocabulary.token_ids[0]
    tokens = [5, hit, 6, 7, 8, 9]  # a switch, then four tokens: the new thought's window has closed
    base = torch.zeros(1, WIDTH)

    def run(processor: ThoughtSwitchPenalty, steps: list[list[int]]) -> list[float]:
        output: list[int] = []
        processor.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, params, [1, 2], output)], moved=[]))
        seen = [float(processor.apply(base.clone())[0, hit])]
        for step in steps:
            output[:] = step
            seen.append(float(processor.apply(base.clone())[0, hit]))
        return seen

    grown = [tokens[: n + 1] for n in range(len(tokens))]
    assert run(shrinking, [*grown, tokens[:3]])[-2:] == [0.0, -2.5]  # closed, then open again after the trim
    assert shrinking._seen[0] == 3
    assert run(stepwise, grown[:3])[-1] == -2.5  # the same three tokens, one per step


def test_needs_output_token_ids(server_env, tokenizers_dir):
    """The processor reads each request's output tokens: vLLM must fill them before `apply` (upstream's
    proposed hook defaults to False, under which async scheduling leaves -1 placeholders). vLLM may
    ask the class (before building processors) or an instance: both say True."""
    assert ThoughtSwitchPenalty.needs_output_token_ids() is True
    mrv2 = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), 2), request_state(2, WIDTH, 8))
    assert mrv2.needs_output_token_ids() is True
    if HAS_V1_RUNNER:
        v1 = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), 2), "cpu", False)
        assert v1.needs_output_token_ids() is True


@needs_v1_runner
def test_infinite_alpha_on_a_plus_inf_logit_is_a_ban_not_nan(server_env, tokenizers_dir):
    processor = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), 2), "cpu", False)
    hit = plan_for(processor.tokenizer, InterventionSet(tip=server_default())).rule("tip").vocabulary.token_ids[0]
    params = SamplingParams(extra_args={"tip_alpha": "inf"})
    processor.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, params, [1, 2], [])], moved=[]))
    logits = torch.zeros(1, WIDTH)
    logits[0, hit] = math.inf
    out = processor.apply(logits)
    assert not torch.isnan(out).any() and out[0, hit] == -math.inf


@needs_v1_runner
def test_a_ban_among_finite_rows_of_one_group_still_bans(server_env, tokenizers_dir):
    """One row with alpha inf in a group of finite rows: the group's logits write takes the ban-safe
    path (the one-pass add is only for groups whose every member has a finite bias)."""
    processor = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), 4), "cpu", False)
    hit = plan_for(processor.tokenizer, InterventionSet(tip=server_default())).rule("tip").vocabulary.token_ids[0]
    added = [(i, SamplingParams(extra_args={"tip_alpha": alpha}), [1, 2], []) for i, alpha in enumerate((2.0, "inf", 3.0))]
    processor.update_state(BatchUpdate(batch_size=3, removed=[], added=added, moved=[]))
    logits = torch.zeros(3, WIDTH)
    logits[:, hit] = math.inf
    out = processor.apply(logits)
    assert not torch.isnan(out).any()
    assert out[1, hit] == -math.inf and out[0, hit] == math.inf and out[2, hit] == math.inf
    processor.update_state(BatchUpdate(batch_size=3, removed=[1], added=[], moved=[]))  # the ban leaves
    logits = torch.zeros(3, WIDTH)
    logits[:, hit] = 1.0
    out = processor.apply(logits)
    assert out[0, hit] == -1.0 and out[2, hit] == -2.0 and out[1, hit] == 1.0


@needs_v1_runner
def test_no_tip_rows_cost_nothing(server_env, tokenizers_dir, monkeypatch):
    monkeypatch.setenv("TIP_DECODE_ALPHA", "0")
    processor = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), 4), "cpu", False)
    params = [SamplingParams(), SamplingParams(extra_args={"tip_beta": 10}), SamplingParams(extra_args={"tip_alpha": 0.0})]
    processor.update_state(BatchUpdate(batch_size=3, removed=[], added=[(i, p, [1], []) for i, p in enumerate(params)], moved=[]))
    logits = torch.randn(3, WIDTH)
    snapshot = logits.clone()
    assert processor.apply(logits) is logits
    assert torch.equal(logits, snapshot)
    assert processor.is_argmax_invariant() is False


# ----- per-request arguments and server defaults -----


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"tip_alpha": -1}, "tip_alpha"),
        ({"tip_alpha": "nan"}, "tip_alpha"),
        ({"tip_beta": 2.5}, "tip_beta"),
        ({"tip_beta": -3}, "tip_beta"),
        ({"tip_scope": "everywhere"}, "tip_scope"),
        ({"tip_triggers": []}, "tip_triggers"),
        ({"tip_alpha": 1, "tip_gamma": 2}, "tip_gamma"),
    ],
)
def test_validate_params_names_the_key(server_env, extra, key):
    with pytest.raises(ValueError, match=f"`{key}`"):
        ThoughtSwitchPenalty.validate_params(SamplingParams(extra_args=extra))


def test_validate_params_checks_triggers_against_the_tokenizer(server_env, tokenizers_dir, monkeypatch):
    monkeypatch.setenv("TIP_DECODE_TOKENIZER", str(tokenizers_dir / "llama-3.1"))
    ThoughtSwitchPenalty.validate_params(SamplingParams(extra_args={"tip_triggers": ["wait"], "tip_scope": "all"}))
    with pytest.raises(ValueError, match="`tip_scope`"):  # Llama 3.1 has no think markers
        ThoughtSwitchPenalty.validate_params(SamplingParams(extra_args={"tip_scope": "think"}))
    ThoughtSwitchPenalty.validate_params(SamplingParams(extra_args={"tip_alpha": 0, "tip_scope": "think"}))


def test_server_default_from_environment(server_env, monkeypatch):
    default = server_default()
    assert default == TIPConfig(alpha=2.5, beta=7, triggers=("hmm", "another approach"), scope="all")
    assert request_config(SamplingParams(extra_args={"tip_alpha": 0}), default).enabled is False
    assert request_config(SamplingParams(extra_args={"tip_beta": 3}), default) == TIPConfig(alpha=2.5, beta=3, triggers=default.triggers, scope="all")
    monkeypatch.setenv("TIP_DECODE_BETA", "soon")
    with pytest.raises(ValueError, match="TIP_DECODE_BETA"):
        server_default()
    monkeypatch.delenv("TIP_DECODE_ALPHA")
    monkeypatch.delenv("TIP_DECODE_BETA")
    assert server_default().enabled is False


def test_think_markers_from_reasoning_config(server_env, tokenizers_dir):
    from vllm.config.reasoning import ReasoningConfig

    from tip_decode.vllm import think_markers_from_config

    reasoning = ReasoningConfig(reasoning_parser="qwen3")
    # What initialize_token_ids sets from the parser's strings (it needs a model config to run).
    reasoning._reasoning_start_token_ids = [151667]
    reasoning._reasoning_end_token_ids = [151668]
    reasoning._natural_reasoning_end_token_ids = [151668]
    reasoning._enabled = True
    markers = think_markers_from_config(SimpleNamespace(reasoning_config=reasoning))
    assert (markers.start_id, markers.end_id) == (151667, 151668)
    reasoning._reasoning_start_token_ids = [27, 26865, 29]  # "<think>" spelled as three tokens
    assert think_markers_from_config(SimpleNamespace(reasoning_config=reasoning)) is None
    assert think_markers_from_config(SimpleNamespace(reasoning_config=None)) is None


# ----- Model Runner V2 -----


def test_mrv2_infinite_alpha_on_a_plus_inf_logit_is_a_ban_not_nan(server_env, tokenizers_dir):
    batch = Mrv2Batch(2, WIDTH, 8)
    processor = ThoughtSwitchPenalty(fake_config(str(tokenizers_dir / "qwen3"), 2), batch.rs)
    hit = plan_for(processor.tokenizer, InterventionSet(tip=server_default())).rule("tip").vocabulary.token_ids[0]
    batch.add(processor, 1, SamplingParams(extra_args={"tip_alpha": "inf"}), [1, 2], prompt_len=2)
    processor.apply_staged_writes()
    batch.computed[1] = 2  # the prompt is computed: the step decodes
    ctx = batch.context([batch.schedule(1, 0, random.Random(0))])
    logits = torch.zeros(1, WIDTH)
    logits[0, hit] = math.inf
    out = processor.apply(logits, ctx)
    assert not torch.isnan(out).any() and out[0, hit] == -math.inf


def test_mrv2_slots_match_reference(server_env, tokenizers_dir):
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcessor

    capacity, max_len, steps = 6, 64, int(os.environ.get("TIP_MRV2_STEPS", "2500"))
    rs = request_state(capacity, WIDTH, max_len)
    path = str(tokenizers_dir / "qwen3")
    assert issubclass(ThoughtSwitchPenalty, LogitsProcessor)
    processor = ThoughtSwitchPenalty(fake_config(path, capacity), rs)
    assert processor.runner == "v2"
    rng = random.Random(99)
    world = World(processor.tokenizer, rng, REQUEST_ARGS)
    base = make_base(capacity, WIDTH, world, seed=1)
    stats = BaseStats(base)
    touched = world.touched(processor)
    slots: dict[int, Req] = {}
    computed: dict[int, int] = {}
    waiting: list[Req] = []
    divergences: list[str] = []
    work = base.clone()
    counts = {"added": 0, "resumed": 0, "chunked": 0, "penalised_rows": 0, "forced_rows": 0}
    for _step in range(steps):
        for slot, req in list(slots.items()):
            if len(req.output) >= req.max_len or rng.random() < 0.03:
                del slots[slot]
                if len(req.output) < req.max_len:
                    waiting.append(req)
        for slot in [s for s in range(capacity) if s not in slots]:
            if rng.random() < 0.5:
                continue
            req = world.admit(waiting, counts)
            slots[slot] = req
            computed[slot] = 0
            processor.add_request(slot, req.params)
            tokens = req.prompt + req.output
            rs.all_token_ids.np[slot, : len(tokens)] = tokens
            rs.prompt_len.np[slot] = len(req.prompt)
            rs.prefill_len.np[slot] = len(tokens)
            rs.total_len.np[slot] = len(tokens)
        processor.apply_staged_writes()
        scheduled = [s for s in slots if rng.random() < 0.9]
        rng.shuffle(scheduled)
        if not scheduled:
            continue
        positions, inputs, samples = [], [], []
        for slot in scheduled:
            total = int(rs.total_len.np[slot])
            if computed[slot] < total:  # (chunked) prefill
                chunk = rng.randint(1, total - computed[slot])
                counts["chunked"] += chunk < total - computed[slot]
                computed[slot] += chunk
                position = computed[slot] - 1
            else:
                position = total - 1
            positions.append(position)
            inputs.append(int(rs.all_token_ids.np[slot, position]))
            samples.append(computed[slot] >= total)
        mapping = np.array(scheduled, dtype=np.int32)
        ctx = LogitsContext(
            expanded_idx_mapping=torch.from_numpy(mapping),
            idx_mapping=torch.from_numpy(mapping),
            idx_mapping_np=mapping,
            expanded_local_pos=torch.zeros(len(scheduled), dtype=torch.int32),
            input_ids=torch.tensor(inputs, dtype=torch.int32),
            pos=torch.tensor(positions, dtype=torch.int64),
            seq_lens_upper_bound_np=np.array(positions, dtype=np.int32) + 1,
        )
        rows_base = base[: len(scheduled)]
        for row, slot in enumerate(scheduled):
            stats.record(slots[slot], row, base)
        out = processor.apply(work[: len(scheduled)], ctx)
        counts["penalised_rows"] += int((out[:, touched] != rows_base[:, touched]).any(dim=1).sum())
        problems, forced = check_rows(out, rows_base, {row: slots[s] for row, s in enumerate(scheduled)}, world, touched)
        divergences += problems
        counts["forced_rows"] += len(forced)
        restore(work, base, touched, _step)
        for row, (slot, sample) in enumerate(zip(scheduled, samples)):
            if not sample:
                continue
            req = slots[slot]
            token = world.next_token(forced.get(row))
            total = int(rs.total_len.np[slot])
            req.output.append(token)
            rs.all_token_ids.np[slot, total] = token
            rs.total_len.np[slot] = total + 1
            computed[slot] = total + 1
    print(f"\nMRV2 {steps} steps: {counts}")
    assert not divergences, f"{len(divergences)} divergences, first: {divergences[:3]}"
    assert min(counts.values()) > 50, counts


def test_bans_never_empty_a_row_another_stage_restricted(server_env, tokenizers_dir):
    """A request restricted to a few tokens (allowed_token_ids here; a grammar likewise) whose budget
    bans exactly those: the row is left as the other stage made it, on both runners. (A group with
    such a member checks all its rows; without one, no row is checked: the bans stand.)"""
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext

    path = str(tokenizers_dir / "qwen3")
    eos, think_end = 151645, 151668
    allowed = [eos, think_end]
    restricted = SamplingParams(allowed_token_ids=allowed, extra_args={"tip_alpha": 0, "budget_min": 50})
    free = SamplingParams(extra_args={"tip_alpha": 0, "budget_min": 50})
    prompt = [1, 2, 151667]  # ends inside an open think block: the minimum bans </think> and the end of sequence

    def masked_logits() -> torch.Tensor:
        logits = torch.full((1, WIDTH), -math.inf)
        logits[0, allowed] = torch.tensor([1.0, 2.0])
        return logits

    def mrv2_row(params) -> torch.Tensor:
        rs = request_state(1, WIDTH, 8)
        processor = ThoughtSwitchPenalty(fake_config(path, 1), rs)
        processor.add_request(0, params)
        rs.all_token_ids.np[0, :3] = prompt
        rs.prompt_len.np[0] = rs.prefill_len.np[0] = rs.total_len.np[0] = 3
        processor.apply_staged_writes()
        mapping = np.array([0], dtype=np.int32)
        ctx = LogitsContext(
            expanded_idx_mapping=torch.from_numpy(mapping),
            idx_mapping=torch.from_numpy(mapping),
            idx_mapping_np=mapping,
            expanded_local_pos=torch.zeros(1, dtype=torch.int32),
            input_ids=torch.tensor([151667], dtype=torch.int32),
            pos=torch.tensor([2], dtype=torch.int64),
            seq_lens_upper_bound_np=np.array([3], dtype=np.int32),
        )
        return processor.apply(masked_logits(), ctx)[0]

    def v1_row(params) -> torch.Tensor:
        processor = ThoughtSwitchPenalty(fake_config(path, 1), "cpu", False)
        processor.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, params, prompt, [])], moved=[]))
        return processor.apply(masked_logits())[0]

    for row_of in (mrv2_row, v1_row) if HAS_V1_RUNNER else (mrv2_row,):
        out = row_of(restricted)
        assert torch.equal(out, masked_logits()[0]) and not torch.isnan(out).any(), row_of.__name__
        assert (row_of(free)[allowed] == -math.inf).all(), row_of.__name__  # no restriction declared: the ban stands
