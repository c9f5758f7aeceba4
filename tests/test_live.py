"""The live monitor fed token by token (or by text deltas) emits the switches offline analysis finds."""

from __future__ import annotations

import math
import random

import pytest
from conftest import load_raw_tokenizer
from test_analysis import TOKENIZERS, random_trace
from tokenizers import Tokenizer

from tip_decode import SwitchVocabulary
from tip_decode.analysis import analyze_response, entropy_from_logprobs, entropy_from_top_logprobs
from tip_decode.analysis.live import LiveMonitor
from tip_decode.core.vocabulary import TokenizerView

TEXT = (
    "<think>\nLet x be 3. Then 2x = 6.\n\nWait, the problem asks for x+1. Hmm.\n\nAlternatively, "
    "maybe x = 5. 日本語のテキスト — Actually no, but wait: x=4.\n\nAnother approach: let me verify.</think>\n\n"
    "The answer is \\boxed{5}."
)


@pytest.fixture(scope="module")
def raw_tokenizers(tokenizers_dir):
    return {name: Tokenizer.from_file(str(tokenizers_dir / name / "tokenizer.json")) for name in TOKENIZERS}


@pytest.mark.parametrize("name", TOKENIZERS)
def test_token_by_token_equals_offline(raw_tokenizers, name):
    tok = raw_tokenizers[name]
    vocab = SwitchVocabulary.from_tokenizer(tok, "reflection")
    rng = random.Random(7)
    for _ in range(3):
        ids = random_trace(vocab, rng, 400)
        offline = analyze_response(ids, vocabulary=vocab, scope="all", premature_threshold=20)
        monitor = LiveMonitor(vocab, scope="all", premature_threshold=20)
        events = []
        for t, token in enumerate(ids):
            new = monitor.push(token)
            # An event arrives exactly when the token completing the switch is pushed.
            assert all(e.recognised_at == t for e in new)
            events.extend(new)
        assert [e.position for e in events] == offline.switch_positions
        assert [e.abandoned_length for e in events] == [s.abandoned_length for s in offline.switches]
        assert [e.premature for e in events] == [s.premature for s in offline.switches]
        assert len(events) > 0


@pytest.mark.parametrize("name", ["qwen3", "deepseek-r1-distill-llama", "llama-3.1"])
def test_text_deltas_equal_offline(raw_tokenizers, name):
    tok = raw_tokenizers[name]
    vocab = SwitchVocabulary.from_tokenizer(tok, "reflection")
    ids = TokenizerView(tok).encode(TEXT)
    offline = analyze_response(TEXT, vocabulary=vocab, tokenizer=tok, scope="all", premature_threshold=8)
    assert len(offline.switches) >= 5
    for chunk in (1, 3, 17):
        monitor = LiveMonitor(vocab, scope="all", premature_threshold=8, tokenizer=tok)
        events = []
        for i in range(0, len(TEXT), chunk):
            events.extend(monitor.push_text(TEXT[i : i + chunk]))
        events.extend(monitor.finish())
        assert monitor.token_ids == ids, chunk
        assert [e.position for e in events] == offline.switch_positions
        assert [e.premature for e in events] == [s.premature for s in offline.switches]


#: Streams whose deltas may end between the tokens of one character: emoji (several tokens in
#: byte-level vocabularies, byte-fallback pieces in SentencePiece), CJK, math symbols, combining marks.
MULTI_BYTE_TEXTS = [
    "Hmm, 🤔 let me think. 日本語のテキスト ∑ x ≤ 3 — wait 😀😀 Alternatively, try 𝔽 fields.\n\nActually no 🎉 ok.",
    "<think>\nThe set 𝔽₂ ⊂ ℝ… so ∀x ∈ S: x² ≥ 0. 👍🏽 Wait: 🇫🇷 flags, e\u0301 vs é.\n\nHmm. Another approach → ∫₀¹ f.</think>\n\n答案是 \\boxed{42}。",
    "😀" * 7 + " Wait " + "数学" * 5 + "\n\n\tAlternatively, ≈≈≈ 💡💡 done",
]


