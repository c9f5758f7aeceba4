"""The batched tensor state and the host recognizer against the slow reference (tests/reference.py),
whose rules come from the independent vocabulary oracle (tests/vocab_oracle.py), on every shared
tokenizer and on the tokenizers trained in the tests."""

import math
import random

import pytest
import torch
from conftest import TOKENIZER_NAMES, load_hf_tokenizer, load_raw_tokenizer
from reference import penalised, switches
from trained_tokenizers import TRAINED_NAMES
from vocab_oracle import oracle_for

from tip_decode import SwitchVocabulary, TIPConfig, find_switches
from tip_decode.core.interventions import InterventionSet, InterventionState, tip_only_plan

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


def tip_state(vocab: SwitchVocabulary, scope: str, width: int, rows: int) -> InterventionState:
    """The library's per-row state of TIP alone over `vocab` (the front `TIPLogitsProcessor` uses)."""
    return InterventionState(tip_only_plan(vocab, scope).tables(width, "cpu"), rows)


def start(state: InterventionState, vocab: SwitchVocabulary, scope: str, alphas, betas, opens) -> None:
    """Fresh rows, each with its own alpha, beta and prompt fact."""
    settings = [InterventionSet(tip=TIPConfig(alpha=a, beta=b, triggers=vocab.triggers, scope=scope)) for a, b in zip(alphas, betas)]
    state.start_rows(list(range(len(settings))), settings, list(opens), [0] * len(settings))


def penalty(state: InterventionState) -> torch.Tensor:
    """(rows, columns) what TIP subtracts at `tables.columns` for the next token (0 where nothing)."""
    return -state.bias() + 0.0  # -(-0.0) + 0.0 is +0.0


def run_against_reference(name: str, scope: str, seed: int, rows: int = 6, steps: int = 50) -> int:
    tok = load_raw_tokenizer(name)
    rules = oracle_for(tok).rules(TRIGGERS)
    vocab = SwitchVocabulary.from_tokenizer(tok, TRIGGERS)
    pool = token_pool(rules, tok)
    rng = random.Random(seed)
    width = tok.get_vocab_size(with_added_tokens=True) + 7
    resolved = vocab.resolve_scope(scope)
    state = tip_state(vocab, scope, width, rows)
    columns = state.tables.columns
    betas = [rng.choice([0, 1, 2, 5, 20, 600]) for _ in range(rows)]
    opens = [rng.random() < 0.5 for _ in range(rows)]
    seqs = [random_sequence(rules, pool, rng, steps) for _ in range(rows)]
    start(state, vocab, scope, [1.5] * rows, betas, opens)
    fired = 0
    for t in range(steps):
        amount = penalty(state)
        for b in range(rows):
            expected = penalised(rules, resolved, opens[b], seqs[b], t, betas[b])
            got = {int(columns[c]) for c in torch.nonzero(amount[b] > 0).flatten()}
            assert got == expected, f"{name} {scope} seed {seed} step {t} row {b}"
            fired += bool(expected - rules.token_ids)  # a multi-token completion was armed
        state.update(torch.tensor([s[t] for s in seqs]))
    for b in range(rows):
        got = [e.position for e in find_switches(vocab, seqs[b], resolved, opens[b])]
        assert got == switches(rules, resolved, opens[b], seqs[b])
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
    width = tok.get_vocab_size(with_added_tokens=True)
    for text, armed in ((" pečaltern", False), (" olečaltern", False), (" peč\naltern", True), (" x.\naltern", True)):
        ids = tok.encode(text, add_special_tokens=False).ids
        if name == "mistral-7b-v0.1" and not armed and tok.id_to_token(ids[-1]) != "altern":
            continue
        state = tip_state(vocab, "all", width, 1)
        start(state, vocab, "all", [2.0], [600], [False])
        for token in ids:
            state.update(torch.tensor([token]))
        amounts = dict(zip(state.tables.columns.tolist(), penalty(state)[0].tolist()))
        assert (amounts.get(atively, 0.0) > 0) == armed, (text, [tok.id_to_token(i) for i in ids])


