"""The intervention family's core against the slow reference (tests/reference_interventions.py).

Every shared tokenizer; random token streams built to hit every rule (switch words, keyword tokens,
reflection pieces, think markers, end-of-sequence, the forced word); random logits with the end
marker often made the most likely token, so that budget forcing happens; several interventions per
request. Also: the flat keys and their errors, bit-identity when off, no NaN, row lifecycle, and the
per-step path running on the meta device (any host sync or data-dependent shape would fail there).
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from conftest import TOKENIZER_NAMES, load_hf_tokenizer
from reference_interventions import Reference, Row

from tip_decode.core.config import TIPConfig, parse_triggers
from tip_decode.core.interventions import (
    FORCED_LOGIT,
    AffirmConfig,
    AlphaOneConfig,
    BudgetConfig,
    CyclicConfig,
    DeepConfConfig,
    GatedConfig,
    InjectConfig,
    InterventionSet,
    InterventionState,
    NoThinkingConfig,
    NoWaitConfig,
    ThinkBrakeConfig,
    plan_for,
)
from tip_decode.core.interventions.arrays import NUMPY, TORCH
from tip_decode.core.interventions.cyclic import triangle
from tip_decode.core.interventions.nowait import keyword_hit

#: Every shared tokenizer; mistral-7b-v0.1 (SentencePiece, no think markers) included.
ALL_TOKENIZERS = tuple(dict.fromkeys((*TOKENIZER_NAMES, "mistral-7b-v0.1")))


def combos(has_markers: bool, include_next: bool = True) -> list[InterventionSet]:
    budget = [
        BudgetConfig(min=6, max=14, word="Wait"),
        BudgetConfig(min=5),
        BudgetConfig(max=3),
        BudgetConfig(min=4, max=20, word=" Hmm, let me see"),
    ]
    out = [
        InterventionSet(tip=TIPConfig(alpha=2.0, beta=5, triggers=("alternatively", "wait", "hmm", "another approach")), nowait=NoWaitConfig()),
        InterventionSet(cyclic=CyclicConfig(amplitude=3.0, period=8.0, shift=0.25)),
        InterventionSet(
            cyclic=CyclicConfig(amplitude=5.0, period=12.0, start=2, end=30, scope="all"), nowait=NoWaitConfig(keywords=("wait", "but"), scope="all")
        ),
        InterventionSet(gated=GatedConfig(alpha=math.inf, beta=9, triggers=("wait", "hmm"), threshold=9.0)),
        InterventionSet(
            gated=GatedConfig(alpha=1.5, beta=20, triggers=("alternatively", "but"), threshold=10.6), tip=TIPConfig(alpha=0.5, beta=3, triggers=("but",))
        ),
    ]
    # DeepConf: windows short enough to fill within a test's steps; thresholds inside the range of
    # the confidences of the test's logits (see `run_against_reference`).
    out += [
        InterventionSet(deepconf=DeepConfConfig(threshold=5.5, window=3)),
        InterventionSet(deepconf=DeepConfConfig(threshold=4.4, window=1, topk=5), nowait=NoWaitConfig(keywords=("wait",), scope="all")),
    ]
    if has_markers:
        out += [InterventionSet(budget=b) for b in budget]
        out.append(
            InterventionSet(tip=TIPConfig(alpha=1.0, beta=4), budget=budget[0], nowait=NoWaitConfig(keywords=("but", "maybe")), cyclic=CyclicConfig(period=6.0))
        )
        out += [
            InterventionSet(thinkbrake=ThinkBrakeConfig(tau=1.0)),
            InterventionSet(thinkbrake=ThinkBrakeConfig(tau=0.5, boundary=(".\n\n", "\n\n", "!"), temperature=0.6), budget=BudgetConfig(min=6, max=25)),
            InterventionSet(
                thinkbrake=ThinkBrakeConfig(tau=1.5, boundary=("].\n\n", ".")),
                deepconf=DeepConfConfig(threshold=5.5, window=4),
                budget=BudgetConfig(min=5, word="Wait"),
                tip=TIPConfig(alpha=2.0, beta=6),
            ),
        ]
    return out + (next_combos(has_markers) if include_next else [])


def next_combos(has_markers: bool) -> list[InterventionSet]:
    """Issue 21's interventions (affirm, alphaone, inject, nothinking), alone and with the others."""
    out = [
        InterventionSet(affirm=AffirmConfig(tau=0.3)),
        InterventionSet(
            affirm=AffirmConfig(tau=0.9, words=("Wait", "wait", "Hmm"), scope="auto"), nowait=NoWaitConfig(keywords=("but",)), cyclic=CyclicConfig(period=5.0)
        ),
        InterventionSet(inject=InjectConfig(text=" Let me be brief.")),
        InterventionSet(inject=InjectConfig(text="Wait, no.", after=".\n\n"), tip=TIPConfig(alpha=1.0, beta=4, triggers=("wait",))),
    ]
    if has_markers:
        out += [
            InterventionSet(alphaone=AlphaOneConfig(moment=14, seed=3)),
            InterventionSet(alphaone=AlphaOneConfig(alpha=0.5, think_tokens=31, seed=11, temperature=0.6)),
            InterventionSet(
                alphaone=AlphaOneConfig(moment=9, temperature=0.0, word=" Hmm, wait"),
                budget=BudgetConfig(max=16),
                tip=TIPConfig(alpha=2.0, beta=5, triggers=("wait",)),
            ),
            InterventionSet(nothinking=NoThinkingConfig()),
            InterventionSet(nothinking=NoThinkingConfig(text=None), affirm=AffirmConfig(tau=0.5)),
            InterventionSet(inject=InjectConfig(text="I should answer in JSON.", after="Wait"), budget=BudgetConfig(min=3, max=20, word="Wait")),
        ]
    return out


