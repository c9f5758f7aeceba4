"""Trace analysis on hand-written traces, on the penalty state's psi, and on MATH-500 solutions."""

from __future__ import annotations

import json
import random

import pytest
import torch
from tokenizers import Tokenizer

from tip_decode import SwitchVocabulary, TIPConfig
from tip_decode.analysis import (
    AnswerMatchJudge,
    aggregate,
    analyze_response,
    extract_candidates,
    underthinking,
)
from tip_decode.core.interventions import InterventionSet, InterventionState, tip_only_plan
from tip_decode.core.vocabulary import TokenizerView

TOKENIZERS = ("qwen2.5", "qwen3", "deepseek-r1-distill-qwen", "deepseek-r1-distill-llama", "llama-3.1", "mistral-7b-v0.1")


@pytest.fixture(scope="module")
def raw_tokenizers(tokenizers_dir):
    # tokenizers.Tokenizer straight from tokenizer.json: fast to load, and it is what the rebuilt
    # DeepSeek-Llama files define (AutoTokenizer in transformers 5 rebuilds that one's pre-tokenizer).
    return {name: Tokenizer.from_file(str(tokenizers_dir / name / "tokenizer.json")) for name in TOKENIZERS}


@pytest.fixture(scope="module")
def qwen3(raw_tokenizers):
    tok = raw_tokenizers["qwen3"]
    return tok, SwitchVocabulary.from_tokenizer(tok, ["alternatively", "wait"])


def enc(tok, text):
    return TokenizerView(tok).encode(text)


# ----- hand-written traces -----


def test_hand_trace_segmentation_flags_and_ut(qwen3):
    tok, vocab = qwen3
    think_start, think_end = vocab.think.start_id, vocab.think.end_id
    parts = [
        [think_start],
        enc(tok, "\nLet x be 3. Then 2x = 6, so the answer is 6.\n\n"),  # thought 0: correct
        enc(tok, "Wait, the problem asks for x plus one.\n\n"),  # thought 1: no candidate
        enc(tok, "Alternatively, maybe x = 5."),  # thought 2: wrong candidate
        [think_end],
        enc(tok, "\n\nThe answer is \\boxed{5}."),
    ]
    ids = [t for p in parts for t in p]
    starts = [sum(len(p) for p in parts[:k]) for k in range(len(parts))]
    a = analyze_response(ids, vocabulary=vocab, tokenizer=tok, reference="6", premature_threshold=len(parts[2]) + 1, id="r")
    assert a.n_tokens == len(ids)
    assert a.reasoning_start == 1 and a.reasoning_end == starts[4]
    assert [(t.start, t.end) for t in a.thoughts] == [(1, starts[2]), (starts[2], starts[3]), (starts[3], starts[4])]
    assert a.switch_positions == [starts[2], starts[3]]
    assert [t.trigger for t in a.thoughts] == [None, "wait", "alternatively"]
    assert [t.candidates for t in a.thoughts] == [("6",), (), ("5",)]
    assert [t.status for t in a.thoughts] == ["correct", "incorrect", "incorrect"]
    # Text after </think> belongs to no thought.
    assert "boxed" not in "".join(t.text for t in a.thoughts)
    assert a.correct is False and a.prediction == "5"
    assert a.first_correct_thought == 0 and a.abandoned_on_track == 1
    assert [s.on_track for s in a.switches] == [True, False]
    # The threshold is one more than thought 1's length: only the switch that ends it is premature.
    assert [t.n_tokens for t in a.thoughts] == [len(parts[1]), len(parts[2]), len(parts[3])]
    assert len(parts[1]) > len(parts[2]) + 1
    assert [s.premature for s in a.switches] == [False, True] and a.premature == 1
    assert a.ut == pytest.approx(1 - starts[2] / len(ids))
    d = a.to_dict(thoughts=False)
    assert {k: d[k] for k in ("id", "n_tokens", "n_thoughts", "premature", "abandoned_on_track", "first_correct_thought", "correct")} == {
        "id": "r",
        "n_tokens": len(ids),
        "n_thoughts": 3,
        "premature": 1,
        "abandoned_on_track": 1,
        "first_correct_thought": 0,
        "correct": False,
    }
    json.dumps(a.to_dict())  # JSON-safe


