"""The batched tensor state and the host recognizer against the slow reference (tests/reference.py),
whose rules come from the independent vocabulary oracle (tests/vocab_oracle.py), on every shared
tokenizer and on the tokenizers trained in the tests."""

import math
import random

import pytest
import torch
from conftest import TOKENIZER_NAMES, load_hf_tokenizer, load_raw_tokenizer
from reference import penalised, switches
from tip_only_state import PenaltyState, PenaltyTables
from trained_tokenizers import TRAINED_NAMES
from vocab_oracle import oracle_for

from tip_decode import SwitchVocabulary, TIPConfig, find_switches

TRIGGERS = ["alternatively", "wait", "hmm", "another approach"]
#: Text whose tokens exercise word starts and ends: letters that look like byte-level markers,
#: punctuation, newlines, digits, multi-byte characters, and trigger words without a space.
WORDS = " the value. So, 12 x(y peč oleč aĠ naïve 日本 😀\n\nok,\tHmm.altern xaltern (altern"


def token_pool(rules, tok) -> list[int]:
    """Tokens that exercise every rule: hits, prefixes, completions, markers, punctuation, words."""
    pool = list(rules.token_ids) + [i for p in rules.patterns for i in p.prefix] + [p.completion for p in rules.patterns]
    if rules.think_start is not None:
        pool += [rules.think_start, rules.think_end]
    pool += tok.encode(WORDS, add_special_tokens=False).ids
    return pool


def random_sequence(rules, pool: list[int], rng: random.Random, steps: int) -> list[int]:
    """Pool tokens, with whole multi-token spellings (and prefixes left incomplete) mixed in."""
    out: list[int] = []
    while len(out) < steps:
        roll = rng.random()
        if roll < 0.15 and rules.patterns:
            pattern = rng.choice(rules.patterns)
            out += [*pattern.prefix, pattern.completion] if roll < 0.1 else list(pattern.prefix)
        else:
            out.append(rng.choice(pool))
    return out[:steps]


def run_against_reference(name: str, scope: str, seed: int, rows: int = 6, steps: int = 50) -> int:
    tok = load_raw_tokenizer(name)
    rules = oracle_for(tok).rules(TRIGGERS)
    vocab = SwitchVocabulary.from_tokenizer(tok, TRIGGERS)
    pool = token_pool(rules, tok)
    rng = random.Random(seed)
    width = tok.get_vocab_size(with_added_tokens=True) + 7
    tables = PenaltyTables(vocab, scope, width, "cpu")
    state = PenaltyState(tables, rows)
    betas = [rng.choice([0, 1, 2, 5, 20, 600]) for _ in range(rows)]
    opens = [rng.random() < 0.5 for _ in range(rows)]
    seqs = [random_sequence(rules, pool, rng, steps) for _ in range(rows)]
    state.start_rows(torch.arange(rows), torch.full((rows,), 1.5), torch.tensor(betas), torch.tensor(opens))
    fired = 0
    for t in range(steps):
        amount = state.penalty()
        for b in range(rows):
            expected = penalised(rules, tables.scope, opens[b], seqs[b], t, betas[b])
            got = {int(tables.columns[c]) for c in torch.nonzero(amount[b] > 0).flatten()}
            assert got == expected, f"{name} {scope} seed {seed} step {t} row {b}"
            fired += bool(expected - rules.token_ids)  # a multi-token completion was armed
        state.update(torch.tensor([s[t] for s in seqs]))
    for b in range(rows):
        got = [e.position for e in find_switches(vocab, seqs[b], tables.scope, opens[b])]
        assert got == switches(rules, tables.scope, opens[b], seqs[b])
    return fired


@pytest.mark.parametrize("name", TOKENIZER_NAMES + TRAINED_NAMES)
@pytest.mark.parametrize("scope", ["auto", "all"])
def test_state_and_recognizer_equal_the_reference(name, scope):
    fired = sum(run_against_reference(name, scope, seed) for seed in range(6))
    assert fired > 10  # armed completions were penalised; a test that never penalises proves nothing


@pytest.mark.parametrize("name", ["qwen3", "llama-3.1", "deepseek-r1-distill-llama", "mistral-7b-v0.1"])
def test_no_completion_after_a_letter_that_looks_like_a_marker(name):
    """`peč` + `altern`: the `č` is a letter, so `atively` is not penalised next (a false switch
    would also move psi and reopen the window)."""
    tok = load_raw_tokenizer(name)
    vocab = SwitchVocabulary.from_tokenizer(tok, ["alternatively"])
    atively = tok.encode("alternatively", add_special_tokens=False).ids[-1]
    tables = PenaltyTables(vocab, "all", tok.get_vocab_size(with_added_tokens=True), "cpu")
    for text, armed in ((" pečaltern", False), (" olečaltern", False), (" peč\naltern", True), (" x.\naltern", True)):
        ids = tok.encode(text, add_special_tokens=False).ids
        if name == "mistral-7b-v0.1" and not armed and tok.id_to_token(ids[-1]) != "altern":
            continue
        state = PenaltyState(tables, 1)
        state.start_rows(torch.tensor([0]), torch.tensor([2.0]), torch.tensor([600]), torch.tensor([False]))
        for token in ids:
            state.update(torch.tensor([token]))
        penalty = dict(zip(tables.columns.tolist(), state.penalty()[0].tolist()))
        assert (penalty.get(atively, 0.0) > 0) == armed, (text, [tok.id_to_token(i) for i in ids])