def token_pool(plan, tokenizer, reference: Reference) -> list[int]:
    pool: list[int] = []
    for name, rule in zip(plan.names, plan.rules):
        if name in ("tip", "gated"):
            vocab = rule.vocabulary
            pool += list(vocab.token_ids[:8]) + [i for m in vocab.multi_token[:8] for i in (*m.prefix, m.completion)]
        elif name == "nowait":
            pool += list(rule.token_ids[:12])
        elif name == "cyclic":
            pool += list(rule.token_ids)
        elif name == "budget":
            pool += list(rule.word_ids) * 3 + list(rule.eos_ids)
        elif name == "thinkbrake":
            # The boundary's pieces as the tokenizer's own file splits texts, often enough that
            # random streams end sentences (one token, or "." then "\n\n").
            encode = reference.oracle.raw.encode
            for text in ("a.\n\nb", "x].\n\n", "So.", "\n\n", "\n", "Yes!", "no.\n"):
                pool += encode(text, add_special_tokens=False).ids * 6
        elif name == "deepconf":
            pool += list(reference.eos_ids)
        elif name == "affirm":
            pool += list(rule.token_ids)
        elif name == "alphaone":
            pool += sorted(rule.delimiter_ids) * 2 + list(rule.word_ids) * 2 + list(rule.banned_ids[:6])
        elif name in ("inject", "nothinking"):
            pool += list(rule.text_ids)
            if rule.after is not None:  # the trigger, whole and in pieces
                pool += tokenizer.encode(rule.after, add_special_tokens=False) * 3 + tokenizer.encode(" x" + rule.after + "y", add_special_tokens=False)
    markers = reference.markers
    if markers.available:
        pool += [markers.start_id, markers.end_id]
    pool += tokenizer.encode(" the value. So, 12 x(y button Ohio", add_special_tokens=False)
    return pool


