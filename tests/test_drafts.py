"""The core's draft chain (`tip_decode/core/interventions/drafts.py`) without an engine.

Its steps against a one-token-at-a-time run are fuzzed through vLLM's own interfaces in
tests/test_vllm_speculative.py; here: the row layout, starting from a token history, and that a
whole step with draft rows never reads back to the host.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import load_hf_tokenizer
from test_interventions import lifecycle_settings

from tip_decode.core.config import TIPConfig
from tip_decode.core.interventions import BudgetConfig, GatedConfig, InterventionSet, InterventionState, plan_for
from tip_decode.core.interventions.drafts import INVALID_POSITION, DraftLayout, StepRows, apply_step, forget_drafts, start_from_history


@pytest.mark.parametrize(("capacity", "drafts"), [(1, 0), (3, 2), (4, 5)])
def test_committed_draft_scratch_and_discard_rows_never_overlap(capacity, drafts):
    layout = DraftLayout(capacity, drafts)
    slots = torch.arange(capacity)
    draft_rows = [layout.draft_row(slots, torch.full_like(slots, j)) for j in range(1, drafts + 1)]
    scratch = list(range(layout.scratch_base, layout.scratch_base + layout.scratch_rows))
    rows = [*range(capacity), *(int(r) for rows in draft_rows for r in rows), *scratch, layout.discard]
    assert sorted(rows) == list(range(layout.rows))
    assert layout.scratch_rows == capacity * (1 + drafts)  # one per request and draft position


def test_starting_from_a_history_equals_feeding_its_tokens_one_by_one():
    qwen = load_hf_tokenizer("qwen3")
    settings = lifecycle_settings()
    tables = plan_for(qwen, settings).tables(151936, "cpu")
    texts = ("<think> a b Alternatively c d", " x y z but w", "<think> Hmm so H mm</think> ok")
    prompts = [qwen.encode(t, add_special_tokens=False) for t in texts]
    outputs = [prompts[2][:4], prompts[0][2:], []]
    layout = DraftLayout(4, 2)
    history = torch.full((4, 32), -1, dtype=torch.long)
    for slot, (prompt, output) in enumerate(zip(prompts, outputs), start=1):
        history[slot, : len(prompt) + len(output)] = torch.tensor(prompt + output)
    state = InterventionState(tables, layout.rows, host=False)
    slots = torch.tensor([1, 2, 3])
    prompt_len = np.array([len(p) for p in prompts])
    output_len = np.array([len(o) for o in outputs])
    output_len[1] += 2  # the last two are placeholders (-1): the replay stops before them
    start_from_history(state, layout, slots, [settings] * 3, history, prompt_len, output_len)
    expected = InterventionState(tables, 4, host=False)
    expected.start_rows([1, 2, 3], [settings] * 3, [True, False, False], [len(prompts[0]) - 1, 0, 0])
    for step in range(max(len(o) for o in outputs)):
        rows = [slot for slot, output in enumerate(outputs, start=1) if step < len(output)]
        expected.update(torch.tensor([outputs[slot - 1][step] for slot in rows]), rows=torch.tensor(rows))
    assert torch.equal(state.storage[1:4], expected.storage[1:4])
    assert (state.ints[layout.draft_row(slots[:, None], torch.tensor([[1, 2]])).reshape(-1), state.layout.POSITION] == INVALID_POSITION).all()
    forget_drafts(state, DraftLayout(4, 0), slots)  # no drafts: nothing to forget, nothing written
    assert torch.equal(state.storage[1:4], expected.storage[1:4])


def test_a_step_with_draft_rows_never_reads_back_to_the_host():
    """On "meta" any .item(), .tolist(), tensor truth test or data-dependent shape raises."""
    qwen = load_hf_tokenizer("qwen3")
    settings = InterventionSet(
        tip=TIPConfig(alpha=2.0, beta=6, triggers=("alternatively",)), gated=GatedConfig(), budget=BudgetConfig(min=3, max=12, word=" Hmm, wait")
    )
    tables = plan_for(qwen, settings).tables(151936, "meta")
    layout = DraftLayout(2, 3)
    state = InterventionState(tables, layout.rows)
    meta = {"device": "meta", "dtype": torch.long}
    slots = torch.empty(6, **meta)
    history = torch.empty(2, 64, **meta)
    start_from_history(state, layout, torch.empty(2, **meta), [settings] * 2, history, np.array([5, 7]), np.array([0, 3]))
    step = StepRows(slots, torch.empty(6, **meta), torch.empty(6, **meta), torch.empty(6, **meta), torch.empty(6, **meta), history, resume_depth=3, depth=3)
    apply_step(state, layout, torch.empty(6, 151936, device="meta"), step, keep_alive=True)
