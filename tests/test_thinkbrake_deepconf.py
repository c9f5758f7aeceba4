"""ThinkBrake and DeepConf online on the core: their readings of the sources, step by step against
the slow reference (tests/reference_interventions.py) on every shared tokenizer, and the facilities
they brought (the text automaton, column-wise apply-time writes, a wide float block).

The broad random streams of tests/test_interventions.py cross both with the other interventions;
the streams here are built so that each rule acts often: sentences end every few tokens inside an
open think block (ThinkBrake), windows fill and the confidence crosses the threshold (DeepConf).
"""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
import torch
from conftest import TOKENIZER_NAMES, load_hf_tokenizer
from reference_interventions import Reference
from test_interventions import run_against_reference

from tip_decode.core.interventions import (
    FORCED_LOGIT,
    BudgetConfig,
    DeepConfConfig,
    InterventionSet,
    InterventionState,
    NoWaitConfig,
    ThinkBrakeConfig,
    plan_for,
    suffix,
)
from tip_decode.core.interventions.arrays import NUMPY, TORCH
from tip_decode.core.interventions.spec import parse_spec, settings_text
from tip_decode.core.interventions.suffix import build_suffix_automaton, character_automaton
from tip_decode.core.interventions.thinkbrake import escape, unescape

MARKED = tuple(name for name in TOKENIZER_NAMES if Reference(load_hf_tokenizer(name)).markers.available)


# ----- the text automaton (suffix.py; inject's trigger uses it too) -----


def test_character_automaton_is_a_suffix_test():
    """Aho-Corasick over characters: `matched` after any text iff the text ends with a pattern."""
    rng = random.Random(0)
    for patterns in ([".\n\n"], ["aa", "ab", "b"], ["abab", "bab", "x"], ["\n\n", ".\n\n", "]\n\n", ").\n\n"]):
        chars = character_automaton(patterns)
        alphabet = sorted({c for p in patterns for c in p}) + ["z"]
        for _ in range(300):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
            assert chars.matched[chars.read(0, text)] == any(text.endswith(p) for p in patterns), (patterns, text)
    with pytest.raises(ValueError):
        character_automaton(["ok", ""])


def test_text_automaton_matches_and_fires_as_searching_the_text():
    """Random token texts, some cut inside a character at either end, an excluded id and ids past the
    texts: after every token, `matched` of the state iff the text ends with a pattern, `fires` iff a
    pattern ended inside the token's text; with one pattern, the state is the longest start of it
    that the text ends with."""
    rng = random.Random(0)
    letters = "ab.\nxc"
    for _ in range(300):
        count = rng.choice((1, 1, 2, 3))
        patterns = tuple(dict.fromkeys("".join(rng.choice(letters[:4]) for _ in range(rng.randint(1, 5))) for _ in range(count)))
        texts = ["".join(rng.choice(letters) for _ in range(rng.randint(0, 4))) for _ in range(40)]
        starts, ends = [rng.random() < 0.1 for _ in texts], [rng.random() < 0.1 for _ in texts]
        automaton = build_suffix_automaton(patterns, texts, starts, ends, {3}, 45)
        state, text = 0, ""
        for token in (rng.randrange(-1, 45) for _ in range(30)):
            if 0 <= token < 40 and token != 3:
                piece = ("\ufffd" if starts[token] else "") + texts[token] + ("\ufffd" if ends[token] else "")
            else:
                piece = "\ufffd"  # no character of any pattern
            before = len(text)
            text += piece
            state, fired = automaton.step(state, token)
            assert fired == any(text[end - len(p) : end] == p for p in patterns for end in range(max(before + 1, len(p)), len(text) + 1))
            assert bool(automaton.matched[state]) == any(text.endswith(p) for p in patterns)
            if len(patterns) == 1:
                (pattern,) = patterns
                assert state == max(q for q in range(len(pattern) + 1) if text.endswith(pattern[:q]))