def run_against_reference(
    name: str, settings: InterventionSet, seed: int, rows: int = 5, steps: int = 36, host: bool = True, open_prompt: float = 0.5, take_forced: float = 0.9
) -> dict[str, int]:
    """Step `rows` random streams through the state and the reference; `open_prompt`: how often a
    prompt ends inside an open think block; `take_forced`: how often a forced token is generated."""
    tokenizer = load_hf_tokenizer(name)
    reference = Reference(tokenizer)
    plan = plan_for(tokenizer, settings)
    width = len(tokenizer) + 5
    tables = plan.tables(width, "cpu")
    state = InterventionState(tables, rows, host=host)
    assert state.host == (host and not any(r.reads_logits for r in tables.rules))
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    pool = token_pool(plan, tokenizer, reference)
    opened = [rng.random() < open_prompt for _ in range(rows)]
    thinking = [rng.randint(0, 3) if o else 0 for o in opened]
    state.start_rows(range(rows), [settings] * rows, opened, thinking)
    rows_ref = [Row(opened[b], thinking[b]) for b in range(rows)]
    columns = tables.columns
    ids = columns.tolist()
    outside = torch.ones(width, dtype=torch.bool)
    outside[columns] = False
    counts = {"changed": 0, "forced": 0, "banned": 0, "steps": 0}
    end = reference.markers.end_id
    scaled = "deepconf" in settings.names
    margins = "thinkbrake" in settings.names
    judged = settings.affirm is not None or settings.alphaone is not None  # rules that read probabilities
    for t in range(steps):
        raw = torch.randn(rows, width, generator=generator) * 3
        for b in range(rows):
            if scaled:  # confidences that vary from step to step: windows above and below the threshold
                raw[b] *= rng.choice((0.5, 1.0, 1.5))
            if end is not None and rng.random() < 0.35:
                raw[b, end] = raw[b].max() + 1.0  # the model "wants" to end thinking
            elif end is not None and margins and rng.random() < 0.5:
                raw[b, end] = raw[b].max() - rng.uniform(0.0, 3.0)  # close to the top: either side of tau
            if rng.random() < 0.2:
                raw[b, ids[rng.randrange(len(ids))]] = -math.inf
            if judged and rng.random() < 0.5:  # a plan column made likely: its probability spans tau
                raw[b, ids[rng.randrange(len(ids))]] = raw[b].max() + rng.uniform(-2.0, 14.0)
            rows_ref[b].logits.append(raw[b].clone())
        out = state.apply(raw.clone())
        # Nothing outside the plan's columns is ever written, bit for bit.
        assert torch.equal(out[:, outside].view(torch.int32), raw[:, outside].view(torch.int32))
        got_all, raw_all = out[:, columns], raw[:, columns]
        for b in range(rows):
            bias, forced, uncertain = reference.expected(settings, rows_ref[b], t)
            assert set(bias) <= set(ids) and (forced is None or forced in ids), "the plan misses ids the reference touches"
            if uncertain:
                continue
            expected = reference.apply(raw[b], ids, bias, forced)
            got = got_all[b]
            where = f"{name} {settings.names} seed {seed} row {b} step {t}"
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=0, msg=lambda m, where=where: f"{where}: {m}")
            # Bit for bit where no bias applies; exact bans and forcing; never NaN.
            same = expected.view(torch.int32) == raw_all[b].view(torch.int32)
            assert torch.equal(got.view(torch.int32)[same], raw_all[b].view(torch.int32)[same]), where
            assert torch.equal(torch.isneginf(got), torch.isneginf(expected)), where
            assert not torch.isnan(got).any(), where
            counts["changed"] += int(not torch.equal(got, raw_all[b]))
            counts["forced"] += int(forced is not None)
            counts["banned"] += int((torch.isneginf(got) & ~torch.isneginf(raw_all[b])).any())
            counts["steps"] += 1
        tokens = []
        forced_rows = (got_all == FORCED_LOGIT).nonzero().tolist()
        forced_of = {b: ids[c] for b, c in forced_rows}
        for b in range(rows):
            token = forced_of[b] if b in forced_of and rng.random() < take_forced else rng.choice(pool)
            tokens.append(token)
            rows_ref[b].generated.append(token)
        state.update(torch.tensor(tokens))
    return counts


