"""The batched tensor state and the host recognizer against the slow reference (tests/reference.py)."""

import math
import random

import pytest
import torch
from conftest import load_hf_tokenizer
from reference import penalised, switches

from tip_decode import SwitchVocabulary, find_switches
from tip_decode.core.state import PenaltyState, PenaltyTables

TRIGGERS = ["alternatively", "wait", "hmm", "another approach"]


def token_pool(vocab: SwitchVocabulary, tok) -> list[int]:
    """Tokens that exercise every rule: hits, prefixes, completions, markers, punctuation, words."""
    pool = list(vocab.token_ids) + [i for m in vocab.multi_token for i in m.prefix] + list(vocab.completion_ids)
    if vocab.think.available:
        pool += [vocab.think.start_id, vocab.think.end_id]
    pool += tok.encode(" the value. So, 12 x(y", add_special_tokens=False) + tok.encode("\n\nok", add_special_tokens=False)
    return pool


def run_against_reference(name: str, scope: str, seed: int, rows: int = 6, steps: int = 50) -> int:
    tok = load_hf_tokenizer(name)
    vocab = SwitchVocabulary.from_tokenizer(tok, TRIGGERS)
    pool = token_pool(vocab, tok)
    rng = random.Random(seed)
    width = len(tok) + 7
    tables = PenaltyTables(vocab, scope, width, "cpu")
    state = PenaltyState(tables, rows)
    betas = [rng.choice([0, 1, 2, 5, 20, 600]) for _ in range(rows)]
    opens = [rng.random() < 0.5 for _ in range(rows)]
    seqs = [[rng.choice(pool) for _ in range(steps)] for _ in range(rows)]
    state.start_rows(torch.arange(rows), torch.full((rows,), 1.5), torch.tensor(betas), torch.tensor(opens))
    fired = 0
    for t in range(steps):
        amount = state.penalty()
        for b in range(rows):
            expected = penalised(vocab, tables.scope, opens[b], seqs[b], t, betas[b])
            got = {int(tables.columns[c]) for c in torch.nonzero(amount[b] > 0).flatten()}
            assert got == expected, f"{name} {scope} seed {seed} step {t} row {b}"
            fired += bool(expected)
        state.update(torch.tensor([s[t] for s in seqs]))
    for b in range(rows):
        got = [e.position for e in find_switches(vocab, seqs[b], tables.scope, opens[b])]
        assert got == switches(vocab, tables.scope, opens[b], seqs[b])
    return fired


@pytest.mark.parametrize("name", ["qwen3", "deepseek-r1-distill-llama", "llama-3.1"])
@pytest.mark.parametrize("scope", ["auto", "all"])
def test_state_and_recognizer_equal_the_reference(name, scope):
    fired = sum(run_against_reference(name, scope, seed) for seed in range(6))
    assert fired > 50  # the window really opened; a test that never penalises proves nothing


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
    expected = {n: getattr(state, n)[order].clone() for n in ("position", "psi", "phase", "tail", "armed")}
    state.select(order)
    for n, value in expected.items():
        assert torch.equal(getattr(state, n), value), n
    replayed = PenaltyState(state.tables, 3)
    for row, src in enumerate(order.tolist()):
        replayed.replay_row(row, 2.0, 600, False, seqs[src][:length])
    for n in ("position", "psi", "phase", "tail", "armed"):
        assert torch.equal(getattr(replayed, n), getattr(state, n)), n