def test_a_cut_character_is_no_character_of_any_pattern():
    """A pattern may hold U+FFFD: a token whose own text is that character matches it; a character
    cut between tokens, a special token, an id past the texts and a negative id never do."""
    texts, starts, ends = ["\ufffd", "", "a", "<s>", "a"], [False, True, False, False, False], [False, False, True, False, False]
    automaton = build_suffix_automaton(("a\ufffd", "\ufffd"), texts, starts, ends, {3}, 6)
    for tokens in ([0], [4, 0], [1, 0], [3, 0]):
        state = automaton.run(tokens[:-1])
        state, fired = automaton.step(state, tokens[-1])
        assert fired and automaton.matched[state], tokens
    for tokens in ([1], [2], [3], [5], [-1], [4, 1], [4, 3], [4, 5], [2, 1]):
        state = automaton.run(tokens[:-1])
        state, fired = automaton.step(state, tokens[-1])
        assert not fired and not automaton.matched[state], tokens


def test_token_classes_survive_a_hash_collision(monkeypatch):
    """Classes are told apart by a hash of their rows, checked exactly: where every row hashes alike,
    the tables say for every token what they say without the collision."""
    rng = random.Random(2)
    texts = ["".join(rng.choice("ab.\nxc") for _ in range(rng.randint(0, 4))) for _ in range(200)]
    cut = [rng.random() < 0.1 for _ in texts]
    build = lambda: build_suffix_automaton((".\n", "ab", "b.a"), texts, cut, cut[::-1], {3}, 210)  # noqa: E731
    expected = build()
    monkeypatch.setattr(suffix, "_row_weights", lambda count: np.zeros(count, dtype=np.uint64))
    collided = build()
    assert expected.classes == collided.classes > 4
    for table in ("next_state", "fires"):
        assert np.array_equal(getattr(expected, table)[:, expected.class_of], getattr(collided, table)[:, collided.class_of])


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_suffix_automaton_over_tokens_equals_the_text_test(name):
    """Random token streams rich in boundary pieces: the automaton's verdict after every token equals
    the reference's reading of the text (oracle texts; special tokens and cut characters break it)."""
    tokenizer = load_hf_tokenizer(name)
    reference = Reference(tokenizer)
    raw = reference.oracle.raw
    patterns = (".\n\n", "].\n\n", "\n\nWait", "。\n\n")
    table = reference.oracle
    texts = [t for t, _, _ in table.texts]
    automaton = build_suffix_automaton(patterns, texts, [s for _, s, _ in table.texts], [e for _, _, e in table.texts], reference.excluded, len(tokenizer) + 3)
    pool: list[int] = []
    for text in ("a.\n\nb", "x].\n\n", "So.", "\n\n", "\n", "\n\nWait", " Wait", "好。\n\n", "。", "é", "🙂"):
        pool += raw.encode(text, add_special_tokens=False).ids
    pool += sorted(reference.excluded)[:5] + [len(tokenizer) + 1, -1]
    rng = random.Random(1)
    hits = 0
    for _ in range(40):
        stream = [rng.choice(pool) for _ in range(30)]
        state = 0
        for t in range(len(stream)):
            state = automaton.run(stream[t : t + 1], state)
            expected = any(reference.reasoning_text(stream[: t + 1]).endswith(p) for p in patterns)
            assert bool(automaton.matched[state]) == expected, (name, stream[: t + 1])
            hits += expected
    assert hits > 10


def test_suffix_automaton_tables_are_small_on_a_large_vocabulary():
    qwen = load_hf_tokenizer("qwen3")
    rule = plan_for(qwen, InterventionSet(thinkbrake=ThinkBrakeConfig(tau=1.0))).rule("thinkbrake")
    automaton = rule.automaton
    assert automaton.states == 4 and automaton.classes < 16  # ".\n\n": a handful of token classes
    vocab = qwen.get_vocab()
    for piece in (".ĊĊ", "].ĊĊ", ").ĊĊ"):
        assert automaton.matched[automaton.run([vocab[piece]])], piece
    assert automaton.matched[automaton.run([vocab["."], vocab["ĊĊ"]])]
    assert not automaton.matched[automaton.run([vocab[".ĊĊ"], vocab["The"]])]