def test_text_input_equals_id_input_and_needs_a_tokenizer(qwen3):
    tok, vocab = qwen3
    text = "<think>\nSo 2+2 = 4.\n\nWait, is it? Alternatively 5.</think>\\boxed{4}"
    by_text = analyze_response(text, vocabulary=vocab, tokenizer=tok, reference="4")
    by_ids = analyze_response(enc(tok, text), vocabulary=vocab, tokenizer=tok, reference="4")
    assert by_text.to_dict() == by_ids.to_dict()
    assert by_text.correct is True and by_text.ut is None and by_text.first_correct_thought == 0
    with pytest.raises(ValueError, match="`tokenizer` is required"):
        analyze_response(text, vocabulary=vocab)
    with pytest.raises(TypeError, match="`response`"):
        analyze_response(3.5, vocabulary=vocab, tokenizer=tok)
    with pytest.raises(ValueError, match="`answer_kind`"):
        analyze_response(text, vocabulary=vocab, tokenizer=tok, answer_kind="essay")
    with pytest.raises(ValueError, match="`premature_threshold`"):
        analyze_response(text, vocabulary=vocab, tokenizer=tok, premature_threshold=-1)


def test_prompt_open_auto_and_scope_all(qwen3):
    tok, vocab = qwen3
    # The chat template opened <think>: the response only closes it.
    text = "Try 3.\n\nWait, no: 4.</think>\nAlternatively \\boxed{4}"
    closed_only = analyze_response(text, vocabulary=vocab, tokenizer=tok, prompt_open="auto")
    assert closed_only.reasoning_start == 0 and closed_only.n_thoughts == 2
    not_open = analyze_response(text, vocabulary=vocab, tokenizer=tok, prompt_open=False)
    assert not_open.reasoning_start is None and not_open.n_thoughts == 0 and not_open.switches == []
    # Scope "all": the whole response is reasoning, so "Alternatively" after </think> also switches.
    everything = analyze_response(text, vocabulary=vocab, tokenizer=tok, scope="all")
    assert everything.n_thoughts == 3 and everything.thoughts[-1].end == everything.n_tokens
    assert closed_only.correct is None and closed_only.ut is None  # no reference: nothing graded


def test_paper_worked_example_ut(qwen3):
    """The paper's example: an incorrect response of 7681 tokens whose first correct thought ends at 411."""
    tok, vocab = qwen3
    filler = enc(tok, " x")
    assert len(filler) == 1
    correct_end = enc(tok, " so the answer is \\boxed{6}.\n\n")
    switch = enc(tok, "Alternatively")
    wrong_end = enc(tok, " the answer is \\boxed{7}.")
    thought0 = filler * (411 - len(correct_end)) + correct_end
    ids = thought0 + switch + filler * (7681 - 411 - len(switch) - len(wrong_end)) + wrong_end
    assert len(ids) == 7681
    a = analyze_response(ids, vocabulary=vocab, tokenizer=tok, reference="6", scope="all")
    assert a.switch_positions == [411]
    assert a.correct is False and a.first_correct_thought == 0 and a.t_hat == 411
    assert a.ut == pytest.approx(1 - 411 / 7681)
    assert underthinking(7681, 411, False) == pytest.approx(0.946491342)
    assert underthinking(7681, None, False) == 0.0 and underthinking(7681, 411, True) is None


