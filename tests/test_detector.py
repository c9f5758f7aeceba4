"""AbandonmentDetector inside a real `generate` on a tiny random-weight Qwen2 (real qwen3 tokenizer)."""

from __future__ import annotations

import pytest
import torch

from tip_decode import SwitchVocabulary
from tip_decode.analysis import analyze_response
from tip_decode.hf import AbandonmentDetector, TIPLogitsProcessor

from conftest import load_hf_tokenizer

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


def test_switch_events_equal_offline_segmentation(setup):
    tok, model, vocab, inputs = setup
    detector = AbandonmentDetector(vocab, scope="all", premature_threshold=4, confident_entropy=5.0)
    torch.manual_seed(0)
    out = generate(model, tok, inputs, [detector], max_new_tokens=48, do_sample=True, top_k=0, top_p=1.0,
                   temperature=1.0, sequence_bias=BIAS, output_scores=True)
    reports = detector.report(out, eos_token_id=tok.eos_token_id)
    prompt_len = inputs["input_ids"].shape[1]
    total = 0
    for row, report in enumerate(reports):
        generated = out.sequences[row, prompt_len:].tolist()
        assert report.token_ids == generated[: len(report.token_ids)]
        offline = analyze_response(report.token_ids, vocabulary=vocab, scope="all", premature_threshold=4)
        assert [e.position for e in report.events] == offline.switch_positions
        assert [e.abandoned_length for e in report.events] == [s.abandoned_length for s in offline.switches]
        assert [e.premature for e in report.events] == [s.premature for s in offline.switches]
        assert [(t.start, t.end) for t in report.thoughts] == [(t.start, t.end) for t in offline.thoughts]
        for event in report.events:
            thought = next(t for t in report.thoughts if t.end == event.position)
            assert event.abandoned_mean_entropy == pytest.approx(thought.mean_entropy)
            # A switch as the first token abandons an empty thought: no entropy, so confidence is unknown.
            assert event.confident == (None if thought.mean_entropy is None else thought.mean_entropy < 5.0)
            # The step that chose the switch token had real mass on switch tokens.
            assert thought.switch_mass_before == event.switch_mass_at_switch > 0.01
        total += len(report.events)
    assert total >= 3
    # Sampling warpers are identity here, so output_scores is what the detector saw.
    torch.testing.assert_close(detector.entropy, entropy(torch.stack(out.scores, dim=1)), rtol=5e-5, atol=1e-5)
    probs = torch.softmax(torch.stack(out.scores, dim=1).float(), dim=-1)
    torch.testing.assert_close(detector.switch_mass, probs[..., list(vocab.token_ids)].sum(-1), rtol=1e-4, atol=1e-6)


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
