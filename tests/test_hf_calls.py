"""One TIPLogitsProcessor across many real `generate` calls; rows that do not move; the graph check.

- Any sequence of `generate` calls on one instance gives, call by call, exactly what a new instance
  gives (greedy, sampling with `num_return_sequences`, beam search, assisted decoding, a real
  multi-turn chat through the Qwen3 chat template), and every call equals the slow reference.
- Rows with prompts of their own are never tracked for reordering: memory stays O(rows).
- A captured step that disagrees with the eager step is caught in the first steps of a
  generation, never reaches the scores, and switches the instance to eager steps with one
  warning. A real CUDA graph needs a GPU (benchmarks/gpu_check.sh runs it); here stand-in
  graphs replay the step wrongly, which is what the check must catch.
"""

from __future__ import annotations

import logging
import random

import pytest
import torch
from conftest import build_tiny_qwen2, load_hf_tokenizer
from reference import penalised
from test_hf import PROMPTS, TRIGGERS, Recorder, bias, check_against_reference, encode, prompt_open
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

from tip_decode.adapters.hf import GRAPH_CHECK_STEPS
from tip_decode.core.interventions.plan import PlanTables
from tip_decode.core.vocabulary import SwitchVocabulary
from tip_decode.hf import TIPLogitsProcessor

QUESTION = "Question: what is seven times six? Think step by step."
OTHER = "Solve 2+3.<think>\n"


@pytest.fixture(scope="module")
def tokenizer():
    return load_hf_tokenizer("qwen3")


@pytest.fixture(scope="module")
def model(tiny_qwen2_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).eval()


@pytest.fixture(scope="module")
def assistant(tmp_path_factory):
    path = build_tiny_qwen2(tmp_path_factory.mktemp("assistant"), seed=7)
    return AutoModelForCausalLM.from_pretrained(path).eval()


def fresh_copy(tip: TIPLogitsProcessor) -> TIPLogitsProcessor:
    return TIPLogitsProcessor(tip.vocabulary, alpha=tip.config.alpha, beta=tip.config.beta, scope=tip.config.scope)


def generate(model, tokenizer, tip, inputs, seed=0, first=(), **kwargs):
    before, after = Recorder(), Recorder()
    torch.manual_seed(seed)
    out = model.generate(
        **inputs,
        logits_processor=LogitsProcessorList([*first, before, tip, after]),
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    return out, before, after


def assert_same_as_fresh(model, tokenizer, tip, inputs, seed=0, first=(), label="", **kwargs):
    """Run one call on `tip` and on a new instance; every call of the processor must agree."""
    out, before, after = generate(model, tokenizer, tip, inputs, seed, first, **kwargs)
    fresh_out, _, fresh_after = generate(model, tokenizer, fresh_copy(tip), inputs, seed, first, **kwargs)
    assert len(after.calls) == len(fresh_after.calls)
    for step, ((ids, scores), (fresh_ids, fresh_scores)) in enumerate(zip(after.calls, fresh_after.calls)):
        assert torch.equal(ids, fresh_ids), f"{label} call {step}: inputs differ"
        assert torch.equal(scores, fresh_scores), f"{label} call {step}: processed scores differ from a new instance's"
    assert torch.equal(out, fresh_out)
    check_against_reference(before, after, tip, inputs["input_ids"].shape[1])
    return out, before


def reordered(before: Recorder) -> bool:
    return any(not torch.equal(ids[:, :-1], prev) for (prev, _), (ids, _) in zip(before.calls, before.calls[1:]))


@pytest.mark.parametrize("scope", ["think", "all"])
def test_any_sequence_of_generate_calls_equals_new_instances(model, tokenizer, assistant, scope):
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=2.0, beta=5, triggers=TRIGGERS, scope=scope)
    longer = QUESTION + " Then check it twice."
    question_ids = encode(tokenizer, [QUESTION])["input_ids"]
    longer_ids = encode(tokenizer, [longer])["input_ids"]
    # The prompt of the third call starts with the second call's prompt and is shorter than that
    # prompt plus its output: the shape of an assisted-decoding rollback, but a new generation.
    assert torch.equal(longer_ids[:, : question_ids.shape[1]], question_ids)
    assert question_ids.shape[1] < longer_ids.shape[1] < question_ids.shape[1] + 30
    calls = [
        ("greedy batch", PROMPTS, dict(do_sample=False, max_new_tokens=20)),
        ("one row", [QUESTION], dict(do_sample=False, max_new_tokens=30)),
        ("one row, prompt extends the last one", [longer], dict(do_sample=False, max_new_tokens=20)),
        ("same prompt again", [longer], dict(do_sample=False, max_new_tokens=20)),
        ("sampling x3", PROMPTS[:2], dict(do_sample=True, num_return_sequences=3, top_k=0, max_new_tokens=20)),
        ("beam search", PROMPTS[:2], dict(num_beams=4, num_return_sequences=2, do_sample=False, max_new_tokens=20)),
        ("assisted", [QUESTION], dict(assistant_model=assistant, do_sample=False, max_new_tokens=25)),
        ("assisted, prompt extends the last one", [longer], dict(assistant_model=assistant, do_sample=False, max_new_tokens=25)),
        ("beam search, a prompt twice", [QUESTION, OTHER, QUESTION], dict(num_beams=3, do_sample=True, max_new_tokens=20)),
        ("sampling one row", [QUESTION], dict(do_sample=True, top_k=0, max_new_tokens=20)),
    ]
    for seed, (name, prompts, kwargs) in enumerate(calls):
        inputs = encode(tokenizer, prompts)
        _, before = assert_same_as_fresh(model, tokenizer, tip, inputs, seed, (bias(tokenizer),), label=name, **kwargs)
        if "beam" in name:
            assert reordered(before), name  # beam search really moved rows
        if "assisted" in name:
            lengths = [ids.shape[1] for ids, _ in before.calls]
            assert any(b <= a for a, b in zip(lengths, lengths[1:])), name  # real rollbacks were seen