@pytest.mark.parametrize("name", ALL_TOKENIZERS)
def test_state_equals_the_reference(name):
    tokenizer = load_hf_tokenizer(name)
    has_markers = Reference(tokenizer).markers.available
    totals = {"changed": 0, "forced": 0, "banned": 0, "steps": 0}
    every = combos(has_markers, include_next=False)
    # Every combination on qwen3 (the engine tests' tokenizer); a mixed subset elsewhere keeps the
    # suite's time in check while still crossing every rule with every vocabulary.
    newer = [c for c in every if {"deepconf", "thinkbrake"} & set(c.names)]  # every one on every tokenizer
    if has_markers:
        first_budget = next(i for i, c in enumerate(every) if c.names == ("budget",))
        older = [every[0], every[2], every[4], every[first_budget], every[first_budget + 4]]
    else:
        older = every[:5]
    chosen = every if name == "qwen3" else older + newer
    chosen = chosen + next_combos(has_markers)  # issue 21's interventions everywhere
    # Per intervention of issue 21, what its rows did: each one has to ban or force on this vocabulary.
    by_rule = {rule: {"forced": 0, "banned": 0} for rule in ("affirm", "alphaone", "inject", "nothinking")}
    for index, settings in enumerate(chosen):
        counts = run_against_reference(name, settings, seed=index, rows=4, steps=30)
        assert counts["changed"] > 0, (name, settings.names, counts)  # a test that changes nothing proves nothing
        for key in totals:
            totals[key] += counts[key]
        for rule in set(by_rule) & set(settings.names):
            by_rule[rule]["forced"] += counts["forced"]
            by_rule[rule]["banned"] += counts["banned"]
    assert totals["banned"] > 20, totals
    if has_markers:
        assert totals["forced"] > (20 if name == "qwen3" else 5), totals
    assert by_rule["affirm"]["banned"] > 20 and by_rule["inject"]["forced"] > 5, by_rule
    if has_markers:
        assert by_rule["alphaone"]["forced"] > 3 and by_rule["alphaone"]["banned"] > 10 and by_rule["nothinking"]["forced"] > 5, by_rule


@pytest.mark.parametrize("name", ["qwen3", "mistral-7b-v0.1"])
def test_torch_engine_equals_the_reference(name):
    """The same rules as torch operations on CPU tensors (what a GPU runs), where the test above runs
    the host engine for every plan that reads no logits."""
    tokenizer = load_hf_tokenizer(name)
    every = combos(Reference(tokenizer).markers.available)
    for index, settings in enumerate(every if name == "qwen3" else every[:7] + next_combos(False)):
        # Each stream is checked against the reference; a stream in which a rule never acted (a
        # ThinkBrake that met no boundary close enough to the top) proves nothing, so another seed
        # is tried, at most three.
        for attempt in range(3):
            counts = run_against_reference(name, settings, seed=100 + index + 1000 * attempt, rows=4, steps=30, host=False)
            if counts["changed"] > 0:
                break
        assert counts["changed"] > 0, (name, settings.names, counts)


def test_host_and_torch_engines_agree_bit_for_bit():
    """Every plan that the host engine runs, stepped through both engines on one random stream:
    the state (every column, floats by their bits) and the logits written are identical each step."""
    qwen = load_hf_tokenizer("qwen3")
    reflection = parse_triggers("reflection", "tip_triggers")  # 38 multi-token patterns on qwen3
    extra = [
        InterventionSet(tip=TIPConfig(alpha=3.0, beta=8, triggers=reflection)),
        InterventionSet(tip=TIPConfig(alpha=math.inf, beta=4, triggers=reflection, scope="all")),
    ]
    hosted = [s for s in combos(True) + extra if plan_for(qwen, s).tables(151936, "cpu").host]
    assert len(hosted) == 10  # + inject (alone and with TIP) and nothinking
    rng = random.Random(11)
    for settings in hosted:
        tables = plan_for(qwen, settings).tables(151936, "cpu")
        states = [InterventionState(tables, 6, host=host) for host in (True, False)]
        assert [s.host for s in states] == [True, False]
        opened = [rng.random() < 0.5 for _ in range(5)]
        pool = [int(i) for i in tables.token_ids] + [rng.randrange(151936) for _ in range(30)]
        pool += [qwen.convert_tokens_to_ids("<think>"), qwen.convert_tokens_to_ids("</think>")]
        rows = torch.tensor([0, 2, 3, 4, 5])
        for state in states:
            state.start_rows(rows, [settings] * 5, opened, [1] * 5)
        for step in range(40):
            logits = torch.randn(5, 151936)
            logits[:, tables.columns[::4]] = -0.0
            outs = [state.apply(logits.clone(), rows=rows, logit_rows=None) for state in states]
            assert torch.equal(outs[0].view(torch.int32), outs[1].view(torch.int32)), (settings.names, step)
            tokens = torch.tensor([rng.choice(pool) for _ in range(5)])
            for state in states:
                state.update(tokens, rows if step % 2 else slice(1, 6))
            assert torch.equal(states[0].storage, states[1].storage), (settings.names, step)