def test_aggregate_formulas(qwen3):
    tok, vocab = qwen3

    def run(text, ref, rid):
        return analyze_response(text, vocabulary=vocab, tokenizer=tok, reference=ref, scope="all", premature_threshold=5, id=rid)

    wrong_with_correct_thought = run("x = 4, the answer is 4.\n\nWait, maybe \\boxed{5}", "4", "p1-a")
    right = run("It is \\boxed{4}", "4", "p1-b")
    wrong_no_correct = run("Perhaps 9.\n\nAlternatively \\boxed{8}", "2", "p2-a")
    analyses = [wrong_with_correct_thought, right, wrong_no_correct]
    assert [a.correct for a in analyses] == [False, True, False]
    ut1 = wrong_with_correct_thought.ut
    assert 0 < ut1 < 1 and wrong_no_correct.ut == 0.0
    summary = aggregate(analyses, problem_ids=["p1", "p1", "p2"])
    assert summary["n"] == 3
    assert summary["switches_per_response"] == pytest.approx(2 / 3)
    lengths = [t.n_tokens for a in analyses for t in a.thoughts]
    assert summary["mean_tokens_between_switches"] == pytest.approx(sum(lengths) / len(lengths))
    assert summary["ut"] == pytest.approx((ut1 + 0.0) / 2)
    # p1: (ut1 + 0) / 2 (the correct sample counts 0); p2: 0; then the mean over the two problems.
    assert summary["weighted_ut"] == pytest.approx(((ut1 + 0) / 2 + 0) / 2)
    assert summary["premature_switches"] == sum(a.premature for a in analyses)
    assert summary["incorrect_with_correct_thought"] == 0.5
    with pytest.raises(ValueError, match="`problem_ids`"):
        aggregate(analyses, problem_ids=["p1"])
    assert aggregate([])["ut"] is None


def test_aggregate_treats_unknown_ut_and_unjudged_thoughts_as_unknown(qwen3):
    """A judge that could not judge (an unreachable LLM judge) leaves UT unknown: UT and weighted UT
    both leave such samples out, and abandoned-on-track is null when no abandoned thought was judged."""
    from tip_decode.analysis import Verdict

    tok, vocab = qwen3

    class Unjudging:
        def judge(self, request):
            return Verdict("unjudged", None, "request failed: connection refused")

    def run(text, ref, rid, judge=None):
        return analyze_response(text, vocabulary=vocab, tokenizer=tok, reference=ref, scope="all", premature_threshold=5, id=rid, judge=judge)

    known = run("x = 4, the answer is 4.\n\nWait, maybe \\boxed{5}", "4", "p1-a")
    unknown = run("x = 4, the answer is 4.\n\nWait, maybe \\boxed{5}", "4", "p1-b", judge=Unjudging())
    right = run("It is \\boxed{4}", "4", "p2-a", judge=Unjudging())
    assert known.ut is not None and known.ut > 0 and unknown.ut is None and unknown.correct is False
    summary = aggregate([known, unknown, right], problem_ids=["p1", "p1", "p2"])
    assert summary["ut"] == pytest.approx(known.ut) and summary["ut_unknown"] == 1
    # p1 holds one known sample (ut) and one unknown one, left out as `ut` leaves it out; p2 is correct.
    assert summary["weighted_ut"] == pytest.approx((known.ut + 0.0) / 2)
    assert summary["unjudged_thoughts"] == unknown.n_thoughts + right.n_thoughts
    assert summary["abandoned_unjudged"] == 1 and summary["abandoned_on_track"] == 1  # a lower bound, with its count
    everything_unjudged = aggregate([unknown, right])
    assert everything_unjudged["abandoned_on_track"] is None and everything_unjudged["ut"] is None
    assert everything_unjudged["weighted_ut"] == 0.0  # only the correct sample is known
    assert unknown.to_dict()["abandoned_on_track"] is None and unknown.to_dict()["abandoned_unjudged"] == 1


