"""AbandonmentDetector inside a real `generate` on a tiny random-weight Qwen2 (real qwen3 tokenizer)."""

from __future__ import annotations

import pytest
import reference
import torch
from conftest import load_hf_tokenizer, load_raw_tokenizer
from vocab_oracle import oracle_for

from tip_decode import SwitchVocabulary
from tip_decode.hf import AbandonmentDetector, TIPLogitsProcessor

#: Switch tokens of the qwen3 vocabulary (" Alternatively", "Alternatively", " Wait", "Wait"). A
#: random-weight model spreads its mass almost evenly over 151k tokens; a bias of 9.5 gives these
#: four about a third of it when sampling, so traces contain switches at irregular places.
SWITCH_IDS = (38478, 92014, 13824, 14190)
BIAS = {(i,): 9.5 for i in SWITCH_IDS}


@pytest.fixture(scope="module")
def setup(tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM

    tok = load_hf_tokenizer("qwen3")
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).eval()
    vocab = SwitchVocabulary.from_tokenizer(tok, ["alternatively", "wait"])
    assert set(SWITCH_IDS) <= set(vocab.token_ids)
    inputs = tok(["Solve x + 1 = 2.", "What is the answer to 3 times 7? Think."], return_tensors="pt", padding=True)
    return tok, model, vocab, inputs


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Reference entropy in float64 (the detector accumulates 151k terms in float32)."""
    return torch.special.entr(torch.softmax(logits.double(), dim=-1)).sum(dim=-1).float()


def generate(model, tok, inputs, processors, **kwargs):
    return model.generate(
        **inputs,
        logits_processor=processors,
        pad_token_id=tok.pad_token_id,
        return_dict_in_generate=True,
        **kwargs,
    )


def test_entropy_equals_output_logits_and_tokens_unchanged(setup):
    tok, model, vocab, inputs = setup
    detector = AbandonmentDetector(vocab, scope="all", initial_steps=8)  # forces two doublings
    plain = generate(model, tok, inputs, [], max_new_tokens=24, do_sample=False)
    watched = generate(model, tok, inputs, [detector], max_new_tokens=24, do_sample=False, output_logits=True)
    assert torch.equal(plain.sequences, watched.sequences)
    expected = entropy(torch.stack(watched.logits, dim=1))
    assert detector.entropy.shape == expected.shape == (2, 24)
    torch.testing.assert_close(detector.entropy, expected, rtol=5e-5, atol=1e-5)
    # The processor hands back the scores it got, untouched.
    scores = torch.randn(2, model.config.vocab_size)
    copy = scores.clone()
    assert detector(watched.sequences[:, :-1], scores) is scores and torch.equal(scores, copy)


def expected_events(rules, generated: list[int], entropies: torch.Tensor, probs: torch.Tensor, threshold: int):
    """Switches, thoughts and their signals straight from the reference and the recorded scores.

    Positions come from tests/reference.py on the oracle's rules; entropy and switch mass are read
    at the step that chose the completing token, from `output_scores`: nothing the detector computed.
    """
    found = reference.switch_events(rules, "all", False, generated)
    starts = [0] + [j for j, _ in found]
    ends = [j for j, _ in found] + [len(generated)]
    events = []
    for k, (j, completed) in enumerate(found):
        active = sorted(reference.penalised(rules, "all", False, generated, completed, 2**62))
        mean = entropies[starts[k] : j].mean().item() if j > starts[k] else None
        events.append(
            {
                "position": j,
                "recognised_at": completed,
                "abandoned_length": j - starts[k],
                "premature": j - starts[k] < threshold,
                "abandoned_mean_entropy": mean,
                "entropy_at_switch": entropies[completed].item(),
                "switch_mass_at_switch": probs[completed, active].sum().item(),
            }
        )
    return events, list(zip(starts, ends))


def check_report(report, rules, generated, scores_row, threshold: int) -> int:
    entropies = entropy(scores_row)
    probs = torch.softmax(scores_row.double(), dim=-1)
    events, bounds = expected_events(rules, generated, entropies, probs, threshold)
    assert report.token_ids == generated
    assert [(t.start, t.end) for t in report.thoughts] == bounds
    assert len(report.events) == len(events)
    for got, want in zip(report.events, events):
        for key in ("position", "recognised_at", "abandoned_length", "premature"):
            assert getattr(got, key) == want[key], key
        if want["abandoned_mean_entropy"] is None:
            assert got.abandoned_mean_entropy is None
        else:
            assert got.abandoned_mean_entropy == pytest.approx(want["abandoned_mean_entropy"], rel=1e-4)
        assert got.entropy_at_switch == pytest.approx(want["entropy_at_switch"], rel=1e-4, abs=1e-5)
        assert got.switch_mass_at_switch == pytest.approx(want["switch_mass_at_switch"], rel=1e-4, abs=1e-6)
    # The thought a switch ends carries the switch mass of the step that completed that switch.
    for thought, want in zip(report.thoughts, events):
        assert thought.switch_mass_before == pytest.approx(want["switch_mass_at_switch"], rel=1e-4, abs=1e-6)
    assert report.thoughts[-1].switch_mass_before is None
    return len(events)


def sampled(model, tok, inputs, detector, bias, steps=48, seed=0):
    torch.manual_seed(seed)
    return generate(
        model, tok, inputs, [detector], max_new_tokens=steps, do_sample=True, top_k=0, top_p=1.0, temperature=1.0, sequence_bias=bias, output_scores=True
    )


def test_switch_events_equal_the_reference(setup):
    tok, model, vocab, inputs = setup
    rules = oracle_for(load_raw_tokenizer("qwen3")).rules(["alternatively", "wait"])
    detector = AbandonmentDetector(vocab, scope="all", premature_threshold=4, confident_entropy=5.0)
    out = sampled(model, tok, inputs, detector, BIAS)
    reports = detector.report(out, eos_token_id=tok.eos_token_id)
    prompt_len = inputs["input_ids"].shape[1]
    scores = torch.stack(out.scores, dim=1)
    total = 0
    for row, report in enumerate(reports):
        generated = out.sequences[row, prompt_len : prompt_len + len(report.token_ids)].tolist()
        total += check_report(report, rules, generated, scores[row, : len(generated)], threshold=4)
        for event in report.events:
            # A thought abandoned at its first token has no entropy to average: unknown, not a guess.
            if event.abandoned_mean_entropy is None:
                assert event.confident is None
            else:
                assert event.confident == (event.abandoned_mean_entropy < 5.0)
    assert total >= 3
    # Sampling warpers are identity here, so output_scores is what the detector saw.
    torch.testing.assert_close(detector.entropy, entropy(scores), rtol=5e-5, atol=1e-5)


def test_multi_token_switch_signals_are_read_where_the_switch_completes(setup):
    """`altern` + `atively` after a non-letter: the switch is at `altern`, but TIP penalises (and the
    model chooses) `atively` one step later; the switch's entropy and mass are that step's."""
    tok, model, vocab, inputs = setup
    rules = oracle_for(load_raw_tokenizer("qwen3")).rules(["alternatively", "wait"])
    detector = AbandonmentDetector(vocab, scope="all", premature_threshold=4)
    altern, atively = tok.convert_tokens_to_ids("altern"), tok.convert_tokens_to_ids("atively")
    bias = {(altern,): 12.0, (atively,): 12.0, (tok.convert_tokens_to_ids("."),): 12.0}
    out = sampled(model, tok, inputs, detector, bias, steps=48, seed=1)
    prompt_len = inputs["input_ids"].shape[1]
    scores = torch.stack(out.scores, dim=1)
    multi = 0
    for row, report in enumerate(detector.report(out, eos_token_id=tok.eos_token_id)):
        generated = out.sequences[row, prompt_len : prompt_len + len(report.token_ids)].tolist()
        check_report(report, rules, generated, scores[row, : len(generated)], threshold=4)
        multi += sum(e.recognised_at > e.position for e in report.events)
    assert multi >= 2


def test_order_with_tip_processor(setup):
    tok, model, vocab, inputs = setup
    tip = TIPLogitsProcessor(vocab, alpha=3.0, beta=16, scope="all")
    before, after = AbandonmentDetector(vocab, scope="all"), AbandonmentDetector(vocab, scope="all")
    common = dict(max_new_tokens=32, do_sample=False, sequence_bias={(i,): 2.0 for i in SWITCH_IDS})
    only_tip = generate(model, tok, inputs, [tip], output_logits=True, output_scores=True, **common)
    both = generate(model, tok, inputs, [before, tip, after], **common)
    assert torch.equal(only_tip.sequences, both.sequences)
    # Before TIP: the model's (biased) distribution; after TIP: the penalised one decoding uses.
    scores = torch.stack(only_tip.scores, dim=1)
    torch.testing.assert_close(after.entropy, entropy(scores), rtol=5e-5, atol=1e-5)
    assert not torch.allclose(before.entropy, after.entropy)
    assert (after.switch_mass <= before.switch_mass + 1e-6).all()


def test_beam_search_is_refused_and_recording_restarts(setup):
    tok, model, vocab, inputs = setup
    detector = AbandonmentDetector(vocab, scope="all")
    with pytest.raises(ValueError, match="recorded nothing"):
        detector.report(inputs["input_ids"])
    out = generate(model, tok, inputs, [detector], max_new_tokens=6, num_beams=2, do_sample=False)
    with pytest.raises(ValueError, match="greedy search and sampling only"):
        detector.report(out)
    # A new generate call (different shapes) starts a new recording.
    one = tok(["Hi"], return_tensors="pt")
    out = generate(model, tok, one, [detector], max_new_tokens=5, do_sample=False)
    assert detector.steps == 5 and len(detector.report(out)) == 1
    with pytest.raises(ValueError, match="`premature_threshold`"):
        AbandonmentDetector(vocab, premature_threshold=-1)