# ----- flat keys -----


def test_flat_keys_turn_interventions_on_and_read_back():
    settings = InterventionSet.from_mapping(
        {"tip_alpha": 3, "nowait": 1, "cyclic_period": 600, "budget_min": 10, "budget_max": "200", "gated": True, "other": 7}
    )
    assert settings.names == ("tip", "nowait", "cyclic", "gated", "budget")
    assert settings.cyclic == CyclicConfig(period=600.0)
    assert settings.budget == BudgetConfig(min=10, max=200)
    assert settings.gated == GatedConfig()
    assert InterventionSet.from_mapping(settings.to_mapping()) == settings
    assert not InterventionSet.from_mapping({"tip_beta": 5})  # TIP: only tip_alpha turns it on, as before
    assert not InterventionSet.from_mapping({"nowait": 0, "nowait_scope": "all"})
    assert not InterventionSet.from_mapping({"cyclic_amplitude": 0})
    default = InterventionSet.from_mapping({"nowait": 1, "tip_alpha": 2})
    assert InterventionSet.from_mapping({"tip_beta": 7}, default=default).tip.beta == 7
    assert InterventionSet.from_mapping({"nowait": "false"}, default=default).names == ("tip",)
    # A server default with TIP off but its own beta: a request's tip_alpha turns it on with that beta.
    off = InterventionSet(tip=TIPConfig(alpha=0, beta=50))
    assert InterventionSet.from_mapping({"tip_alpha": 1}, default=off).tip.beta == 50


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"nowait": "maybe"}, "nowait"),
        ({"nowait_keywords": []}, "nowait_keywords"),
        ({"nowait_scope": "sometimes"}, "nowait_scope"),
        ({"nowait_typo": 1}, "nowait_typo"),
        ({"cyclic_amplitude": -1}, "cyclic_amplitude"),
        ({"cyclic_amplitude": "nan"}, "cyclic_amplitude"),
        ({"cyclic_period": 0}, "cyclic_period"),
        ({"cyclic_shift": "x"}, "cyclic_shift"),
        ({"cyclic_start": -2}, "cyclic_start"),
        ({"cyclic_start": 10, "cyclic_end": 5}, "cyclic_end"),
        ({"cyclic_words": [""]}, "cyclic_words"),
        ({"cyclic_range": [0, 8]}, "cyclic_range"),
        ({"budget_min": 1.5}, "budget_min"),
        ({"budget_max": -3}, "budget_max"),
        ({"budget_min": 50, "budget_max": 10}, "budget_min"),
        ({"budget_word": 5}, "budget_word"),
        ({"budget": 1}, "budget"),
        ({"budget_maximum": 3}, "budget_maximum"),
        ({"gated_alpha": -1}, "gated_alpha"),
        ({"gated_beta": 0.5}, "gated_beta"),
        ({"gated_threshold": 0}, "gated_threshold"),
        ({"gated_triggers": []}, "gated_triggers"),
        ({"gated_scope": "x"}, "gated_scope"),
        ({"gated_tau": 1}, "gated_tau"),
        ({"tip_alpha": -1}, "tip_alpha"),
        ({"tip_gamma": 1}, "tip_gamma"),
    ],
)
def test_each_bad_key_is_named(extra, key):
    with pytest.raises(ValueError, match=f"`{key}`") as info:
        InterventionSet.from_mapping(extra)
    value = extra.get(key)
    if value is not None and key not in ("budget",) and not key.endswith(("_typo", "_range", "_maximum", "_tau", "_gamma")):
        assert repr(value) in str(info.value) or str(value) in str(info.value), str(info.value)


