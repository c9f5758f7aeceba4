"""Every intervention through real Hugging Face `generate`, checked against the slow reference.

A tiny random-weight Qwen2 (real qwen3 tokenizer) generates with `ReasoningInterventionsProcessor`
wrapped in a recorder that keeps, for every call, the input ids, the scores the processor was given
(the raw logits the reference reads for `gated`'s entropy and `budget`'s argmax) and the scores it
returned. For every call and every row, the returned scores must be the raw scores plus exactly the
bias of tests/reference_interventions.py (forcing included), computed from that row's own history:
batches with prompts of different lengths (left padding), sampled rows sharing a prompt
(`num_return_sequences`) and beam search (rows reordered between calls).
"""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import build_tiny_qwen2
from reference_interventions import FORCED, Reference, Row
from transformers import AutoTokenizer, LogitsProcessor

from tip_decode.core.interventions import BudgetConfig, InterventionSet
from tip_decode.harness.backend_base import load_hf_causal_lm
from tip_decode.hf import ReasoningInterventionsProcessor, TIPLogitsProcessor

NEW_TOKENS = 14
THINK_START, THINK_END = 151667, 151668
PROMPTS = [
    "<|im_start|>user\nSolve 2x + 3 = 11.<|im_end|>\n<|im_start|>assistant\n<think>\n",  # open, one thinking token
    "Question: how many primes are below 100? Answer: <think>",  # open, nothing thought yet
    "The quick brown fox",  # no think block: think-scoped rules and the budget never act
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # Scaled logits: entropies spread over 0.2-3.7 nats, so that gated's gate opens and closes.
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2-scaled"), logit_scale=30.0)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="module")
def model(model_dir):
    return load_hf_causal_lm(str(model_dir), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def words(model, tokenizer):
    """Words the tiny model says without interventions: as triggers and keywords they fire."""
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    out = model.generate(**batch, do_sample=False, max_new_tokens=NEW_TOKENS, pad_token_id=tokenizer.pad_token_id)
    found: list[str] = []
    for token in out[:, batch["input_ids"].shape[1] :].flatten().tolist():
        text = tokenizer.decode([token]).strip().lower()
        if len(text) >= 3 and text.isascii() and text.isalpha() and text not in found:
            found.append(text)
    assert len(found) >= 3, found
    return found[:4]


def settings_for(name: str, words: list[str]) -> InterventionSet:
    tip = {"tip_alpha": 0.75, "tip_beta": 5, "tip_triggers": words, "tip_scope": "all"}
    gated = {"gated_alpha": 0.5, "gated_beta": 6, "gated_triggers": words, "gated_scope": "all", "gated_threshold": 1.8}
    table = {
        "tip": tip,
        "tip_ban": {**tip, "tip_alpha": float("inf")},
        "nowait": {"nowait_keywords": [*words, "wait"], "nowait_scope": "auto"},
        "cyclic": {"cyclic_amplitude": 0.4, "cyclic_period": 6, "cyclic_words": ["Wait", "But", "Alternatively"], "cyclic_scope": "all"},
        "budget": {"budget_min": 6, "budget_max": 9},
        "gated": gated,
        # The tiny model's margins max z - z(</think>) spread over 23-40 and its confidences over 3.5-7.5.
        "thinkbrake": {"thinkbrake_tau": 34.0, "thinkbrake_boundary": words},
        "deepconf": {"deepconf_threshold": 5.0, "deepconf_window": 3},
        "thinkbrake+deepconf+budget": {
            "thinkbrake_tau": 60.0,
            "thinkbrake_boundary": words,
            "thinkbrake_temperature": 2.0,
            "deepconf_threshold": 5.0,
            "deepconf_window": 2,
            "budget_min": 4,
            "budget_max": 12,
        },  # fmt: skip
        "combination": {
            **tip,
            "nowait_keywords": words[:2],
            "cyclic_amplitude": 0.3,
            "cyclic_period": 4,
            "cyclic_words": ["Wait", "But"],
            **{**gated, "gated_triggers": words[1:]},
            "budget_min": 5,
            "budget_max": 11,
        },
        # Issue 21's interventions: the words the model says are judged by affirm and trigger inject.
        "affirm": {"affirm_tau": 0.5, "affirm_words": [w.capitalize() for w in words] + words},
        "alphaone": {"alphaone_moment": 5, "alphaone_temperature": 0.7},
        "inject": {"inject_text": " I should be brief.", "inject_after": words[0]},
        "nothinking": {"nothinking": 1},
        # inject writes a delimiter, after which AlphaOne may force its word (seed 2 draws it).
        "next_combination": {
            "inject_text": " Fine.\n\n",
            "alphaone_moment": 9,
            "alphaone_seed": 2,
            "affirm_words": words[1:],
            "affirm_tau": 0.3,
            "tip_alpha": 0.75,
            "tip_beta": 5,
            "tip_triggers": words,
            "budget_max": 12,
        },
    }
    return InterventionSet.from_mapping(table[name])


class Recorder(LogitsProcessor):
    """Runs `processor` and keeps (input ids, scores given, scores returned) of every call."""

    def __init__(self, processor: LogitsProcessor) -> None:
        self.processor = processor
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        given = scores.clone()
        out = self.processor(input_ids, scores)
        assert torch.equal(scores, given), "the processor modified the scores it was given"
        self.calls.append((input_ids.clone(), given, out.clone()))
        return out


def prompt_facts(prompt_ids: list[int]) -> tuple[bool, int]:
    last = {token: i for i, token in enumerate(prompt_ids)}
    opened = last.get(THINK_START, -1) > last.get(THINK_END, -1)
    return opened, (len(prompt_ids) - last[THINK_START] - 1 if opened else 0)


def check_against_reference(reference: Reference, settings: InterventionSet, calls, prompt_length: int) -> tuple[int, int]:
    """Compare every call's returned scores with the reference; returns (rows compared, rows changed)."""
    # Entropy and argmax of every raw row of every call, and each call's rows by their ids, so that a
    # row's history finds the raw scores of its ancestors (beam search moves rows between calls).
    entropies = [[None] * ids.shape[0] for ids, _, _ in calls]
    tops = [raw.argmax(dim=-1).tolist() for _, raw, _ in calls]
    rows_by_ids = [{tuple(r): i for i, r in enumerate(ids.tolist())} for ids, _, _ in calls]

    def entropy(step: int, row: int) -> float:
        if entropies[step][row] is None:
            entropies[step][row] = _entropy(calls[step][1][row])
        return entropies[step][row]

    compared = changed = 0
    for t, (ids, raw, out) in enumerate(calls):
        assert ids.shape[1] == prompt_length + t
        for b, history in enumerate(ids.tolist()):
            ancestors = [rows_by_ids[s][tuple(history[: prompt_length + s])] for s in range(t + 1)]
            opened, thinking = prompt_facts(history[:prompt_length])
            row = Row(opened, thinking, history[prompt_length:])
            row.entropies = {s: entropy(s, a) for s, a in enumerate(ancestors)} if settings.gated else {}
            row.tops = {s: tops[s][a] for s, a in enumerate(ancestors)}
            row.logits = {s: calls[s][1][a] for s, a in enumerate(ancestors)}  # the raw rows of rules that read them
            bias, forced, uncertain = reference.expected(settings, row, t)
            if uncertain:
                continue
            want = raw[b].clone()
            for token, value in bias.items():
                if value != 0:
                    want[token] = want[token] + torch.tensor(value, dtype=want.dtype)
            if forced is not None:
                want[forced] = FORCED
            torch.testing.assert_close(out[b], want, atol=1e-4, rtol=0, msg=lambda m, t=t, b=b: f"call {t}, row {b}: {m}")
            compared += 1
            changed += bool((out[b] != raw[b]).any())
    return compared, changed


def _entropy(logits: torch.Tensor) -> float:
    probs = torch.softmax(logits.double(), dim=-1)
    keep = probs > 0
    return float(-(probs[keep] * probs[keep].log()).sum())


#: Issue 21's interventions, alone and together.
NEXT = ["affirm", "alphaone", "inject", "nothinking", "next_combination"]

MODES = {
    # prompts of three lengths, left padded
    "greedy": dict(do_sample=False),
    # two prompts, three sampled rows each: rows sharing a prompt are tracked, not reordered
    "sampling": dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, num_return_sequences=3),
    # beams reorder rows between calls
    "beams": dict(do_sample=False, num_beams=3, num_return_sequences=2),
}


def run(model, tokenizer, processor, mode: str, stops: bool = False):
    """`stops`: the end of sequence is not banned until NEW_TOKENS (DeepConf forces it), so rows
    finish early and `generate` feeds them padding."""
    prompts = PROMPTS if mode == "greedy" else PROMPTS[:2]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    recorder = Recorder(processor)
    torch.manual_seed(1)
    model.generate(
        **batch,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=0 if stops else NEW_TOKENS,
        logits_processor=[recorder],
        pad_token_id=tokenizer.pad_token_id,
        **MODES[mode],
    )
    return recorder.calls, batch["input_ids"].shape[1]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(
    "name", ["tip", "tip_ban", "nowait", "cyclic", "budget", "gated", "combination", "thinkbrake", "deepconf", "thinkbrake+deepconf+budget", *NEXT]
)
def test_generate_matches_the_reference(model, tokenizer, words, name, mode):
    settings = settings_for(name, words)
    processor = ReasoningInterventionsProcessor(tokenizer, settings)
    calls, prompt_length = run(model, tokenizer, processor, mode, stops="deepconf" in name)
    compared, changed = check_against_reference(Reference(tokenizer, gate_margin=1e-3), settings, calls, prompt_length)
    rows = sum(ids.shape[0] for ids, _, _ in calls)
    assert compared >= rows * 3 // 4, (compared, rows)
    # A brake closes its row's reasoning for good: ThinkBrake changes at most one call per row.
    assert changed >= (2 if name == "thinkbrake" else 3), f"{name} changed only {changed} rows: the test would not see a wrong bias"


def test_a_wrong_bias_is_caught(model, tokenizer, words):
    """The check itself fails when the processor's settings are not the reference's."""
    calls, prompt_length = run(model, tokenizer, ReasoningInterventionsProcessor(tokenizer, settings_for("combination", words)), "greedy")
    other = InterventionSet.from_mapping({**settings_for("combination", words).to_mapping(), "cyclic_amplitude": 0.31})
    with pytest.raises(AssertionError):
        check_against_reference(Reference(tokenizer, gate_margin=1e-3), other, calls, prompt_length)


def test_tip_processor_is_the_tip_only_interventions_processor(model, tokenizer, words):
    """TIPLogitsProcessor and ReasoningInterventionsProcessor(tip=...) return the same scores, bit for bit."""
    settings = settings_for("tip", words)
    tip = TIPLogitsProcessor.from_config(tokenizer, settings.tip)
    first, _ = run(model, tokenizer, tip, "sampling")
    second, _ = run(model, tokenizer, ReasoningInterventionsProcessor(tokenizer, tip=settings.tip), "sampling")
    assert len(first) == len(second)
    for (ids_a, _, out_a), (ids_b, _, out_b) in zip(first, second, strict=True):
        assert torch.equal(ids_a, ids_b) and torch.equal(out_a, out_b)


def test_constructor_arguments(tokenizer):
    by_keywords = ReasoningInterventionsProcessor(tokenizer, budget=BudgetConfig(min=4), nowait=InterventionSet.from_mapping({"nowait": 1}).nowait)
    assert by_keywords.interventions.names == ("nowait", "budget")
    by_mapping = ReasoningInterventionsProcessor(tokenizer, {"nowait": 1, "budget_min": 4})
    assert by_mapping.interventions == by_keywords.interventions
    with pytest.raises(ValueError, match="not both"):
        ReasoningInterventionsProcessor(tokenizer, {"nowait": 1}, budget=BudgetConfig(min=4))
    with pytest.raises(TypeError, match="InterventionSet or a mapping"):
        ReasoningInterventionsProcessor(tokenizer, ["nowait"])
    with pytest.raises(ValueError, match="budget_mni"):
        ReasoningInterventionsProcessor(tokenizer, {"budget_mni": 4})
    with pytest.raises(TypeError):
        ReasoningInterventionsProcessor("not a tokenizer", {"nowait": 1})
    scores = torch.randn(2, len(tokenizer))
    off = ReasoningInterventionsProcessor(tokenizer)
    out = off(torch.zeros((2, 3), dtype=torch.long), scores)
    assert torch.equal(out, scores) and out is not scores


class StandInGraph:
    """Replays the captured step function ("right") or does nothing ("stale"): a CUDA graph needs a
    GPU, but the static buffers it runs on and the check against the eager step run anywhere."""

    def __init__(self, step, behaviour: str) -> None:
        self.step, self.behaviour, self.replays = step, behaviour, 0

    def replay(self) -> None:
        self.replays += 1
        if self.behaviour == "right":
            self.step()


@pytest.mark.parametrize("name", ["combination", "next_combination"])
@pytest.mark.parametrize("mode", ["greedy", "beams"])
@pytest.mark.parametrize("behaviour", ["right", "stale"])
def test_the_graph_step_covers_rules_that_read_logits(model, tokenizer, words, mode, behaviour, name, caplog):
    """The graph step (whole logits rows copied into a static buffer for gated, budget, affirm and
    AlphaOne) gives the reference's scores; a wrong graph is caught by the check, never reaches the
    scores, and the processor goes on eagerly with one warning."""
    settings = settings_for(name, words)
    processor = ReasoningInterventionsProcessor(tokenizer, settings)
    graphs: list[StandInGraph] = []

    def factory(step, device):
        graphs.append(StandInGraph(step, behaviour))
        return graphs[-1]

    processor.graph_factory = factory
    with caplog.at_level(logging.WARNING, logger="tip_decode.adapters.hf"):
        calls, prompt_length = run(model, tokenizer, processor, mode)
    compared, changed = check_against_reference(Reference(tokenizer, gate_margin=1e-3), settings, calls, prompt_length)
    assert changed >= 3
    assert len(graphs) == 1
    if behaviour == "right":
        assert processor.graph_active and not caplog.records
        # every step but the one that reads the check's verdict (eager) replays the graph
        assert graphs[0].replays == len(calls) - 2
    else:
        assert not processor.graph_active
        assert [r.getMessage() for r in caplog.records if "differed" in r.getMessage()]
