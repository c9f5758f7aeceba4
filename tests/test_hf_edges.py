"""`TIPLogitsProcessor` at the edges of its input: the largest beta, one beyond it, and a +inf logit under a ban.

Kept apart from tests/test_hf.py (the processor's bookkeeping) because these check the library-level
validation and the contract's "never NaN" on the HF path.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import load_hf_tokenizer
from transformers import AutoModelForCausalLM

from tip_decode import SwitchVocabulary
from tip_decode.hf import TIPLogitsProcessor


@pytest.fixture(scope="module")
def model(tiny_qwen2_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).eval()


def test_largest_beta_runs_inside_generate(model):
    """The largest beta (2**31 - 1) keeps the window open and decodes exactly like a very large beta;
    one more (10**30 from an API call once overflowed inside generate, then was clamped silently) is
    refused when the processor is built, before generate."""
    tok = load_hf_tokenizer("qwen3")
    inputs = tok(["So x = 2.\n\n"], return_tensors="pt")
    huge = TIPLogitsProcessor.from_tokenizer(tok, alpha=3.0, beta=2**31 - 1, scope="all")
    large = TIPLogitsProcessor.from_tokenizer(tok, alpha=3.0, beta=10**6, scope="all")
    common = dict(max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    out = model.generate(**inputs, logits_processor=[huge], **common)
    assert torch.equal(out, model.generate(**inputs, logits_processor=[large], **common))
    for beta in (2**31, 10**30):
        with pytest.raises(ValueError, match="has to be at most 2147483647"):
            TIPLogitsProcessor.from_tokenizer(tok, alpha=3.0, beta=beta, scope="all")


def test_infinite_alpha_on_a_plus_inf_logit_is_a_ban_not_nan():
    tok = load_hf_tokenizer("qwen3")
    tip = TIPLogitsProcessor.from_tokenizer(tok, alpha=math.inf, beta=600, scope="all")
    hit = SwitchVocabulary.from_tokenizer(tok).token_ids[0]
    scores = torch.zeros(1, 151936)
    scores[0, hit] = math.inf
    out = tip(torch.tensor([[tok.encode("x", add_special_tokens=False)[0]]]), scores)
    assert not torch.isnan(out).any() and out[0, hit] == -math.inf