class Script(LogitsProcessor):
    """Makes the model write a given text: +50 on the scripted token of each step (other logits
    stay finite, so the penalty on every switch token is still checked)."""

    def __init__(self, ids: list[int], prompt_len: int) -> None:
        self.ids, self.prompt_len = ids, prompt_len

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        out = scores.clone()
        if step < len(self.ids):
            out[:, self.ids[step]] += 50.0
        return out


@pytest.mark.parametrize("scope", ["think", "all"])
def test_multi_turn_chat_on_one_processor_equals_new_instances(model, tokenizer, scope):
    """The ordinary chat loop of a reasoning model: the template drops earlier turns' reasoning,
    so each new prompt starts with the last one and is shorter than it plus its output."""
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=8, triggers=TRIGGERS, scope=scope)
    messages = [{"role": "user", "content": "What is 2+3?"}]
    previous: tuple[int, int] | None = None  # (prompt length, prompt + output length)
    for turn, answer in enumerate(["5", "8", "12"]):
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        prompt_len = inputs["input_ids"].shape[1]
        if previous is not None:
            assert previous[0] < prompt_len < previous[1]
        text = (
            "<think>\nOkay, let me add. Alternatively, hmm, count up. Wait, so it is "
            f"{answer}. Alternatively check: {answer}.\n</think>\n\nThe answer is {answer}.<|im_end|>"
        )
        script = tokenizer.encode(text, add_special_tokens=False)
        out, before = assert_same_as_fresh(
            model,
            tokenizer,
            tip,
            inputs,
            turn,
            (Script(script, prompt_len),),
            label=f"turn {turn + 1}",
            do_sample=False,
            max_new_tokens=len(script),
        )
        generated = out[0, prompt_len:]
        assert generated.tolist() == script
        previous = (prompt_len, out.shape[1])
        messages += [
            {"role": "assistant", "content": tokenizer.decode(generated, skip_special_tokens=True)},
            {"role": "user", "content": "And then?"},
        ]


def test_a_call_one_token_longer_than_the_last_input_is_taken_as_the_next_step(model, tokenizer):
    """The documented undetectable case: feeding a call's output back unchanged is, token for
    token, the next step of that generation. `reset()` makes the call a new generation."""
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=2.0, beta=3, triggers=TRIGGERS, scope="all")
    inputs = encode(tokenizer, [QUESTION])
    out, _, _ = generate(model, tokenizer, tip, inputs, do_sample=False, max_new_tokens=6)
    again = {"input_ids": out, "attention_mask": torch.ones_like(out)}
    _, _, continued = generate(model, tokenizer, tip, again, do_sample=False, max_new_tokens=4)
    _, _, fresh = generate(model, tokenizer, fresh_copy(tip), again, do_sample=False, max_new_tokens=4)
    assert not torch.equal(continued.calls[0][1], fresh.calls[0][1])  # window of the old generation
    tip.reset()
    _, _, after_reset = generate(model, tokenizer, tip, again, do_sample=False, max_new_tokens=4)
    for (_, a), (_, b) in zip(after_reset.calls, fresh.calls):
        assert torch.equal(a, b)