def test_sentencepiece_completion_is_penalised_after_a_word_initial_piece():
    """Mistral: `▁H` + `mm` is "Hmm" wherever it stands, since `▁` is a space."""
    tok = load_raw_tokenizer("mistral-7b-v0.1")
    vocab = SwitchVocabulary.from_tokenizer(tok, ["hmm", "alternatively"])
    state = tip_state(vocab, "all", tok.get_vocab_size(with_added_tokens=True), 1)
    start(state, vocab, "all", [2.0], [600], [False])
    for token in tok.encode("So the word H", add_special_tokens=False).ids:
        state.update(torch.tensor([token]))
    amounts = dict(zip(state.tables.columns.tolist(), penalty(state)[0].tolist()))
    assert amounts[tok.token_to_id("mm")] == 2.0
    assert amounts.get(tok.token_to_id("atively"), 0.0) == 0.0


def make_state(alpha=2.0, beta=10, rows=2, scope="all"):
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer("qwen3"), ["alternatively"])
    state = tip_state(vocab, scope, 151936, rows)
    start(state, vocab, scope, [alpha] * rows, [beta] * rows, [False] * rows)
    return vocab, state


def apply(state: InterventionState, scores: torch.Tensor) -> torch.Tensor:
    return state.apply(scores.clone())


def test_apply_subtracts_alpha_and_keeps_minus_inf():
    vocab, state = make_state()
    scores = torch.randn(2, 151936)
    scores[:, 38478] = -math.inf
    out = apply(state, scores)
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
    out = apply(state, scores)
    assert not torch.isnan(out).any()
    assert torch.isneginf(out[:, list(vocab.token_ids)]).all()
    _, finite = make_state(alpha=5.0)
    out = apply(finite, scores)
    assert not torch.isnan(out).any() and out[0, 38478] == math.inf and out[1, 38478] == -math.inf
    # In half precision too: an alpha beyond float16's range is inf there, and still a ban, not NaN.
    _, huge = make_state(alpha=70000.0)
    half = scores.half()
    out = apply(huge, half)
    assert not torch.isnan(out).any() and torch.isneginf(out[:, list(vocab.token_ids)]).all()


def test_huge_beta_runs_in_the_state():
    """The largest beta (2**31 - 1 tokens) runs in the int64 state and the window never closes."""
    config = TIPConfig(alpha=2.0, beta=2**31 - 1)
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer("qwen3"), ["alternatively"])
    state = tip_state(vocab, "all", 151936, 1)
    start(state, vocab, "all", [config.alpha], [config.beta], [False])
    assert state.column("tip.beta").tolist() == [2**31 - 1]
    for _ in range(3):
        state.update(torch.tensor([11]))
    hits = torch.tensor([i in vocab.token_ids for i in state.tables.token_ids])
    assert hits.any() and (penalty(state)[:, hits] == 2.0).all()


def test_infinite_alpha_bans_without_nan_and_only_in_window():
    vocab, state = make_state(alpha=math.inf, beta=1)
    scores = torch.randn(2, 151936)
    out = apply(state, scores)
    assert torch.isneginf(out[:, list(vocab.token_ids)]).all()
    assert not torch.isnan(out).any()
    state.update(torch.tensor([11, 11]))  # window of 1 token has passed
    out = apply(state, scores)
    assert torch.equal(out, scores)
    assert not torch.isnan(out).any()


def test_zero_alpha_rows_are_bit_identical():
    _, state = make_state(alpha=0.0)
    scores = torch.randn(2, 151936)
    scores[0, 38478] = -0.0
    scores[1, 38478] = -math.inf
    out = apply(state, scores)
    assert torch.equal(out.view(torch.int32), scores.view(torch.int32))


def test_select_and_replay_reproduce_the_same_state():
    vocab, state = make_state(rows=3, beta=600)
    tok = load_hf_tokenizer("qwen3")
    seqs = [tok.encode(t, add_special_tokens=False) for t in (" a b Alternatively c d", " x y z w", " Wait so altern")]
    length = min(len(s) for s in seqs)
    for t in range(length):
        state.update(torch.tensor([s[t] for s in seqs]))
    order = torch.tensor([2, 0, 1])
    names = ("position", "tip.psi", "phase", "tip.recognizer")
    expected = {n: state.column(n)[order].clone() for n in names}
    state.select(order)
    for n, value in expected.items():
        assert torch.equal(state.column(n), value), n
    replayed = InterventionState(state.tables, 3)
    settings = InterventionSet(tip=TIPConfig(alpha=2.0, beta=600, triggers=vocab.triggers, scope="all"))
    for row, src in enumerate(order.tolist()):
        replayed.replay_row(row, settings, False, 0, seqs[src][:length])
    for n in names:
        assert torch.equal(replayed.column(n), state.column(n)), n