def test_vocabulary_errors_name_the_key():
    llama = load_hf_tokenizer("llama-3.1")  # no think markers
    with pytest.raises(ValueError, match="`budget_min` / `budget_max`"):
        plan_for(llama, InterventionSet(budget=BudgetConfig(max=5)))
    with pytest.raises(ValueError, match="`nowait_scope`"):
        plan_for(llama, InterventionSet(nowait=NoWaitConfig(scope="think")))
    # Every rule refuses the think scope on a tokenizer without think markers, as TIPLogitsProcessor does.
    for key in ("tip_scope", "gated_scope", "cyclic_scope"):
        with pytest.raises(ValueError, match=f"`{key}`.*no single-token think markers"):
            plan_for(llama, InterventionSet.from_mapping({key.split("_")[0] + ("_alpha" if key == "tip_scope" else ""): 1, key: "think"}))
    with pytest.raises(ValueError, match="`cyclic_words`"):
        plan_for(llama, InterventionSet(cyclic=CyclicConfig(words=("NotAPieceAnywhere123",))))
    with pytest.raises(ValueError, match="`gated_triggers`"):
        plan_for(llama, InterventionSet(gated=GatedConfig(triggers=("<|eot_id|>",), scope="all")))
    qwen = load_hf_tokenizer("qwen3")
    with pytest.raises(ValueError, match="`budget_word`"):
        plan_for(qwen, InterventionSet(budget=BudgetConfig(min=3, word="<|im_end|>")))
    with pytest.raises(ValueError, match="`nowait_keywords`"):
        plan_for(qwen, InterventionSet(nowait=NoWaitConfig(keywords=("zzqqxxjj",))))


# ----- the rules' own words -----


def test_nowait_filter_keeps_reflection_tokens_and_drops_longer_words():
    for text, keyword, hit in [
        ("wait", "wait", True), (" wait", "wait", True), (".wait", "wait", True), ("wait,", "wait", True),
        ("double-check", "check", True), ("button", "but", False), ("ohio", "oh", False),
        ("checkout", "check", False), ("waiting", "wait", False), ("anyway", "any", False), ("know", "now", False),
    ]:  # fmt: skip
        assert keyword_hit(text, keyword) is hit, (text, keyword)
    qwen = load_hf_tokenizer("qwen3")
    rule = plan_for(qwen, InterventionSet(nowait=NoWaitConfig())).rule("nowait")
    vocab = qwen.get_vocab()
    for piece in ("Wait", "ĠWait", "Ġwait", "ĠBut", "Ġhowever", "Hmm"):
        assert vocab[piece] in rule.token_ids, piece
    for piece in ("Ġbutton", "ĠOhio", "Ġcheckout", "Ġwaiting", "Ġanyway"):
        assert vocab[piece] not in rule.token_ids, piece
    assert vocab["<think>"] not in rule.token_ids and vocab["</think>"] not in rule.token_ids


def test_cyclic_wave_is_the_authors():
    t = torch.arange(0, 1200, dtype=torch.float32)
    wave = triangle(t, torch.tensor(5.0), torch.tensor(1200.0), torch.tensor(0.0), TORCH)
    assert wave[0] == 0 and wave[300] == pytest.approx(5.0) and wave[600] == pytest.approx(0.0, abs=1e-5)
    assert wave[900] == pytest.approx(-5.0) and wave[1199] == pytest.approx(-5 + 5 * (1199 / 1200 - 0.75) / 0.25, abs=1e-4)
    shifted = triangle(t, torch.tensor(5.0), torch.tensor(1200.0), torch.tensor(0.25), TORCH)
    assert shifted[0] == pytest.approx(5.0)
    qwen = load_hf_tokenizer("qwen3")
    rule = plan_for(qwen, InterventionSet(cyclic=CyclicConfig())).rule("cyclic")
    assert rule.word_ids == {"wait": 11489, "Wait": 14190, "but": 8088, "But": 3983, "Alternatively": 92014}
    mistral = load_hf_tokenizer("mistral-7b-v0.1")
    assert plan_for(mistral, InterventionSet(cyclic=CyclicConfig())).rule("cyclic").missing == ("Alternatively",)