# ----- ThinkBrake against the reference -----


def boundary_heavy(settings: InterventionSet, name: str, seed: int, host: bool = True) -> dict[str, int]:
    """Streams whose prompts open the think block, where sentences end every few tokens and a forced
    `</think>` is taken only some of the time (so that a row keeps reasoning after a brake)."""
    return run_against_reference(name, settings, seed=seed, rows=6, steps=40, host=host, open_prompt=1.0, take_forced=0.25)


@pytest.mark.parametrize("name", MARKED)
def test_thinkbrake_equals_the_reference(name):
    every = [
        InterventionSet(thinkbrake=ThinkBrakeConfig(tau=1.0)),
        InterventionSet(thinkbrake=ThinkBrakeConfig(tau=0.25, boundary=(".\n\n", "\n\n", "!"), temperature=0.6)),
        InterventionSet(thinkbrake=ThinkBrakeConfig(tau=2.5, boundary=("].\n\n", ".")), budget=BudgetConfig(min=8, max=30), nowait=NoWaitConfig()),
    ]
    forced = 0
    for index, settings in enumerate(every):
        counts = boundary_heavy(settings, name, seed=index)
        forced += counts["forced"]
    assert forced >= 10, forced  # a test in which nothing brakes proves nothing


def test_thinkbrake_torch_engine_equals_the_reference():
    forced = 0
    for seed, settings in enumerate(
        [InterventionSet(thinkbrake=ThinkBrakeConfig(tau=1.0, temperature=0.6)), InterventionSet(thinkbrake=ThinkBrakeConfig(tau=2.0, boundary=("\n\n", "!")))]
    ):
        forced += boundary_heavy(settings, "qwen3", seed=seed + 7, host=False)["forced"]
    assert forced >= 8, forced


def _qwen_state(settings: InterventionSet, rows: int, prompt_open: bool = True):
    qwen = load_hf_tokenizer("qwen3")
    tables = plan_for(qwen, settings).tables(151936, "cpu")
    state = InterventionState(tables, rows)
    state.start_rows(list(range(rows)), [settings] * rows, [prompt_open] * rows, [0] * rows)
    return qwen, tables, state


def test_thinkbrake_margin_temperature_and_bans():
    """m = (max z - z_end) / T <= tau forces `</think>` right after a boundary, never elsewhere, never
    where `</think>` arrived at -inf, and never where a budget's minimum bans it."""
    settings = InterventionSet(thinkbrake=ThinkBrakeConfig(tau=1.0, temperature=0.5))
    qwen, tables, state = _qwen_state(settings, 5)
    vocab = qwen.get_vocab()
    end = vocab["</think>"]
    state.update(torch.tensor([vocab["Hello"]] * 5))
    logits = torch.zeros(5, 151936)
    logits[:, 0] = 10.0
    logits[:, end] = 9.6  # m = 0.4 / 0.5 = 0.8 <= 1
    assert not (state.apply(logits.clone()) == FORCED_LOGIT).any()  # no boundary yet
    state.update(torch.tensor([vocab[".ĊĊ"]] * 5))
    logits[1, end] = 9.4  # m = 1.2 > 1
    logits[2, end] = -math.inf
    logits[3, end] = 9.5  # m = 1.0: at tau, brakes (m <= tau)
    out = state.apply(logits.clone())
    assert (out[:, end] == FORCED_LOGIT).tolist() == [True, False, False, True, True]
    assert out[2, end] == -math.inf and torch.equal(out[2], logits[2])  # a banned end marker stays banned
    # A budget's minimum bans the end marker: no brake below it.
    budget = InterventionSet(thinkbrake=ThinkBrakeConfig(tau=1.0), budget=BudgetConfig(min=50))
    _, tables, state = _qwen_state(budget, 1)
    state.update(torch.tensor([vocab[".ĊĊ"]]))
    out = state.apply(logits[:1].clone())
    assert out[0, end] == -math.inf


