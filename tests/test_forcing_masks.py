"""Forcing meets another stage's mask, in the core and through Hugging Face `generate` (issue #22).

A token the budget would force (the end marker at the maximum, the word below the minimum) that
arrives as -inf, because a grammar, `bad_words_ids` or another processor banned it, leaves the row
exactly as it arrived: no forcing, no bias (docs/interventions.md, "Decision (forcing meets a
mask)"). `keep_alive` also leaves a row as it arrived when the step's bans would remove its last
finite logit. The vLLM engine runs are in tests/test_vllm_engine.py (JSON schema with a budget).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tip_decode.core.interventions import FORCED_LOGIT, InterventionSet, InterventionState, plan_for

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tip_decode" / "demo" / "model"
THINK_START, THINK_END, EOS, WAIT = 5, 6, 2, 11  # the demo tokenizer's ids


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(DEMO))


def state_for(tokenizer, mapping: dict, rows: int, host: bool) -> InterventionState:
    settings = InterventionSet.from_mapping(mapping)
    tables = plan_for(tokenizer, settings).tables(64, "cpu")
    state = InterventionState(tables, rows, host=host)
    state.start_rows(list(range(rows)), [settings] * rows, [True] * rows, [0] * rows)
    return state


@pytest.mark.parametrize("host", [True, False])
def test_a_forced_token_that_arrives_banned_leaves_the_row(tokenizer, host):
    state = state_for(tokenizer, {"budget_max": 0, "nowait": 1, "nowait_scope": "all"}, 2, host)
    logits = torch.randn(2, 64)
    logits[0, THINK_END] = -math.inf  # row 0: a grammar bans the end marker; row 1: free
    arrived = logits.clone()
    out = state.apply(logits)
    assert torch.equal(out[0], arrived[0])  # left as it arrived: no forcing and no NoWait ban either
    assert out[1, THINK_END] == FORCED_LOGIT and out[1, WAIT] == -math.inf
    assert not torch.isnan(out).any()


def test_keep_alive_leaves_a_row_the_bans_would_empty(tokenizer):
    state = state_for(tokenizer, {"budget_min": 10}, 2, host=True)  # bans </think> and the end of sequence
    logits = torch.full((2, 64), -math.inf)
    logits[:, [EOS, THINK_END]] = torch.tensor([1.0, 2.0])  # only what a grammar allows at the end of a JSON object
    logits[1, 20] = 0.5  # row 1 has another allowed token
    arrived = logits.clone()
    out = state.apply(logits.clone(), keep_alive=True)
    assert torch.equal(out[0], arrived[0])
    assert out[1, EOS] == -math.inf and out[1, THINK_END] == -math.inf and out[1, 20] == 0.5
    # Without keep_alive the bans stand (the caller knows no other stage restricts the vocabulary).
    assert (state.apply(logits.clone())[0] == -math.inf).all()


def test_hf_generate_leaves_a_token_bad_words_ban(tokenizer):
    """`bad_words_ids` bans </think> (HF runs it before user processors); the budget's maximum would
    force it: the thinking goes on instead of reviving the banned token, and no row is NaN."""
    from transformers import AutoModelForCausalLM

    from tip_decode.hf import ReasoningInterventionsProcessor

    model = AutoModelForCausalLM.from_pretrained(str(DEMO)).eval()
    prompt = torch.tensor([[3, 7, 8, 4, THINK_START]])  # <|user|> start goal <|assistant|> <think>
    kwargs = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        forced = model.generate(prompt, logits_processor=[ReasoningInterventionsProcessor(tokenizer, {"budget_max": 2})], **kwargs)[0, 5:].tolist()
        banned = model.generate(
            prompt,
            logits_processor=[ReasoningInterventionsProcessor(tokenizer, {"budget_max": 2})],
            bad_words_ids=[[THINK_END]],
            output_scores=True,
            return_dict_in_generate=True,
            **kwargs,
        )
    assert forced[2] == THINK_END  # the budget alone ends the thinking at 2 tokens
    tokens = banned.sequences[0, 5:].tolist()
    assert THINK_END not in tokens, tokens
    assert all(not torch.isnan(s).any() and torch.isfinite(s).any() for s in banned.scores)