@pytest.mark.parametrize("name", ["llama-3.1", "qwen3", "mistral-7b-v0.1"])
def test_text_deltas_any_split_equals_whole_encoding(name):
    """For any split of a text into deltas, the committed ids are the tokenizer's encoding of the
    whole text and the events are the offline switches (random splits, deltas of 1-6 characters)."""
    tok = load_raw_tokenizer(name)
    vocab = SwitchVocabulary.from_tokenizer(tok, "reflection")
    rng = random.Random(11)
    switches = 0
    for text in MULTI_BYTE_TEXTS:
        whole = TokenizerView(tok).encode(text)
        offline = analyze_response(whole, vocabulary=vocab, scope="all", premature_threshold=8)
        for _trial in range(25):
            monitor = LiveMonitor(vocab, scope="all", premature_threshold=8, tokenizer=tok)
            events, i = [], 0
            while i < len(text):
                step = rng.randint(1, 6)
                events.extend(monitor.push_text(text[i : i + step]))
                i += step
            events.extend(monitor.finish())
            assert monitor.token_ids == whole, (text, monitor.token_ids[: len(whole)])
            assert [(e.position, e.recognised_at, e.premature) for e in events] == [(s.position, s.recognised_at, s.premature) for s in offline.switches]
            switches += len(events)
    assert switches > 0


def test_switch_mass_counts_armed_completions_like_the_detector():
    """After a word-initial `altern`, `atively` would complete a switch: its probability is switch
    mass at that step. Outside reasoning nothing is (the detector's definition)."""
    tok = load_raw_tokenizer("qwen3")
    vocab = SwitchVocabulary.from_tokenizer(tok, ["alternatively"])
    view = TokenizerView(tok)
    altern, atively = view.encode("altern")[0], view.encode("alternatively")[-1]
    newline, hit = view.encode("\n")[0], view.encode(" Alternatively")[0]
    top = {atively: math.log(0.3), hit: math.log(0.2), newline: math.log(0.1)}
    monitor = LiveMonitor(vocab, scope="all")
    monitor.push(newline, top)
    monitor.push(altern, top)  # chosen after "\n": `altern` starts a word
    events = monitor.push(atively, top)  # chosen with `atively` armed
    assert monitor.switch_mass == pytest.approx([0.2, 0.2, 0.5])
    assert [e.position for e in events] == [1]
    # The switch's signals are read at the step that chose its completing token.
    assert events[0].recognised_at == 2 and events[0].switch_mass_at_switch == pytest.approx(0.5)
    assert events[0].entropy_at_switch == pytest.approx(monitor.entropies[2])
    # scope "think" before <think>: no switch can open, so no switch mass.
    waiting = LiveMonitor(vocab, scope="think")
    waiting.push(newline, top)
    assert waiting.switch_mass == [0.0]


def test_think_scope_and_logprob_signals(raw_tokenizers):
    tok = raw_tokenizers["qwen3"]
    vocab = SwitchVocabulary.from_tokenizer(tok, "reflection")
    ids = TokenizerView(tok).encode(TEXT)
    monitor = LiveMonitor(vocab, premature_threshold=8, confident_entropy=0.5)
    hit = vocab.token_ids[0]
    events = []
    for token in ids:
        # A fake-free top-k: the chosen token with p=0.9 and one switch token with p=0.05.
        top = {token: math.log(0.9), hit: math.log(0.05)} if token != hit else {token: math.log(0.95)}
        events.extend(monitor.push(token, top_logprobs=top))
    offline = analyze_response(ids, vocabulary=vocab, tokenizer=tok, premature_threshold=8)
    assert monitor.scope == "think" and monitor.reasoning_ended
    assert [e.position for e in events] == offline.switch_positions
    expected_entropy = entropy_from_top_logprobs([math.log(0.9), math.log(0.05)])
    assert expected_entropy == pytest.approx(-(0.9 * math.log(0.9) + 0.05 * math.log(0.05) + 0.05 * math.log(0.05)))
    assert all(e.mean_entropy == pytest.approx(expected_entropy) and e.confident is True for e in events)
    # The step that chose <think> is outside reasoning (no switch can open there); the next one is inside.
    assert monitor.switch_mass[0] == 0.0 and monitor.switch_mass[1] == pytest.approx(0.05)


