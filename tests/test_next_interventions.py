"""Issue 21's interventions in their own words: affirm, alphaone, inject, nothinking.

The step-by-step comparison with the slow reference on every shared tokenizer is in
tests/test_interventions.py; here: the readings docs/interventions.md states (AlphaOne's alpha
moment formula, its delimiters and banned tokens, the draw's law and its independence of the batch,
the mass transfer at a sampling temperature, self-affirmation's tokens and threshold, the trigger
text found however the tokenizer cut it), the shared facilities (draws.py,
forcing.py), combinations refused in one line, replay after preemption, and the per-step path on
the meta device.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from conftest import load_hf_tokenizer
from reference_interventions import Reference

from tip_decode.core.interventions import (
    FORCED_LOGIT,
    AffirmConfig,
    AlphaOneConfig,
    BudgetConfig,
    InjectConfig,
    InterventionSet,
    InterventionState,
    NoThinkingConfig,
    NoWaitConfig,
    draws,
    plan_for,
)
from tip_decode.core.interventions.alphaone import DELIMITERS, alpha_moment
from tip_decode.core.interventions.spec import parse_spec

WIDTH = 151936  # qwen3's logits width
THINK_END = 151668


@pytest.fixture(scope="module")
def qwen():
    return load_hf_tokenizer("qwen3")


# ----- draws.py -----


def test_draws_are_the_same_in_torch_numpy_and_python_and_uniform():
    rng = np.random.default_rng(0)
    h = rng.integers(-(2**63), 2**63 - 1, size=4000, dtype=np.int64)
    tokens = rng.integers(-1, 200_000, size=4000, dtype=np.int64)
    on_torch = draws.draw(draws.follow(torch.from_numpy(h), torch.from_numpy(tokens))).numpy()
    on_numpy = draws.draw(draws.follow(h, tokens))
    on_host = [draws.host_draw(draws.host_follow(int(a), int(b))) for a, b in zip(h, tokens)]
    assert on_torch.tolist() == on_numpy.tolist() == on_host
    assert on_numpy.min() >= 0 and on_numpy.max() < 2**draws.DRAW_BITS
    # 4000 draws: the mean of u is 0.5 within 5 standard errors, each decile holds about 400.
    u = on_numpy / 2**draws.DRAW_BITS
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / 4000)
    assert np.all(np.abs(np.histogram(u, bins=10, range=(0, 1))[0] - 400) < 100)


# ----- inject's trigger (the text automaton: suffix.py, tests/test_thinkbrake_deepconf.py) -----


def test_a_trigger_is_found_however_the_tokenizer_cut_it(qwen):
    """ ".\\n\\n" as one token, inside "].\\n\\n", or as "." then "\\n\\n": the text is what counts."""
    settings = InterventionSet(inject=InjectConfig(text=" I should stop.", after=".\n\n"))
    tables = plan_for(qwen, settings).tables(WIDTH, "cpu")
    automaton = tables.rule("inject").automaton
    vocab = qwen.get_vocab()
    dot, blank, dot_blank, bracket = vocab["."], vocab["ĊĊ"], vocab[".ĊĊ"], vocab["].ĊĊ"]
    for tokens in ([dot_blank], [bracket], [dot, blank], [vocab["Ġx"], dot, blank]):
        assert fires_at(automaton, tokens), tokens
    for tokens in ([blank], [dot, vocab["Ġx"], blank], [dot, THINK_END, blank]):
        assert not fires_at(automaton, tokens), tokens


def fires_at(automaton, tokens: list[int]) -> bool:
    """The trigger ended inside the text of the last of `tokens`."""
    return automaton.step(automaton.run(tokens[:-1]), tokens[-1])[1]


def test_a_character_cut_between_tokens_never_matches_a_trigger(qwen):
    """docs/interventions.md: a trigger holding U+FFFD matches the token whose text is that whole
    character, never the first or a later byte of a character cut between tokens, nor a marker."""
    settings = InterventionSet(inject=InjectConfig(text=" I should stop.", after="\ufffd"))
    automaton = plan_for(qwen, settings).tables(WIDTH, "cpu").rule("inject").automaton
    vocab = qwen.get_vocab()
    (whole,) = qwen.encode("\ufffd", add_special_tokens=False)
    lead, continuation = vocab["ï"], vocab["¿"]  # the bytes EF and BF: a character begins, goes on
    assert fires_at(automaton, [whole]) and fires_at(automaton, [lead, whole])
    for tokens in ([lead], [continuation], [lead, continuation, continuation], [THINK_END], [WIDTH - 1]):
        assert not fires_at(automaton, tokens), tokens


# ----- alphaone -----


def test_alpha_moment_is_the_codes_formula():
    # threshold = int(8192 - alpha * N); phase 1 runs 8192 - threshold tokens (l.157-190, l.584).
    assert alpha_moment(1.4, 3100) == 4340 and alpha_moment(1.4, 4600) == 6440
    assert 1.4 * 2650 < 3710 and alpha_moment(1.4, 2650) == 3710  # 3709.9999999999995: the code gives 3710
    assert alpha_moment(0.0, 100) == 0 and AlphaOneConfig(moment=77, alpha=9.0).alpha_moment == 77
    assert AlphaOneConfig(moment=10**30).alpha_moment == 2**38


def test_alphaone_tokens_on_qwen3(qwen):
    rule = plan_for(qwen, InterventionSet(alphaone=AlphaOneConfig())).rule("alphaone")
    assert sorted(qwen.decode([i]) for i in rule.delimiter_ids) == sorted(set(DELIMITERS))  # one token each
    assert rule.word_ids == (14190,)  # "Wait", the code's encode("Wait")[0]
    banned = {qwen.decode([i]) for i in rule.banned_ids}
    assert {"Wait", " Wait", ".Wait", "Waiting"} <= banned and not {" wait", "wait"} & banned  # case-sensitive
    assert THINK_END in rule.token_ids and THINK_END not in rule.banned_ids


def alphaone_state(qwen, settings_list, rows=None):
    tables = plan_for(qwen, settings_list[0]).tables(WIDTH, "cpu")
    count = len(settings_list) if rows is None else rows
    state = InterventionState(tables, count)
    state.start_rows(list(range(count)), settings_list, [True] * count, [1] * count)
    return tables, state


def test_alphaone_forces_wait_with_the_annealed_probability(qwen):
    """At a delimiter at step t < T_m the word is forced with probability (T_m - t) / T_m: over
    3000 seeds the rate is that within 5 standard errors, and it does not depend on the batch."""
    count, moment = 3000, 8
    settings = [InterventionSet(alphaone=AlphaOneConfig(moment=moment, seed=s)) for s in range(count)]
    tables, state = alphaone_state(qwen, settings)
    blank = qwen.get_vocab()["ĊĊ"]
    rates = []
    for t in range(moment + 1):
        logits = torch.zeros(count, WIDTH)
        out = state.apply(logits)
        forced = (out[:, 14190] == FORCED_LOGIT).float().mean().item()
        rates.append(forced)
        state.update(torch.full((count,), blank if t < moment else 0))  # a delimiter every step
    for t, rate in enumerate(rates):
        want = (moment - t) / moment if 2 <= t < moment else 0.0
        assert abs(rate - want) <= 5 * math.sqrt(max(want * (1 - want), 1e-9) / count) + 1e-9, (t, rate, want)
    # The same seeds in another batch, rows reversed and split: the same decisions.
    again = [InterventionSet(alphaone=AlphaOneConfig(moment=moment, seed=s)) for s in reversed(range(0, count, 7))]
    _, other = alphaone_state(qwen, again)
    for t in range(4):
        out = other.apply(torch.zeros(len(again), WIDTH))
        if t == 3:
            mine = (out[:, 14190] == FORCED_LOGIT).tolist()
        other.update(torch.full((len(again),), blank))
    _, first = alphaone_state(qwen, settings)
    for t in range(4):
        out = first.apply(torch.zeros(count, WIDTH))
        if t == 3:
            theirs = (out[:, 14190] == FORCED_LOGIT).tolist()
        first.update(torch.full((count,), blank))
    assert mine == [theirs[s] for s in reversed(range(0, count, 7))]


@pytest.mark.parametrize("temperature", [0.6, 1.0, 0.0])
def test_alphaone_moves_waits_mass_to_the_end_marker(qwen, temperature):
    """After T_m, sampling at `temperature` from the written logits draws `</think>` with the
    probability the model gave to "Wait"-tokens or the end; at 0 (greedy) the end wins where one of
    them was the top token."""
    settings = InterventionSet(alphaone=AlphaOneConfig(moment=0, temperature=temperature))
    tables, state = alphaone_state(qwen, [settings] * 3)
    rule = plan_for(qwen, settings).rule("alphaone")
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, WIDTH, generator=generator)
    logits[0, 14190] = 9.0  # "Wait" on top
    logits[1, 13824] = 6.0  # " Wait" high
    logits[2, 220] = 12.0  # an unrelated token on top
    out = state.apply(logits.clone())
    banned = list(rule.banned_ids)
    assert torch.isneginf(out[:, banned]).all()
    if temperature > 0:
        before = torch.softmax(logits.double() / temperature, dim=-1)
        after = torch.softmax(out.double() / temperature, dim=-1)
        torch.testing.assert_close(after[:, THINK_END], before[:, banned + [THINK_END]].sum(dim=-1), rtol=1e-4, atol=1e-6)
        keep = torch.ones(WIDTH, dtype=torch.bool)
        keep[banned + [THINK_END]] = False
        torch.testing.assert_close(after[:, keep], before[:, keep], rtol=1e-4, atol=1e-9)
    else:
        assert out.argmax(dim=-1).tolist() == [THINK_END, THINK_END, 220]


def test_alphaone_acts_only_while_reasoning(qwen):
    settings = InterventionSet(alphaone=AlphaOneConfig(moment=0))
    tables = plan_for(qwen, settings).tables(WIDTH, "cpu")
    state = InterventionState(tables, 2)
    state.start_rows([0, 1], [settings] * 2, [True, False], [0, 0])
    state.update(torch.tensor([THINK_END, 220]))  # row 0 closes its reasoning, row 1 never opened it
    logits = torch.randn(2, WIDTH)
    assert torch.equal(state.apply(logits.clone()), logits)


# ----- affirm -----


def test_affirm_tokens_and_threshold(qwen):
    settings = InterventionSet(affirm=AffirmConfig())
    rule = plan_for(qwen, settings).rule("affirm")
    assert {qwen.decode([i]).lstrip() for i in rule.token_ids} == {"Wait", "wait"}
    assert {qwen.decode([i]) for i in rule.token_ids} >= {"Wait", " Wait", "wait", " wait"}
    assert 14190 in rule.token_ids and qwen.get_vocab()["Waiting"] not in rule.token_ids
    tables = plan_for(qwen, settings).tables(WIDTH, "cpu")
    state = InterventionState(tables, 3)
    state.start_rows([0, 1, 2], [settings, settings, InterventionSet(affirm=AffirmConfig(tau=0.5))], [False] * 3, [0] * 3)
    logits = torch.full((3, WIDTH), -math.inf)
    logits[:, 220] = 0.0
    logits[:, 14190] = math.log(4.0)  # p("Wait") = 0.8
    logits[1, 14190] = math.log(1.5)  # p = 0.6: below 0.7
    logits[2, 14190] = math.log(1.5)  # p = 0.6: above 0.5
    out = state.apply(logits.clone())
    assert out[:, 14190].tolist() == torch.tensor([math.log(4.0), -math.inf, math.log(1.5)]).tolist()
    assert out[0, 220] == 0.0  # only the word tokens are ever written
    # Reading: each spelling on its own probability. " Wait" and "Wait" at 0.45 each (0.9 together)
    # are both below 0.7 and both banned; a probability exactly at tau is kept (strictly below bans).
    logits = torch.full((2, WIDTH), -math.inf)
    logits[0, [13824, 14190, 220]] = torch.tensor([0.45, 0.45, 0.10]).log()
    logits[1, [14190, 220]] = torch.tensor([0.5, 0.5]).log()
    state = InterventionState(tables, 2)
    state.start_rows([0, 1], [settings, InterventionSet(affirm=AffirmConfig(tau=0.5))], [False] * 2, [0] * 2)
    out = state.apply(logits.clone())
    assert out[0, 13824] == out[0, 14190] == -math.inf and out[0, 220] == logits[0, 220]
    assert out[1, 14190] == logits[1, 14190]


# ----- inject and nothinking -----


def test_nothinking_closes_the_reasoning_at_once(qwen):
    settings = InterventionSet(nothinking=NoThinkingConfig())
    tables = plan_for(qwen, settings).tables(WIDTH, "cpu")
    state = InterventionState(tables, 2)
    state.start_rows([0, 1], [settings] * 2, [True, False], [1, 0])
    written: list[list[int]] = [[], []]
    for step in range(14):
        out = state.apply(torch.randn(2, WIDTH))
        tokens = [int(out[b].argmax()) for b in range(2)]
        if step == 0:
            tokens[1] = 151667  # row 1 opens its think block itself: NoThinking starts after it
        for b in range(2):
            written[b].append(tokens[b])
        state.update(torch.tensor(tokens))
    text = "Okay, I think I have finished thinking.\n</think>"
    assert qwen.decode(written[0][: written[0].index(THINK_END) + 1]) == text
    assert qwen.decode(written[1][1 : written[1].index(THINK_END) + 1]) == text


def test_inject_forces_once_after_its_trigger(qwen):
    settings = InterventionSet(inject=InjectConfig(text=" I should answer in JSON.", after="Wait"))
    tables = plan_for(qwen, settings).tables(WIDTH, "cpu")
    state = InterventionState(tables, 1)
    state.start_rows([0], [settings], [True], [0])
    text = qwen.encode(" So x = 4. Wait, is it? Wait", add_special_tokens=False)
    ids = qwen.encode(" I should answer in JSON.", add_special_tokens=False)
    written: list[int] = []
    cursor = 0  # the next token of `text` the "model" writes when nothing is forced
    for _ in range(len(text) + len(ids) + 3):
        out = state.apply(torch.zeros(1, WIDTH))
        forced = (out[0] == FORCED_LOGIT).nonzero().flatten().tolist()
        if forced:
            token = forced[0]
        else:
            token = text[cursor] if cursor < len(text) else 220
            cursor += 1
        written.append(token)
        state.update(torch.tensor([token]))
    decoded = qwen.decode(written)
    assert decoded.startswith(" So x = 4. Wait I should answer in JSON.,"), decoded  # once, right after the first "Wait"
    assert decoded.count("JSON") == 1


# ----- combinations, keys, errors -----


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nothinking+inject:inject.text=x", "nothinking and inject cannot be combined in one request: both force a text"),
        ("nothinking+budget:min=5", "nothinking and budget cannot be combined in one request: a minimum thinking length"),
        ("alphaone+nowait", "alphaone and nowait cannot be combined in one request: NoWait bans 'Wait'"),
        ("alphaone+affirm", "alphaone and affirm cannot be combined in one request"),
    ],
)
def test_refused_combinations_say_why_in_one_line(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_spec(spec)
    assert "\n" not in str(info.value)


def test_allowed_combinations_and_refusals_through_every_path():
    assert parse_spec("alphaone+nowait:keywords=hmm")[1].names == ("nowait", "alphaone")
    assert parse_spec("nothinking+budget:max=50")[1].names == ("budget", "nothinking")
    assert parse_spec("alphaone+affirm:words=Hmm")[1].names == ("affirm", "alphaone")
    assert parse_spec("inject+budget:text=I should be brief.,min=3")[1].names == ("budget", "inject")
    # A request over a server default: the combination is refused (HTTP 400 in a server).
    default = InterventionSet(nowait=NoWaitConfig())
    with pytest.raises(ValueError, match="`alphaone` and `nowait` cannot be combined"):
        InterventionSet.from_mapping({"alphaone": 1}, default=default)
    with pytest.raises(ValueError, match="`nothinking` and `inject`"):
        InterventionSet(inject=InjectConfig(text="x"), nothinking=NoThinkingConfig())
    assert InterventionSet.from_mapping({"alphaone": 1, "nowait": 0}, default=default).names == ("alphaone",)


def test_flat_keys_read_back():
    settings = InterventionSet.from_mapping(
        {"affirm_words": "Hmm", "alphaone_think_tokens": "60", "alphaone_temperature": 0.6, "inject_text": "I should be brief.", "inject_after": "\n\n"}
    )
    assert settings.names == ("affirm", "alphaone", "inject")
    assert settings.alphaone.alpha_moment == 84 and settings.inject.after == "\n\n"
    assert InterventionSet.from_mapping(settings.to_mapping()) == settings
    assert InterventionSet.from_mapping({"nothinking": 1}).nothinking.text == "Okay, I think I have finished thinking.\n"
    assert InterventionSet.from_mapping({"nothinking_text": "none"}).nothinking.text is None
    nothing = InterventionSet.from_mapping({"nothinking": 1, "nothinking_text": "none"})
    assert InterventionSet.from_mapping(nothing.to_mapping()) == nothing
    assert not InterventionSet.from_mapping({"affirm_tau": 0})  # tau 0 bans nothing: off
    with pytest.raises(ValueError, match="`inject` needs `inject_text`"):
        InterventionSet.from_mapping({"inject": 1})


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"affirm_tau": 1.5}, "affirm_tau"),
        ({"affirm_tau": -0.1}, "affirm_tau"),
        ({"affirm_tau": "x"}, "affirm_tau"),
        ({"affirm_words": []}, "affirm_words"),
        ({"affirm_words": [" "]}, "affirm_words"),
        ({"affirm_scope": "answer"}, "affirm_scope"),
        ({"affirm_typo": 1}, "affirm_typo"),
        ({"alphaone_moment": -2}, "alphaone_moment"),
        ({"alphaone_moment": 2.5}, "alphaone_moment"),
        ({"alphaone_alpha": -1}, "alphaone_alpha"),
        ({"alphaone_alpha": "inf"}, "alphaone_alpha"),
        ({"alphaone_think_tokens": 0}, "alphaone_think_tokens"),
        ({"alphaone_word": ""}, "alphaone_word"),
        ({"alphaone_word": 5}, "alphaone_word"),
        ({"alphaone_seed": -1}, "alphaone_seed"),
        ({"alphaone_seed": 2**70}, "alphaone_seed"),
        ({"alphaone_temperature": -0.5}, "alphaone_temperature"),
        ({"alphaone": "maybe"}, "alphaone"),
        ({"inject_text": 5}, "inject_text"),
        ({"inject_after": ["x"]}, "inject_after"),
        ({"nothinking_text": 3}, "nothinking_text"),
        ({"nothinking": 2}, "nothinking"),
    ],
)
def test_each_bad_key_is_named_with_its_range(extra, key):
    with pytest.raises(ValueError, match=f"`{key}`") as info:
        InterventionSet.from_mapping(extra)
    assert "\n" not in str(info.value)
    assert ALLOWED[key.rsplit("_typo", 1)[0]] in str(info.value), str(info.value)


#: What each key's error says is allowed (one line: the key, the range, the value given).
ALLOWED = {
    "affirm": "known: affirm, affirm_scope, affirm_tau, affirm_words",
    "affirm_tau": "has to be a probability between 0 and 1",
    "affirm_words": "has to ",  # "name at least one word" / "contain only non-empty strings"
    "affirm_scope": "has to be one of 'auto', 'think', 'all'",
    "alphaone_moment": "has to be a non-negative integer",
    "alphaone_alpha": "has to be a number >= 0",
    "alphaone_think_tokens": "has to be a positive integer",
    "alphaone_word": "has to be a non-empty string",
    "alphaone_seed": "has to be",
    "alphaone_temperature": "has to be a number >= 0",
    "alphaone": "has to be true or false (1 or 0)",
    "inject_text": "has to be a string",
    "inject_after": "has to be a string",
    "nothinking_text": "has to be a string",
    "nothinking": "has to be true or false (1 or 0)",
}


def test_vocabulary_errors_name_the_key(qwen):
    llama = load_hf_tokenizer("llama-3.1")  # no think markers
    for settings, key in [
        (InterventionSet(alphaone=AlphaOneConfig()), "`alphaone` needs single-token think markers"),
        (InterventionSet(nothinking=NoThinkingConfig()), "`nothinking` needs single-token think markers"),
        (InterventionSet(affirm=AffirmConfig(scope="think")), "`affirm_scope`"),
    ]:
        with pytest.raises(ValueError, match=key):
            plan_for(llama, settings)
    for settings, key in [
        (InterventionSet(inject=InjectConfig(text="ok <|im_end|>")), "`inject_text` has to encode to ordinary tokens"),
        (InterventionSet(nothinking=NoThinkingConfig(text="done </think>")), "`nothinking_text` has to encode to ordinary tokens"),
        (InterventionSet(alphaone=AlphaOneConfig(word="<think>")), "`alphaone_word` has to encode to ordinary tokens"),
        (InterventionSet(affirm=AffirmConfig(words=("Zzqqxxjj",))), "`affirm_words`"),
    ]:
        with pytest.raises(ValueError, match=key):
            plan_for(qwen, settings)
    # Without think markers inject acts from the first generated token; affirm everywhere.
    assert plan_for(llama, InterventionSet(inject=InjectConfig(text="I should be brief."), affirm=AffirmConfig())).rule("inject").scope == "all"


# ----- lifecycle: replay, the meta device, a banned forced token -----


def test_replay_reproduces_the_state(qwen):
    """Every decision of the four rules is a function of the token history (and AlphaOne's seed):
    a row rebuilt from its tokens after preemption is the row that generated them, bit for bit."""
    cases = [
        InterventionSet(alphaone=AlphaOneConfig(moment=30, seed=5, word=" Hmm, wait")),
        InterventionSet(inject=InjectConfig(text=" I should check.", after=".\n\n"), affirm=AffirmConfig()),
        InterventionSet(nothinking=NoThinkingConfig(), budget=BudgetConfig(max=40)),
        InterventionSet(inject=InjectConfig(text=" I should check.")),
    ]
    vocab = qwen.get_vocab()
    rng = random.Random(3)
    for settings in cases:
        tables = plan_for(qwen, settings).tables(WIDTH, "cpu")
        pool = [int(i) for i in tables.token_ids] + [vocab["ĊĊ"], vocab[".ĊĊ"], vocab["."], 151667, 220, 1000]
        rows = 4
        state = InterventionState(tables, rows)
        facts = [(True, 2), (False, 0), (True, 0), (False, 0)]
        state.start_rows(list(range(rows)), [settings] * rows, [f[0] for f in facts], [f[1] for f in facts])
        history: list[list[int]] = [[] for _ in range(rows)]
        for step in range(36):
            out = state.apply(torch.randn(rows, WIDTH))
            tokens = []
            for b in range(rows):
                forced = (out[b] == FORCED_LOGIT).nonzero().flatten().tolist()
                tokens.append(forced[0] if forced and rng.random() < 0.9 else rng.choice(pool))
                history[b].append(tokens[-1])
            state.update(torch.tensor(tokens))
            if step % 9 == 8:
                replayed = InterventionState(tables, rows)
                for b, (opened, thinking) in enumerate(facts):
                    replayed.replay_row(b, settings, opened, thinking, history[b])
                assert torch.equal(replayed.storage, state.storage), (settings.names, step)


def test_per_step_path_runs_on_the_meta_device(qwen):
    """No .item(), .tolist(), tensor truth test or data-dependent shape (any of them raises on meta)."""
    for settings in [
        InterventionSet(alphaone=AlphaOneConfig(moment=3, temperature=0.6), affirm=AffirmConfig(words=("Hmm",))),
        InterventionSet(inject=InjectConfig(text=" I should check.", after=".\n\n"), budget=BudgetConfig(min=3, max=9, word="Wait")),
        InterventionSet(nothinking=NoThinkingConfig()),
    ]:
        tables = plan_for(qwen, settings).tables(WIDTH, "meta")
        state = InterventionState(tables, 4)
        state.start_rows(
            torch.arange(4, device="meta"), [settings] * 4, torch.zeros(4, dtype=torch.bool, device="meta"), torch.zeros(4, dtype=torch.long, device="meta")
        )
        logits = torch.empty(4, WIDTH, device="meta")
        for _ in range(3):
            state.update(torch.empty(4, dtype=torch.long, device="meta"))
            state.apply(logits)
            state.apply(logits, rows=torch.arange(2, device="meta"), logit_rows=torch.arange(2, device="meta"))


def test_a_forced_token_that_arrives_banned_is_not_reinflated(qwen):
    """Another stage (the engine's bad words, an earlier processor) banned the token a rule forces:
    the forcing goes through the plan's one force mechanism, so the core's rule applies to all four."""
    for settings, token in [
        (InterventionSet(nothinking=NoThinkingConfig()), 32313),  # "Okay"
        (InterventionSet(inject=InjectConfig(text="Okay")), 32313),
    ]:
        tables = plan_for(qwen, settings).tables(WIDTH, "cpu")
        state = InterventionState(tables, 1)
        state.start_rows([0], [settings], [True], [0])
        logits = torch.randn(1, WIDTH)
        logits[0, token] = -math.inf
        out = state.apply(logits.clone())
        assert torch.equal(out, logits), settings.names


def test_reference_agrees_on_a_hand_made_history(qwen):
    """The slow reference (tests/reference_interventions.py) reads the same anchors as the rules on a
    history written by hand: the check of tests/test_interventions.py is not vacuous."""
    reference = Reference(qwen)
    from reference_interventions import Row

    text = qwen.encode(" a.\n\nb", add_special_tokens=False)
    row = Row(True, 0, text + [220, 220])
    config = InjectConfig(text=" ok", after=".\n\n")
    anchor = reference.reasoning_text_anchor(row, ".\n\n")
    assert anchor is not None and qwen.decode(text[:anchor]).endswith(".\n\n")
    assert reference.inject(config, Row(True, 0, text[:anchor]), anchor) == qwen.encode(" ok", add_special_tokens=False)[0]