def test_candidates():
    text = "We get \\boxed{\\frac{1}{2}} first, then \\boxed{3}. So the answer is $7$.\nThus x = 12."
    assert extract_candidates(text, "math") == ("\\frac{1}{2}", "3", "7", "12")
    assert extract_candidates("Step 2 of the plan", "math") == ()
    assert extract_candidates("The answer is (B).", "choice")[-1] == "B"
    with pytest.raises(ValueError, match="candidate_sources"):
        extract_candidates("x", "math", ("guess",))
    judge = AnswerMatchJudge()
    from tip_decode.analysis import JudgeRequest

    assert judge.judge(JudgeRequest("...", ("0.5",), "\\frac{1}{2}")).status == "correct"
    assert judge.judge(JudgeRequest("...", (), "1")).status == "incorrect"


# ----- one recogniser, one truth: analysis positions equal the penalty state's psi updates -----


def random_trace(vocab: SwitchVocabulary, rng: random.Random, length: int) -> list[int]:
    hits = list(vocab.token_ids)
    multi = [list(m.prefix) + [m.completion] for m in vocab.multi_token]
    tokens: list[int] = []
    while len(tokens) < length:
        roll = rng.random()
        if roll < 0.08 and hits:
            tokens.append(rng.choice(hits))
        elif roll < 0.16 and multi:
            tokens.extend(rng.choice(multi))
        elif roll < 0.2 and multi:
            tokens.extend(rng.choice(multi)[:-1])  # a prefix that is not completed
        elif roll < 0.22 and vocab.think.available:
            tokens.append(rng.choice([vocab.think.start_id, vocab.think.end_id]))
        else:
            tokens.append(rng.randrange(min(vocab.vocab_size, 120000)))
    return tokens[:length]


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("scope", ["all", "auto"])
def test_positions_equal_penalty_state_psi(raw_tokenizers, name, scope):
    tok = raw_tokenizers[name]
    vocab = SwitchVocabulary.from_tokenizer(tok, "reflection")
    rng = random.Random(sum(map(ord, name + scope)))
    found = 0
    for trial in range(4):
        ids = random_trace(vocab, rng, 300)
        prompt_open = trial % 2 == 1
        analysis = analyze_response(ids, vocabulary=vocab, scope=scope, prompt_open=prompt_open)
        state = InterventionState(tip_only_plan(vocab, scope).tables(vocab.vocab_size, "cpu"), 1)
        settings = InterventionSet(tip=TIPConfig(alpha=1.0, beta=10**9, triggers=vocab.triggers, scope=scope))
        state.start_rows([0], [settings], [prompt_open], [0])
        for t, token in enumerate(ids):
            state.update(torch.tensor([token]))
            # psi after g[:t+1]: the latest switch recognised by t, else the reasoning start once
            # reasoning has begun (0 before: the state's initial value).
            expected = 0
            r0 = analysis.reasoning_start
            if r0 is not None and (r0 == 0 or t >= r0 - 1):
                expected = r0
            for switch in analysis.switches:
                if switch.recognised_at <= t:
                    expected = switch.position
            assert int(state.column("tip.psi")[0]) == expected, (name, scope, trial, t)
        assert [t.start for t in analysis.thoughts[1:]] == analysis.switch_positions
        found += len(analysis.switches)
    # Every tokenizer and scope really segments (half the trials start inside an open think block).
    assert found > 0


# ----- MATH-500 reference solutions analysed as responses -----


def test_math500_solutions_grade_correct(data_dir, qwen3):
    tok, _ = qwen3
    vocab = SwitchVocabulary.from_tokenizer(tok, "paper")
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 500
    failures = []
    with_switch = 0
    for row in rows:
        a = analyze_response(row["solution"], vocabulary=vocab, tokenizer=tok, reference=row["answer"], scope="all", id=row["unique_id"])
        with_switch += bool(a.switches)
        if not (a.correct and a.first_correct_thought is not None):
            failures.append((row["unique_id"], a.prediction, row["answer"], [t.candidates for t in a.thoughts]))
    assert failures == [], failures[:5]
    # Some reference solutions say "Alternatively": those have more than one thought.
    assert with_switch > 0