def test_entropy_helpers_and_errors(raw_tokenizers):
    assert entropy_from_logprobs([math.log(0.5), math.log(0.5)]) == pytest.approx(math.log(2))
    assert entropy_from_logprobs([0.0, -math.inf]) == 0.0
    # Top-k holding all the mass is exact.
    assert entropy_from_top_logprobs({1: math.log(0.25), 2: math.log(0.75)}) == pytest.approx(entropy_from_logprobs([math.log(0.25), math.log(0.75)]))
    vocab = SwitchVocabulary.from_tokenizer(raw_tokenizers["qwen3"], "paper")
    monitor = LiveMonitor(vocab, scope="all")
    with pytest.raises(ValueError, match="`tokenizer` is required"):
        monitor.push_text("Alternatively")
    with pytest.raises(TypeError, match="`token_id`"):
        monitor.push("x")
    with pytest.raises(ValueError, match="`premature_threshold`"):
        LiveMonitor(vocab, premature_threshold=-3)


def test_text_deltas_random_chunks_on_real_solutions(raw_tokenizers, data_dir):
    import json

    tok = raw_tokenizers["qwen2.5"]
    vocab = SwitchVocabulary.from_tokenizer(tok, "reflection")
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines()]
    # Solutions that use trigger words, plus a few that do not.
    rows = [r for r in rows if any(w in r["solution"] for w in ("Alternatively", "However", "Instead"))][:30] + rows[:10]
    rng = random.Random(3)
    total_switches = 0
    for row in rows:
        text = row["solution"]
        offline = analyze_response(text, vocabulary=vocab, tokenizer=tok, scope="all")
        monitor = LiveMonitor(vocab, scope="all", tokenizer=tok)
        events, i = [], 0
        while i < len(text):
            step = rng.randint(1, 12)
            events.extend(monitor.push_text(text[i : i + step]))
            i += step
        events.extend(monitor.finish())
        assert monitor.token_ids == TokenizerView(tok).encode(text), row["unique_id"]
        assert [e.position for e in events] == offline.switch_positions
        total_switches += len(events)
    assert total_switches > 0


def test_top_logprob_signals_feed_thought_means(raw_tokenizers):
    from dataclasses import dataclass

    from tip_decode.analysis import top_logprob_signals

    @dataclass
    class Logprob:  # the shape of vLLM's Logprob record: only `.logprob` is read
        logprob: float

    tok = raw_tokenizers["qwen3"]
    vocab = SwitchVocabulary.from_tokenizer(tok, "paper")
    ids = TokenizerView(tok).encode("So x = 2.\n\nAlternatively x = 3.")
    switch = ids.index(38478) if 38478 in ids else ids.index(92014)
    steps = [{t: Logprob(math.log(0.5)), "token_id:1": Logprob(math.log(0.5))} if k < switch else {str(t): 0.0} for k, t in enumerate(ids)]
    steps[1] = None  # a step without data is skipped, not counted as 0
    chosen, entropies = top_logprob_signals(ids, steps)
    assert math.isnan(chosen[1]) and chosen[0] == pytest.approx(math.log(0.5)) and chosen[-1] == 0.0
    a = analyze_response(ids, vocabulary=vocab, scope="all", token_logprobs=chosen, token_entropies=entropies)
    assert [t.start for t in a.thoughts] == [0, switch]
    assert a.thoughts[0].mean_entropy == pytest.approx(math.log(2)) and a.thoughts[1].mean_entropy == 0.0
    assert a.thoughts[0].mean_logprob == pytest.approx(math.log(0.5))
    with pytest.raises(ValueError, match="`top_logprobs`"):
        top_logprob_signals(ids, steps[:-1])
    with pytest.raises(ValueError, match="`token_entropies`"):
        analyze_response(ids, vocabulary=vocab, scope="all", token_entropies=entropies[:-1])