def test_array_ops_agree_between_torch_and_numpy():
    """The ops the rules use beyond operators give the same numbers in both engines (the rules are
    written once against them)."""
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 50, generator=generator) * 4
    logits[1, :] = -math.inf
    logits[1, 7] = 2.0  # one finite logit: entropy 0
    logits[2, ::3] = -math.inf
    logits[3, 5] = logits[3, 9] = logits[3].max() + 1  # a tie: the first column wins
    host = logits.numpy()
    assert TORCH.argmax(logits).tolist() == NUMPY.argmax(host).tolist()
    assert TORCH.argmax(logits)[3] == 5
    assert TORCH.any(logits > 3, 1).tolist() == NUMPY.any(host > 3, 1).tolist()
    torch_entropy, numpy_entropy = TORCH.entropy(logits), NUMPY.entropy(host)
    assert torch_entropy.dtype == torch.float32 and numpy_entropy.dtype.name == "float32"
    torch.testing.assert_close(torch.from_numpy(numpy_entropy), torch_entropy, atol=1e-5, rtol=1e-5)
    assert torch_entropy[1] == 0 and not torch.isnan(torch_entropy).any()
    t = torch.arange(0, 40, dtype=torch.float32)
    args = (torch.tensor(5.0), torch.tensor(12.0), torch.tensor(0.3))
    assert triangle(t, *args, TORCH).tolist() == triangle(t.numpy(), *(a.numpy() for a in args), NUMPY).tolist()


# ----- off is off, never NaN -----


def test_zero_strength_is_bit_identical_and_nothing_is_nan():
    qwen = load_hf_tokenizer("qwen3")
    on = InterventionSet(
        tip=TIPConfig(alpha=math.inf, beta=5, triggers=("wait",)), nowait=NoWaitConfig(), cyclic=CyclicConfig(period=4.0), budget=BudgetConfig(min=3)
    )
    tables = plan_for(qwen, on).tables(151936, "cpu")
    state = InterventionState(tables, 3)
    zero = InterventionSet(
        tip=TIPConfig(alpha=0.0, beta=5, triggers=("wait",)), nowait=NoWaitConfig(), cyclic=CyclicConfig(amplitude=0.0, period=4.0), budget=BudgetConfig(min=3)
    )
    state.start_rows([0, 1, 2], [on, zero, on], [True, True, False], [0, 0, 0])
    state.stop_rows([2])
    logits = torch.randn(3, 151936)
    logits[:, tables.columns[:7]] = -0.0
    logits[:, tables.columns[7:14]] = -math.inf
    out = state.apply(logits.clone())
    assert not torch.isnan(out).any()
    # Row 2 is stopped; row 1 has zero strengths but nowait and the minimum still act on their columns.
    assert torch.equal(out[2].view(torch.int32), logits[2].view(torch.int32))
    untouched = torch.ones(151936, dtype=torch.bool)
    untouched[tables.columns] = False
    assert torch.equal(out[:, untouched].view(torch.int32), logits[:, untouched].view(torch.int32))
    nothing = InterventionState(plan_for(qwen, InterventionSet(cyclic=CyclicConfig(period=4.0))).tables(151936, "cpu"), 1)
    nothing.start_rows([0], [InterventionSet(cyclic=CyclicConfig(period=4.0))], [True], [0])  # t = 0: the wave is 0
    assert torch.equal(nothing.apply(logits[:1].clone()).view(torch.int32), logits[:1].view(torch.int32))


@pytest.mark.parametrize("host", [True, False])
@pytest.mark.parametrize("addressing", ["all", "slice", "index"])
def test_finite_write_equals_the_general_write_bit_for_bit(addressing, host):
    """`apply(finite=True)` (one index_add over the rows with a non-zero bias) writes exactly what
    the read-sum-write path writes, whatever the logits hold (-0.0, +-inf) and however rows are given."""
    qwen = load_hf_tokenizer("qwen3")
    settings = InterventionSet(tip=TIPConfig(alpha=2.5, beta=3, triggers=("wait", "alternatively", "hmm")))
    tables = plan_for(qwen, settings).tables(151936, "cpu")
    tip_ids = tables.rule("tip").switch
    rng = random.Random(5)
    pool = [int(i) for i in tip_ids.ids] + [rng.randrange(151936) for _ in range(40)]
    states = [InterventionState(tables, 8, host=host) for _ in range(2)]
    for state in states:
        state.start_rows(list(range(8)), [settings] * 8, [True] * 8, [0] * 8)
    rows = {"all": None, "slice": slice(2, 7), "index": torch.tensor([0, 3, 4, 7])}[addressing]
    count = 8 if rows is None else (5 if isinstance(rows, slice) else 4)
    written = 0
    for _ in range(12):
        tokens = torch.tensor([rng.choice(pool) for _ in range(count)])
        logits = torch.randn(8, 151936)
        logits[:, tables.columns[0::3]] = math.inf
        logits[:, tables.columns[1::3]] = -0.0
        logits[:, tables.columns[2::5]] = -math.inf
        outs = []
        for state, finite in zip(states, (False, True)):
            state.update(tokens, rows)
            outs.append(state.apply(logits.clone(), rows=rows, logit_rows=rows, finite=finite))
        assert torch.equal(outs[0].view(torch.int32), outs[1].view(torch.int32))
        written += int((outs[0] != logits).any(dim=1).sum())
    assert 0 < written < 12 * count  # some rows in a window, some not: both cases exercised