def held_tensor_bytes(obj, seen=None) -> int:
    """Bytes of the tensors an object holds (lookup tables and the vocabulary excluded)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (PlanTables, SwitchVocabulary)):
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        # Views of one storage (the state's `ints` and `floats`) count once.
        storage = obj.untyped_storage()
        if ("storage", storage.data_ptr()) in seen:
            return 0
        seen.add(("storage", storage.data_ptr()))
        return storage.nbytes()
    if isinstance(obj, dict):
        return sum(held_tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(held_tensor_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith("tip_decode"):
        return sum(held_tensor_bytes(v, seen) for v in vars(obj).values())
    return 0


@pytest.mark.parametrize("rows", [256])
def test_rows_with_their_own_prompts_cost_linear_memory(tokenizer, rows):
    """Sampling and greedy never move rows: no pairwise table (today's 256 rows held 128 MiB)."""
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=600, triggers="reflection", scope="all")
    torch.manual_seed(0)
    ids = torch.randint(0, 150_000, (rows, 48))
    scores = torch.randn(rows, 151_936)
    for _ in range(4):
        out = tip(ids, scores)
        ids = torch.cat((ids, torch.randint(0, 150_000, (rows, 1))), dim=1)
    assert out.shape == scores.shape
    assert held_tensor_bytes(tip) <= rows * 2048
    assert not tip.tracks_reordering


def test_rows_sharing_a_prompt_are_tracked_only_within_their_group(tokenizer):
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=600, triggers="reflection", scope="all")
    prompts = torch.randint(0, 150_000, (64, 40))
    ids = prompts.repeat_interleave(4, dim=0)  # 64 prompts x 4 beams = 256 rows
    scores = torch.randn(256, 151_936)
    tip(ids, scores)
    tip(torch.cat((ids, torch.randint(0, 150_000, (256, 1))), dim=1), scores)
    # groups of 4: O(rows * 4**2) per table, not O(rows**3)
    assert held_tensor_bytes(tip) <= 256 * (2048 + 8 * 4 * 4 * 8)
    assert tip.tracks_reordering


def test_random_reordering_within_prompt_groups_matches_reference(tokenizer):
    """Rows reordered at random within groups of identical prompts (groups not adjacent, of
    different sizes), with rows that become identical: every call equals the reference."""
    vocab = SwitchVocabulary.from_tokenizer(tokenizer, TRIGGERS)
    tip = TIPLogitsProcessor(vocab, alpha=1.5, beta=4, scope="think")
    pool = list(vocab.token_ids) + [t for m in vocab.multi_token for t in (*m.prefix, m.completion)]
    pool += [vocab.think.start_id, vocab.think.end_id] + tokenizer.encode(" the cat. so", add_special_tokens=False)
    prompts = [tokenizer.encode(text, add_special_tokens=False) for text in ("Solve it. <think>\n", "Why is that so", "Hmm, well ok")]
    width = max(prompts[0] + prompts[1] + prompts[2] + pool) + 1  # pad all prompts to one length on the left
    length = max(len(p) for p in prompts)
    prompts = [[tokenizer.pad_token_id] * (length - len(p)) + p for p in prompts]
    row_prompt = [0, 1, 0, 2, 0, 1, 1]
    groups = {g: [r for r, p in enumerate(row_prompt) if p == g] for g in set(row_prompt)}
    rng = random.Random(5)
    generated: list[list[int]] = [[] for _ in row_prompt]
    scores = torch.zeros(len(row_prompt), width)
    checked = fired = reorders = 0
    for step in range(60):
        ids = torch.tensor([prompts[p] + g for p, g in zip(row_prompt, generated)])
        out = tip(ids, scores)
        for row, p in enumerate(row_prompt):
            expected = penalised(vocab, tip.scope, prompt_open(prompts[p], vocab), generated[row], step, 4)
            got = {int(i) for i in torch.nonzero(out[row] != 0).flatten()}
            assert got == expected, f"step {step} row {row}"
            assert torch.all(out[row, sorted(expected)] == -1.5)
            checked += 1
            fired += bool(expected)
        parents = [rng.choice(groups[p]) for p in row_prompt]
        tokens = [rng.choice(pool) for _ in row_prompt]
        for row, p in enumerate(row_prompt):
            if rng.random() < 0.3:  # copy another row of the group: identical sequences
                twin = rng.choice(groups[p])
                parents[row], tokens[row] = parents[twin], tokens[twin]
        reorders += parents != list(range(len(row_prompt)))
        generated = [generated[parent] + [token] for parent, token in zip(parents, tokens)]
    assert tip.tracks_reordering and reorders > 40 and 0 < fired < checked