def test_thinkbrake_acts_only_while_reasoning_is_open():
    settings = InterventionSet(thinkbrake=ThinkBrakeConfig(tau=5.0))
    qwen, tables, state = _qwen_state(settings, 3, prompt_open=False)
    vocab = qwen.get_vocab()
    end = vocab["</think>"]
    logits = torch.zeros(3, 151936)
    # Row 0 never opens a think block; row 1 opens one; row 2 opens and closes it.
    for tokens in ([vocab["Hi"], vocab["<think>"], vocab["<think>"]], [vocab[".ĊĊ"], vocab["Ok"], vocab[".ĊĊ"]]):
        state.update(torch.tensor(tokens))
    state.update(torch.tensor([vocab[".ĊĊ"], vocab[".ĊĊ"], vocab["</think>"]]))
    state.update(torch.tensor([vocab[".ĊĊ"], vocab[".ĊĊ"], vocab[".ĊĊ"]]))
    out = state.apply(logits.clone())
    assert (out[:, end] == FORCED_LOGIT).tolist() == [False, True, False]


def test_thinkbrake_replay_and_errors():
    qwen = load_hf_tokenizer("qwen3")
    settings = InterventionSet(thinkbrake=ThinkBrakeConfig(tau=1.0, boundary=("].\n\n", "\n\nWait")))
    tables = plan_for(qwen, settings).tables(151936, "cpu")
    stream = qwen.encode("x]", add_special_tokens=False) + qwen.encode(".\n\n", add_special_tokens=False) + qwen.encode("\n\nWait", add_special_tokens=False)
    state = InterventionState(tables, 1)
    state.start_rows([0], [settings], [True], [0])
    replayed = InterventionState(tables, 1)
    for t, token in enumerate(stream):
        state.update(torch.tensor([token]))
        replayed.replay_row(0, settings, True, 0, stream[: t + 1])
        assert torch.equal(state.storage, replayed.storage)
    llama = load_hf_tokenizer("llama-3.1")  # no think markers
    with pytest.raises(ValueError, match="`thinkbrake_tau` needs single-token think markers"):
        plan_for(llama, settings)
    from transformers import AutoTokenizer

    from tip_decode.demo import MODEL_DIR

    demo = AutoTokenizer.from_pretrained(str(MODEL_DIR))  # no "." in its vocabulary: never a boundary
    with pytest.raises(ValueError, match=re.escape('`thinkbrake_boundary`: no sequence of this tokenizer\'s tokens writes ".\\n\\n"')):
        plan_for(demo, InterventionSet(thinkbrake=ThinkBrakeConfig(tau=1.0)))


# ----- DeepConf -----


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_deepconf_equals_the_reference(name):
    forced = 0
    for index, settings in enumerate(
        [
            InterventionSet(deepconf=DeepConfConfig(threshold=5.5, window=5)),
            InterventionSet(deepconf=DeepConfConfig(threshold=4.0, window=2, topk=3)),
        ]
    ):
        counts = run_against_reference(name, settings, seed=20 + index, rows=4, steps=24, take_forced=0.5)
        forced += counts["forced"]
    assert 10 <= forced <= 180, forced  # some windows below the threshold, some above