def test_sentencepiece_completion_is_penalised_after_a_word_initial_piece():
    """Mistral: `▁H` + `mm` is "Hmm" wherever it stands, since `▁` is a space."""
    tok = load_raw_tokenizer("mistral-7b-v0.1")
    vocab = SwitchVocabulary.from_tokenizer(tok, ["hmm", "alternatively"])
    tables = PenaltyTables(vocab, "all", tok.get_vocab_size(with_added_tokens=True), "cpu")
    state = PenaltyState(tables, 1)
    state.start_rows(torch.tensor([0]), torch.tensor([2.0]), torch.tensor([600]), torch.tensor([False]))
    for token in tok.encode("So the word H", add_special_tokens=False).ids:
        state.update(torch.tensor([token]))
    penalty = dict(zip(tables.columns.tolist(), state.penalty()[0].tolist()))
    assert penalty[tok.token_to_id("mm")] == 2.0
    assert penalty.get(tok.token_to_id("atively"), 0.0) == 0.0


def make_state(alpha=2.0, beta=10, rows=2, scope="all"):
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer("qwen3"), ["alternatively"])
    tables = PenaltyTables(vocab, scope, 151936, "cpu")
    state = PenaltyState(tables, rows)
    state.start_rows(torch.arange(rows), torch.full((rows,), alpha), torch.full((rows,), beta), torch.zeros(rows, dtype=torch.bool))
    return vocab, state


def test_apply_returns_new_tensor_and_keeps_minus_inf():
    vocab, state = make_state()
    scores = torch.randn(2, 151936)
    scores[:, 38478] = -math.inf
    before = scores.clone()
    out = state.apply(scores)
    assert torch.equal(scores, before)  # input untouched
    assert out.data_ptr() != scores.data_ptr()
    assert out[0, 38478] == -math.inf
    assert torch.equal(out[:, 92014], scores[:, 92014] - 2.0)
    untouched = torch.ones(151936, dtype=torch.bool)
    untouched[list(vocab.token_ids)] = False
    assert torch.equal(out[:, untouched], scores[:, untouched])


def test_infinite_alpha_never_gives_nan_even_on_a_plus_inf_logit():
    """alpha = inf is a ban: a penalised logit becomes -inf whatever it was, +inf included (inf - inf
    would be NaN); a finite alpha leaves +inf at +inf (never raised, never NaN)."""
    vocab, state = make_state(alpha=math.inf)
    scores = torch.randn(2, 151936)
    scores[0, 38478] = math.inf
    scores[1, 92014] = math.inf
    scores[1, 38478] = -math.inf
    out = state.apply(scores)
    assert not torch.isnan(out).any()
    assert torch.isneginf(out[:, list(vocab.token_ids)]).all()
    _, finite = make_state(alpha=5.0)
    out = finite.apply(scores)
    assert not torch.isnan(out).any() and out[0, 38478] == math.inf and out[1, 38478] == -math.inf
    # The helper the adapters use, in half precision too (an alpha beyond float16's range is inf there).
    from tip_only_state import subtract_penalty

    logits = torch.tensor([math.inf, -math.inf, 0.0, 1.0], dtype=torch.float16)
    amount = torch.tensor([math.inf, math.inf, 0.0, 70000.0]).to(torch.float16)
    assert subtract_penalty(logits, amount).tolist() == [-math.inf, -math.inf, 0.0, -math.inf]


def test_huge_beta_runs_in_the_state():
    """The largest beta (2**31 - 1 tokens) runs in the int64 state and the window never closes."""
    config = TIPConfig(alpha=2.0, beta=2**31 - 1)
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer("qwen3"), ["alternatively"])
    state = PenaltyState(PenaltyTables(vocab, "all", 151936, "cpu"), 1)
    state.start_rows(torch.tensor([0]), torch.tensor([config.alpha]), torch.tensor([config.beta]), torch.tensor([False]))
    for _ in range(3):
        state.update(torch.tensor([11]))
    hits = torch.tensor([i in vocab.token_ids for i in state.tables.switch.ids])
    assert hits.any() and (state.penalty()[:, hits] == 2.0).all()


def test_infinite_alpha_bans_without_nan_and_only_in_window():
    vocab, state = make_state(alpha=math.inf, beta=1)
    scores = torch.randn(2, 151936)
    out = state.apply(scores)
    assert torch.isneginf(out[:, list(vocab.token_ids)]).all()
    assert not torch.isnan(out).any()
    state.update(torch.tensor([11, 11]))  # window of 1 token has passed
    out = state.apply(scores)
    assert torch.equal(out, scores)
    assert not torch.isnan(out).any()


def test_zero_alpha_rows_are_bit_identical():
    _, state = make_state(alpha=0.0)
    scores = torch.randn(2, 151936)
    scores[0, 38478] = -0.0
    scores[1, 38478] = -math.inf
    out = state.apply(scores)
    assert torch.equal(out.view(torch.int32), scores.view(torch.int32))


def test_select_and_replay_reproduce_the_same_state():
    vocab, state = make_state(rows=3, beta=600)
    tok = load_hf_tokenizer("qwen3")
    seqs = [tok.encode(t, add_special_tokens=False) for t in (" a b Alternatively c d", " x y z w", " Wait so altern")]
    length = min(len(s) for s in seqs)
    for t in range(length):
        state.update(torch.tensor([s[t] for s in seqs]))
    order = torch.tensor([2, 0, 1])
    expected = {n: getattr(state, n)[order].clone() for n in ("position", "psi", "phase", "recognizer")}
    state.select(order)
    for n, value in expected.items():
        assert torch.equal(getattr(state, n), value), n
    replayed = PenaltyState(state.tables, 3)
    for row, src in enumerate(order.tolist()):
        replayed.replay_row(row, 2.0, 600, False, seqs[src][:length])
    for n in ("position", "psi", "phase", "recognizer"):
        assert torch.equal(getattr(replayed, n), getattr(state, n)), n