class StandInGraph:
    """Replays the step as a broken graph would ("twice": runs it twice; "stale": does nothing),
    or correctly ("right")."""

    def __init__(self, step, behaviour: str) -> None:
        self.step, self.behaviour, self.replays = step, behaviour, 0

    def replay(self) -> None:
        self.replays += 1
        if self.behaviour in ("right", "twice"):
            self.step()
        if self.behaviour == "twice":
            self.step()


def use_stand_in(tip: TIPLogitsProcessor, behaviour: str) -> list[StandInGraph]:
    graphs: list[StandInGraph] = []

    def factory(step, device):
        graphs.append(StandInGraph(step, behaviour))
        return graphs[-1]

    tip.graph_factory = factory
    return graphs


@pytest.mark.parametrize("behaviour", ["twice", "stale"])
def test_a_wrong_graph_is_caught_and_never_reaches_the_scores(model, tokenizer, behaviour, caplog):
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=2.0, beta=5, triggers=TRIGGERS)
    graphs = use_stand_in(tip, behaviour)
    with caplog.at_level(logging.WARNING, logger="tip_decode.adapters.hf"):
        for kwargs in (dict(do_sample=False), dict(num_beams=3, do_sample=False)):
            inputs = encode(tokenizer, PROMPTS)
            _, before, after = generate(model, tokenizer, tip, inputs, first=(bias(tokenizer),), max_new_tokens=20, **kwargs)
            checked, fired = check_against_reference(before, after, tip, inputs["input_ids"].shape[1])
            assert fired > 0
            assert not tip.graph_active
    assert len(graphs) == 1 and graphs[0].replays == GRAPH_CHECK_STEPS  # the second call did not capture again
    warnings = [r for r in caplog.records if "differed from the eager step" in r.getMessage()]
    assert len(warnings) == 1


def test_a_right_graph_takes_over_after_the_checks(model, tokenizer, caplog):
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=2.0, beta=5, triggers=TRIGGERS)
    graphs = use_stand_in(tip, "right")
    with caplog.at_level(logging.WARNING, logger="tip_decode.adapters.hf"):
        for kwargs in (dict(do_sample=False), dict(num_beams=3, num_return_sequences=2, do_sample=True)):
            inputs = encode(tokenizer, PROMPTS)
            _, before, after = generate(model, tokenizer, tip, inputs, first=(bias(tokenizer),), max_new_tokens=20, **kwargs)
            check_against_reference(before, after, tip, inputs["input_ids"].shape[1])
            assert tip.graph_active
            steps = len(before.calls) - 1  # the first call starts the generation, every other is a step
            # checked steps replay once each; the step that reads the verdict runs eagerly
            assert graphs[-1].replays == steps - 1
    assert len(graphs) == 2
    assert not caplog.records


def test_a_failed_capture_falls_back_to_eager_steps(model, tokenizer, caplog):
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=2.0, beta=5, triggers=TRIGGERS)

    def factory(step, device):
        raise RuntimeError("capture not allowed here")

    tip.graph_factory = factory
    inputs = encode(tokenizer, PROMPTS)
    with caplog.at_level(logging.WARNING, logger="tip_decode.adapters.hf"):
        _, before, after = generate(model, tokenizer, tip, inputs, first=(bias(tokenizer),), do_sample=False, max_new_tokens=10)
    check_against_reference(before, after, tip, inputs["input_ids"].shape[1])
    assert not tip.graph_active
    assert any("without CUDA graphs" in r.getMessage() for r in caplog.records)


def test_rows_are_grouped_exactly_even_when_checksums_collide(monkeypatch):
    from tip_decode.adapters import hf_rows as hf

    ids = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1], [1, 2, 3, 4], [2, 2, 3, 3], [4, 3, 2, 1]])
    assert hf._identical_row_groups(ids) == [[0, 2], [1, 4], [3]]
    # every row has the same sum; with the other checksums forced equal too, only the exact
    # comparison can tell the rows apart
    monkeypatch.setattr(hf, "_row_dot", lambda rows, weights: torch.zeros(rows.shape[0], dtype=torch.long))
    assert sorted(hf._identical_row_groups(ids)) == [[0, 2], [1, 4], [3]]