# ----- lifecycle -----


def lifecycle_settings() -> InterventionSet:
    return InterventionSet(
        tip=TIPConfig(alpha=2.0, beta=6, triggers=("alternatively", "hmm")),
        nowait=NoWaitConfig(keywords=("but",)),
        cyclic=CyclicConfig(period=10.0),
        budget=BudgetConfig(min=3, max=12, word="Wait"),
    )


def test_replay_select_copy_and_snapshot_reproduce_the_state():
    qwen = load_hf_tokenizer("qwen3")
    settings = lifecycle_settings()
    tables = plan_for(qwen, settings).tables(151936, "cpu")
    seqs = [qwen.encode(t, add_special_tokens=False) for t in (" a b Alternatively c d altern", "<think> x y z w but", " Hmm so H mm</think> ok")]
    length = min(len(s) for s in seqs)
    state = InterventionState(tables, 3)
    state.start_rows([0, 1, 2], [settings] * 3, [True, False, True], [2, 0, 0])
    for t in range(length):
        state.update(torch.tensor([s[t] for s in seqs]))
    replayed = InterventionState(tables, 3)
    for row, (opened, thinking) in enumerate([(True, 2), (False, 0), (True, 0)]):
        replayed.replay_row(row, settings, opened, thinking, seqs[row][:length])
    assert torch.equal(replayed.ints, state.ints)
    assert torch.equal(replayed.floats, state.floats)
    snapshot = state.snapshot()
    order = torch.tensor([2, 0, 1])
    expected = state.ints[order].clone()
    state.select(order)
    assert torch.equal(state.ints, expected)
    state.restore(snapshot)
    assert torch.equal(state.ints, replayed.ints)
    state.copy_rows(torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert torch.equal(state.ints[0], replayed.ints[1]) and torch.equal(state.ints[1], replayed.ints[0])


def test_per_step_path_runs_on_the_meta_device():
    """No .item(), .tolist(), tensor truth test or data-dependent shape: on "meta" they all raise."""
    qwen = load_hf_tokenizer("qwen3")
    settings = InterventionSet(
        tip=TIPConfig(alpha=2.0, beta=6, triggers=("alternatively", "hmm")),
        nowait=NoWaitConfig(),
        cyclic=CyclicConfig(),
        gated=GatedConfig(),
        budget=BudgetConfig(min=3, max=12, word=" Hmm, wait"),
    )
    tables = plan_for(qwen, settings).tables(151936, "meta")
    state = InterventionState(tables, 4)
    state.start_rows(
        torch.arange(4, device="meta"), [settings] * 4, torch.zeros(4, dtype=torch.bool, device="meta"), torch.zeros(4, dtype=torch.long, device="meta")
    )
    logits = torch.empty(4, 151936, device="meta")
    for _ in range(3):
        state.update(torch.empty(4, dtype=torch.long, device="meta"))
        state.apply(logits)
        state.apply(logits, rows=torch.arange(2, device="meta"), logit_rows=torch.arange(2, device="meta"))
        state.apply(logits, rows=slice(1, 3), logit_rows=slice(1, 3))
    with pytest.raises((RuntimeError, NotImplementedError)):
        state.ints.sum().item()  # the check would catch a sync