def _confidence_logits(confidences: list[float], width: int, topk: int = 20) -> torch.Tensor:
    """Rows of logits whose confidence (k = `topk`) is each given value (above 4.11 for k = 20 and 62
    columns): one token at a value `a` found by bisection, the others at 0, so that
    C = log(e^a + width - 1) - a / k grows with `a`."""
    rows = []
    for target in confidences:
        low, high = 1.0, 80.0
        for _ in range(100):
            mid = (low + high) / 2
            row = torch.zeros(width, dtype=torch.float64)
            row[0] = mid
            c = float(-torch.log_softmax(row, -1).topk(topk).values.sum() / topk)
            low, high = (mid, high) if c < target else (low, mid)
        rows.append(row.float())
    return torch.stack(rows)


@pytest.fixture(scope="module")
def demo_tokenizer():
    from transformers import AutoTokenizer

    from tip_decode.demo import MODEL_DIR

    return AutoTokenizer.from_pretrained(str(MODEL_DIR))


def test_deepconf_window_of_the_paper_size(demo_tokenizer):
    """n = 2048: no stop before the window is full, then the mean of the last 2048 confidences (the
    current one included) decides, each confidence leaving the window 2048 steps after it entered."""
    settings = InterventionSet(deepconf=DeepConfConfig(threshold=6.0))
    tables = plan_for(demo_tokenizer, settings).tables(62, "cpu")
    assert tables.layout.floats == 2 + 2048
    state = InterventionState(tables, 2)
    state.start_rows([0, 1], [settings] * 2, [False] * 2, [0] * 2)
    high, low = _confidence_logits([7.0, 5.0], 62)
    first: list[int | None] = [None, None]
    # Row 0: 2047 confident steps (C = 7), then unconfident ones (C = 5): at step t the window holds
    # L = t - 2046 of them, and (7 (2048 - L) + 5 L) / 2048 < 6 first at L = 1025.
    # Row 1: unconfident throughout: it stops as soon as the window is full (step 2047).
    for t in range(2048 + 1100):
        logits = torch.stack([high if t < 2047 else low, low])
        forced = (state.apply(logits) == FORCED_LOGIT).any(dim=1).tolist()
        for row in (0, 1):
            if forced[row] and first[row] is None:
                first[row] = t
        state.update(torch.tensor([7, 7]))
    assert first == [2046 + 1025, 2047]
    assert state.column("deepconf.count").tolist() == [3148, 3148]


def test_deepconf_records_a_step_once_and_restarts_on_replay(demo_tokenizer):
    """A step whose token is discarded and repeated (chunked prefill) joins the window once; a row
    rebuilt from its tokens (preemption) starts with an empty window; stopped rows are untouched."""
    eos = demo_tokenizer.eos_token_id
    settings = InterventionSet(deepconf=DeepConfConfig(threshold=6.0, window=3))
    tables = plan_for(demo_tokenizer, settings).tables(62, "cpu")
    state = InterventionState(tables, 2)
    state.start_rows([0, 1], [settings] * 2, [False] * 2, [0] * 2)
    low = _confidence_logits([5.0, 5.0], 62)
    for _ in range(2):
        state.apply(low.clone())
        state.apply(low.clone())  # the same step again: recorded once
        state.update(torch.tensor([7, 7]))
    assert state.column("deepconf.count").tolist() == [2, 2]
    state.stop_rows([1])
    out = state.apply(low.clone())
    assert out[0, eos] == FORCED_LOGIT and torch.equal(out[1], low[1])  # the third step fills row 0's window
    state.replay_row(0, settings, False, 0, [7, 7, 7])
    assert state.column("deepconf.count")[0] == 0
    assert not (state.apply(low.clone())[0] == FORCED_LOGIT).any()


def test_deepconf_never_forces_a_banned_end_of_sequence(demo_tokenizer):
    eos = demo_tokenizer.eos_token_id
    low = _confidence_logits([5.0, 5.0], 62)
    low[1, eos] = -math.inf  # arrives banned (e.g. vLLM's min_tokens)
    settings = InterventionSet(deepconf=DeepConfConfig(threshold=6.0, window=1))
    tables = plan_for(demo_tokenizer, settings).tables(62, "cpu")
    state = InterventionState(tables, 2)
    state.start_rows([0, 1], [settings] * 2, [True] * 2, [0] * 2)
    out = state.apply(low.clone())
    assert out[0, eos] == FORCED_LOGIT and out[1, eos] == -math.inf and torch.equal(out[1], low[1])
    # A thinking budget's minimum bans the end of sequence (and the end marker) below it.
    both = InterventionSet(deepconf=DeepConfConfig(threshold=6.0, window=1), budget=BudgetConfig(min=10))
    tables = plan_for(demo_tokenizer, both).tables(62, "cpu")
    state = InterventionState(tables, 1)
    state.start_rows([0], [both], [True], [0])
    out = state.apply(low[:1].clone())
    assert out[0, eos] == -math.inf and not (out == FORCED_LOGIT).any()


def test_deepconf_confidence_is_the_authors():
    """C from the logits, as `ConfPerReqLogitsProcessor.compute_conf` computes it (softmax, top-k
    probabilities, -mean of their logs), for float32 and bfloat16 logits; +inf where fewer than k
    logits are finite."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5000, generator=generator) * 4
    logits[2, 10:] = -math.inf  # 10 finite logits < k
    for dtype in (torch.float32, torch.bfloat16):
        x = logits.to(dtype)
        ours = TORCH.logsumexp(x) - TORCH.top_k(x, 20).sum(1) / 20
        probs = torch.softmax(x.double(), dim=-1)
        theirs = -torch.log(probs.topk(20).values).sum(-1) / 20
        torch.testing.assert_close(ours[:2].double(), theirs[:2], atol=2e-5, rtol=1e-6)
        assert ours[2] == math.inf and theirs[2] == math.inf


def test_new_array_ops_agree_between_torch_and_numpy():
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(5, 300, generator=generator) * 3
    x[1, ::2] = -math.inf
    x[2, :] = -math.inf
    h = x.numpy()
    assert TORCH.row_max(x).tolist() == NUMPY.row_max(h).tolist()
    torch.testing.assert_close(torch.from_numpy(NUMPY.logsumexp(h)), TORCH.logsumexp(x), atol=1e-5, rtol=1e-6)
    assert TORCH.logsumexp(x)[2] == -math.inf
    assert sorted(TORCH.top_k(x, 7)[0].tolist()) == sorted(NUMPY.top_k(h, 7)[0].tolist())
    columns = torch.tensor([3, 0, 299, 5, 5])
    assert TORCH.take_columns(x, columns).tolist() == NUMPY.take_columns(h, columns.numpy()).tolist()
    t, n = x.clone(), h.copy()
    TORCH.put_columns(t, columns, torch.arange(5.0))
    NUMPY.put_columns(n, columns.numpy(), np.arange(5.0))
    assert torch.equal(t, torch.from_numpy(n)) and t[4, 5] == 4.0


# ----- keys, specs, combinations, sync-free -----


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"thinkbrake": 1}, "`thinkbrake` needs `thinkbrake_tau`"),
        ({"thinkbrake_boundary": "!"}, "`thinkbrake` needs `thinkbrake_tau`"),
        ({"thinkbrake_tau": -0.5}, "`thinkbrake_tau` has to be a number >= 0, but is -0.5"),
        ({"thinkbrake_tau": "inf"}, "`thinkbrake_tau` has to be a number >= 0"),
        ({"thinkbrake_tau": 1, "thinkbrake_temperature": 0}, "`thinkbrake_temperature` has to be a positive number, but is 0"),
        ({"thinkbrake_tau": 1, "thinkbrake_boundary": ""}, "`thinkbrake_boundary` has to contain no empty text"),
        ({"thinkbrake_tau": 1, "thinkbrake_boundary": [".", 3]}, "`thinkbrake_boundary` has to contain only texts"),
        ({"thinkbrake_tau": 1, "thinkbrake_boundary": "a\\q"}, "`thinkbrake_boundary` may use only the escapes"),
        ({"thinkbrake_tau": 1, "thinkbrake_typo": 1}, "unknown thinkbrake argument `thinkbrake_typo`"),
        ({"deepconf": 1}, "`deepconf` needs `deepconf_threshold`"),
        ({"deepconf_window": 64}, "`deepconf` needs `deepconf_threshold`"),
        ({"deepconf_threshold": 0}, "`deepconf_threshold` has to be a positive number, but is 0"),
        ({"deepconf_threshold": True}, "`deepconf_threshold` has to be a positive number"),
        ({"deepconf_threshold": 3, "deepconf_window": 0}, "`deepconf_window` has to be an integer from 1 to 16384, but is 0"),
        ({"deepconf_threshold": 3, "deepconf_window": 20000}, "`deepconf_window` has to be an integer from 1 to 16384, but is 20000"),
        ({"deepconf_threshold": 3, "deepconf_window": 2.5}, "`deepconf_window` has to be an integer from 1 to 16384, but is 2.5"),
        ({"deepconf_threshold": 3, "deepconf_topk": 0}, "`deepconf_topk` has to be an integer from 1 to 1024, but is 0"),
    ],
)
def test_each_bad_key_is_one_line_with_its_range(mapping, message):
    with pytest.raises(ValueError) as info:
        InterventionSet.from_mapping(mapping)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_flat_keys_specs_and_summaries():
    settings = InterventionSet.from_mapping({"thinkbrake_tau": "1.0", "thinkbrake_boundary": ".\\n\\n", "deepconf_threshold": 12.5, "deepconf_window": 512})
    assert settings.thinkbrake == ThinkBrakeConfig(tau=1.0) and settings.deepconf == DeepConfConfig(threshold=12.5, window=512)
    assert InterventionSet.from_mapping(settings.to_mapping()) == settings
    assert settings.to_mapping()["thinkbrake_boundary"] == [".\\n\\n"]
    # Real newlines and their escapes are the same boundary; a real backslash is written \\.
    assert ThinkBrakeConfig(tau=1, boundary=".\n\n") == ThinkBrakeConfig(tau=1, boundary=".\\n\\n")
    assert unescape(escape("a\\n\n\t\\"), "k") == "a\\n\n\t\\"
    name, parsed = parse_spec("thinkbrake:tau=1.0")
    assert name == "thinkbrake" and parsed.thinkbrake == ThinkBrakeConfig(tau=1.0)
    _, parsed = parse_spec("thinkbrake:tau=0.5,boundary=.\\n\\n+!,temperature=0.6")
    assert parsed.thinkbrake.boundary == (".\n\n", "!") and parsed.thinkbrake.temperature == 0.6
    _, parsed = parse_spec("deepconf:threshold=12.5")
    assert parsed.deepconf == DeepConfConfig(threshold=12.5)
    _, parsed = parse_spec("deepconf_threshold=3,thinkbrake_tau=1")
    assert parsed.names == ("deepconf", "thinkbrake")
    assert settings_text(parsed.to_mapping()) == "deepconf: threshold=3, window=2048, topk=20; thinkbrake: tau=1, boundary=.\\n\\n, temperature=1"
    for spec, needs in (("thinkbrake", "thinkbrake needs tau"), ("deepconf:window=8", "deepconf needs threshold")):
        with pytest.raises(ValueError, match=needs):
            parse_spec(spec)


def test_the_per_step_path_runs_on_the_meta_device():
    """No .item(), .tolist(), tensor truth test or data-dependent shape in either rule's step."""
    qwen = load_hf_tokenizer("qwen3")
    settings = InterventionSet(
        thinkbrake=ThinkBrakeConfig(tau=1.0, boundary=(".\n\n", "!")), deepconf=DeepConfConfig(threshold=3.0, window=16), budget=BudgetConfig(min=3)
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
        state.update(torch.empty(2, dtype=torch.long, device="meta"), torch.arange(2, device="meta"))
