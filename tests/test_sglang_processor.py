"""The SGLang processor's bookkeeping and the client helpers, without SGLang installed.

`ThoughtSwitchPenalty` is called the way SGLang's sampler calls it: the logits rows of the requests
that named it and one params dict per row carrying `__req__`, a `weakref.proxy` of the request, whose
`output_ids` grows by one token per step. The request objects here stand in for SGLang's `Req` (the
attributes the processor reads); the real scheduler, batching and overlap behaviour are exercised in
test_sglang_server.py, test_sglang_overlap.py and test_sglang_engine.py. What is under test here is
the processor itself: the penalty against the slow reference over random streams and batch changes,
state release, the memory bound, rebuilding, and bad input never raising.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import random
import weakref

import pytest
import torch
from bad_settings import BAD_WITH_TOKENIZER, BAD_WITHOUT_TOKENIZER
from click.testing import CliRunner
from conftest import load_hf_tokenizer
from reference import penalised
from reference_interventions import Reference, Row

import tip_decode.adapters.sglang as adapter
from tip_decode import SwitchVocabulary, TIPConfig
from tip_decode.core.interventions import FORCED_LOGIT, BudgetConfig, CyclicConfig, GatedConfig, InterventionSet, NoWaitConfig, plan_for
from tip_decode.core.interventions.affirm import AffirmConfig
from tip_decode.core.interventions.alphaone import AlphaOneConfig
from tip_decode.core.interventions.deepconf import DeepConfConfig
from tip_decode.core.interventions.inject import InjectConfig
from tip_decode.core.interventions.nothinking import NoThinkingConfig
from tip_decode.core.interventions.thinkbrake import ThinkBrakeConfig
from tip_decode.sglang import ThoughtSwitchPenalty, custom_params, generate_fields, openai_fields, processor_string

TRIGGERS = ("alternatively", "wait", "another approach")


class Request:
    """The attributes of SGLang's `Req` that the processor reads."""

    def __init__(self, rid: str, prompt: list[int]) -> None:
        self.rid = rid
        self.origin_input_ids = list(prompt)
        self.output_ids: list[int] = []
        self.done = False
        self.kv = type("Kv", (), {})()
        self.kv.kv_committed_len = len(prompt)

    def finished(self) -> bool:
        return self.done

    def params(self, mapping: dict | None) -> dict | None:
        """The row's custom params as SGLang builds them (a copy with the proxy added)."""
        if mapping is None:
            return None
        if not hasattr(self, "_params"):
            self._params = {**mapping, "__req__": weakref.proxy(self)}
        return self._params

    def append(self, token: int) -> None:
        self.output_ids.append(int(token))
        self.kv.kv_committed_len += 1


@pytest.fixture()
def registry(monkeypatch, tokenizers_dir):
    """A fresh registry per test, building vocabularies with the real qwen3 tokenizer."""
    monkeypatch.setenv(adapter.ENV_TOKENIZER, str(tokenizers_dir / "qwen3"))
    for name in (adapter.ENV_ALPHA, adapter.ENV_BETA, adapter.ENV_TRIGGERS, adapter.ENV_SCOPE, adapter.ENV_INTERVENTIONS):
        monkeypatch.delenv(name, raising=False)
    fresh = adapter._Registry()
    monkeypatch.setattr(adapter, "_REGISTRY", fresh)
    return fresh


@pytest.fixture(scope="module")
def tok():
    return load_hf_tokenizer("qwen3")


def token_pool(vocab: SwitchVocabulary, tok) -> list[int]:
    pool = list(vocab.token_ids) + [i for m in vocab.multi_token for i in m.prefix] + list(vocab.completion_ids)
    pool += [vocab.think.start_id, vocab.think.end_id]
    pool += tok.encode(" the value. So, 12 x(y", add_special_tokens=False) + tok.encode("\n\nok", add_special_tokens=False)
    return pool


def expected_penalty(vocab, config: TIPConfig | None, prompt: list[int], generated: list[int], width: int) -> torch.Tensor:
    out = torch.zeros(width)
    if config is None or not config.enabled:
        return out
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer("qwen3"), config.triggers)  # cached per trigger list
    scope = vocab.resolve_scope(config.scope)
    last = {t: i for i, t in enumerate(prompt)}
    prompt_open = scope == "think" and last.get(vocab.think.start_id, -1) > last.get(vocab.think.end_id, -1)
    for token in penalised(vocab, scope, prompt_open, generated, len(generated), config.beta):
        if token < width:
            out[token] = config.alpha
    return out


def test_random_batches_match_the_reference(registry, tok):
    """Requests join, leave and change rows between steps; every row gets exactly the reference penalty."""
    vocab = SwitchVocabulary.from_tokenizer(tok, TRIGGERS)
    pool = token_pool(vocab, tok)
    width = len(tok) + 7
    rng = random.Random(0)
    processor = ThoughtSwitchPenalty()
    prompts = [tok.encode("Solve it."), tok.encode("<|im_start|>assistant\n<think>\n"), tok.encode("<think>a</think>")]
    configs = [
        TIPConfig(alpha=1.5, beta=5, triggers=TRIGGERS, scope="all"),
        TIPConfig(alpha=0.5, beta=600, triggers=TRIGGERS, scope="auto"),
        TIPConfig(alpha=2.0, beta=3, triggers=("wait",), scope="think"),
        TIPConfig.off(),
    ]
    live: list[tuple[Request, TIPConfig]] = []
    fired = checked = 0
    for step in range(160):
        if len(live) < 6 and rng.random() < 0.3:
            request = Request(f"r{step}", rng.choice(prompts))
            live.append((request, rng.choice(configs)))
        if not live:
            continue
        batch = rng.sample(live, k=len(live))  # rows change order every step
        logits = torch.randn(len(batch), width)
        before = logits.clone()
        params = [r.params(custom_params(c)) for r, c in batch]
        out = processor(logits, params)
        for row, (request, config) in enumerate(batch):
            want = expected_penalty(vocab, config, request.origin_input_ids, request.output_ids, width)
            assert torch.equal(out[row], before[row] - want), (step, request.rid)
            fired += bool(want.any())
            checked += 1
        for request, _ in batch:
            request.append(rng.choice(pool))
        for item in [x for x in live if len(x[0].output_ids) >= 30]:
            live.remove(item)
    assert fired > 40 and checked > 300, (fired, checked)


# Every intervention, alone and combined, with small numbers so that each acts within ~30 tokens.
MIXED_SETTINGS = [
    InterventionSet(alphaone=AlphaOneConfig(moment=4, temperature=0.7)),  # issue 21: per-row draws, a mass transfer
    InterventionSet(tip=TIPConfig(alpha=2.0, beta=5, triggers=TRIGGERS, scope="all")),
    InterventionSet(nowait=NoWaitConfig(keywords=("wait", "but", "hmm"))),
    InterventionSet(cyclic=CyclicConfig(amplitude=3.0, period=8.0, shift=0.25, words=("Wait", "But", "Alternatively"))),
    InterventionSet(budget=BudgetConfig(min=6, max=14)),
    InterventionSet(budget=BudgetConfig(min=8, max=20, word=" Hmm, wait")),  # a three-token word
    InterventionSet(budget=BudgetConfig(min=3, max=9, word=" Hmm, wait")),  # the same structure, other numbers
    InterventionSet(gated=GatedConfig(alpha=math.inf, beta=9, triggers=("wait", "hmm"), scope="all", threshold=6.0)),
    InterventionSet(gated=GatedConfig(alpha=2.0, beta=12, triggers=("wait", "hmm"), scope="all", threshold=4.0)),
    # issue 21: a ban read from the row's probabilities, forced texts
    InterventionSet(affirm=AffirmConfig(tau=0.5, words=("Wait", "wait", "But"), scope="all")),
    InterventionSet(inject=InjectConfig(text=" I should be brief.")),
    InterventionSet(nothinking=NoThinkingConfig()),
    InterventionSet(
        tip=TIPConfig(alpha=1.0, beta=4, triggers=("wait", "alternatively")),
        nowait=NoWaitConfig(keywords=("but", "maybe")),
        cyclic=CyclicConfig(period=6.0),
        budget=BudgetConfig(min=5, max=16, word="Wait"),
    ),
    # Random logits: a row that "wants" to end thinking has </think> 1 above the top (margin -1),
    # others about 10-15 below; confidences are about 4 (flat rows) or 17 (a +30 spike).
    InterventionSet(thinkbrake=ThinkBrakeConfig(tau=0.5, boundary=(".",))),
    InterventionSet(deepconf=DeepConfConfig(threshold=6.0, window=2)),
    InterventionSet(
        thinkbrake=ThinkBrakeConfig(tau=2.0, boundary=(".", " x")),
        deepconf=DeepConfConfig(threshold=5.0, window=3, topk=4),
        budget=BudgetConfig(min=4),
    ),
    InterventionSet(),  # sent whole: every intervention off
]


def mixed_token_pool(tok, reference: Reference) -> list[int]:
    pool: list[int] = []
    for settings in MIXED_SETTINGS[:-1]:
        plan = plan_for(tok, settings)
        for name, rule in zip(plan.names, plan.rules):
            if name in ("tip", "gated"):
                vocab = rule.vocabulary
                pool += list(vocab.token_ids[:6]) + [i for m in vocab.multi_token[:6] for i in (*m.prefix, m.completion)]
            elif name in ("nowait", "cyclic"):
                pool += list(rule.token_ids[:8])
            elif name == "budget":
                pool += list(rule.word_ids) * 2 + list(rule.eos_ids)
            elif name == "deepconf":
                pool += [tok.eos_token_id]
            elif name in ("affirm", "alphaone"):
                pool += list(rule.token_ids[:8])
    pool += tok.encode("\n\n.\n\n", add_special_tokens=False) * 2  # AlphaOne's delimiters
    pool += [reference.markers.start_id, reference.markers.end_id] * 3
    pool += tok.encode(" the value. So, 12 x(y button", add_special_tokens=False)
    return pool


def test_mixed_interventions_match_the_reference_at_every_step(registry, tok):
    """Random batches of requests, each with its own interventions; rows reorder, join and leave.

    Every row's processed logits equal the slow reference's (tests/reference_interventions.py),
    which reads the row's own raw logits (gated's entropy, budget's most likely token); nothing else
    in the row changes. The next token is sampled from what the row allows (the forced token when
    one is forced).
    """
    from reference_interventions import entropy

    reference = Reference(tok)
    pool = mixed_token_pool(tok, reference)
    width = len(tok) + 7
    rng = random.Random(3)
    generator = torch.Generator().manual_seed(3)
    processor = ThoughtSwitchPenalty()
    prompts = [tok.encode("Solve it."), tok.encode("<|im_start|>assistant\n<think>\n"), tok.encode("<think>a</think>"), tok.encode("x <think>")]
    start, end = reference.markers.start_id, reference.markers.end_id
    live: list[tuple[Request, InterventionSet, Row]] = []
    acted: dict[str, int] = {}
    counts = {"checked": 0, "changed": 0, "forced": 0, "banned": 0, "uncertain": 0}
    joined = 0
    for step in range(100):
        if len(live) < 8 and rng.random() < 0.5:
            prompt = rng.choice(prompts)
            last = {t: i for i, t in enumerate(prompt)}
            opened = last.get(start, -1) > last.get(end, -1)
            settings = MIXED_SETTINGS[joined % len(MIXED_SETTINGS)]  # neighbours share a group and overlap
            joined += 1
            # The raw logits are summarised as the reference reads them (entropy, most likely token).
            live.append((Request(f"r{step}", prompt), settings, Row(opened, len(prompt) - last[start] - 1 if opened else 0, logits={})))
        if not live:
            continue
        batch = rng.sample(live, k=len(live))
        raw = torch.randn(len(batch), width, generator=generator) * 3
        for b, (_, settings, row) in enumerate(batch):
            if rng.random() < 0.5:
                raw[b, rng.randrange(width)] += 30.0  # a confident step: the gate opens and closes
            if rng.random() < 0.3:
                raw[b, end] = raw[b].max() + 1.0  # the model "wants" to end thinking
            t = len(row.generated)
            row.tops[t] = int(raw[b].argmax())
            if settings.gated is not None:
                row.entropies[t] = entropy(raw[b])
            if any(getattr(settings, name) is not None for name in ("thinkbrake", "deepconf", "affirm", "alphaone")):
                row.logits[t] = raw[b].clone()  # these read the whole row (margins, confidences, probabilities)
        out = processor(raw.clone(), [request.params(custom_params(settings)) for request, settings, _ in batch])
        assert not out.isnan().any()
        for b, (request, settings, row) in enumerate(batch):
            t = len(row.generated)
            bias, forced, uncertain = reference.expected(settings, row, t) if settings else ({}, None, False)
            changed = set((out[b] != raw[b]).nonzero().flatten().tolist())
            if uncertain:
                counts["uncertain"] += 1
            else:
                ids = sorted(set(bias) | ({forced} if forced is not None else set()))
                want = Reference.apply(raw[b], ids, bias, forced) if ids else torch.empty(0)
                where = (step, request.rid, settings.names, t)
                assert changed == {i for i, w in zip(ids, want.tolist()) if w != raw[b, i]}, where
                if ids:
                    torch.testing.assert_close(out[b, ids], want, atol=1e-5, rtol=0, msg=lambda m, where=where: f"{where}: {m}")
                counts["checked"] += 1
                counts["changed"] += bool(changed)
                counts["forced"] += forced is not None
                counts["banned"] += any(v == -math.inf for v in bias.values())
                for name in settings.names if changed else ():
                    acted[name] = acted.get(name, 0) + 1
            allowed = [i for i in pool if out[b, i] > -math.inf]
            token = int(out[b].argmax()) if out[b].max() == FORCED_LOGIT else rng.choice(allowed)
            request.append(token)
            row.generated.append(token)
        for item in [x for x in live if len(x[0].output_ids) >= 28]:
            live.remove(item)
    print(counts, acted)
    assert counts["checked"] > 300 and counts["changed"] > 100 and counts["uncertain"] < 10, counts
    assert counts["forced"] > 10 and counts["banned"] > 40, counts
    assert (
        min(
            acted.get(name, 0)
            for name in ("tip", "nowait", "cyclic", "budget", "gated", "thinkbrake", "deepconf", "affirm", "alphaone", "inject", "nothinking")
        )
        >= 3
    ), acted
    # One group per structure: requests of the same structure share it.
    assert len(registry.groups) == len({s.structure for s in MIXED_SETTINGS if s}), list(registry.groups)


def test_state_is_released_when_requests_finish_or_are_freed(registry, tok):
    processor = ThoughtSwitchPenalty()
    width = len(tok)
    requests = [Request(f"r{i}", [1, 2]) for i in range(10)]
    params = [r.params({"tip_alpha": 1.0, "tip_beta": 5}) for r in requests]
    processor(torch.zeros(10, width), params)
    assert len(registry.requests) == 10
    for r in requests[:5]:
        r.done = True
    del params, r
    del requests[5:8]  # SGLang frees the Req: its proxy dies
    survivors = requests[:5] + requests[5:]
    assert len(survivors) == 7
    keep = [r for r in survivors if not r.done]
    for _ in range(adapter.SWEEP_EVERY):
        processor(torch.zeros(len(keep), width), [r.params({}) for r in keep])
    assert set(registry.requests) == {r.rid for r in keep}
    assert registry.stats.released == 8
    assert all(g.members == len(keep) for g in registry.groups.values())


def test_memory_bound_evicts_and_rebuilds_exactly(registry, tok):
    vocab = SwitchVocabulary.from_tokenizer(tok, TRIGGERS)
    registry.max_tracked = 2
    processor = ThoughtSwitchPenalty()
    width = len(tok)
    config = TIPConfig(alpha=1.0, beta=4, triggers=TRIGGERS, scope="all")
    rng = random.Random(1)
    pool = token_pool(vocab, tok)
    requests = [Request(f"r{i}", [5]) for i in range(4)]
    for step in range(40):
        request = requests[step % 4]  # one request per call: the others go idle and are evicted
        logits = torch.zeros(1, width)
        out = processor(logits, [request.params(custom_params(config))])
        assert torch.equal(-out[0], expected_penalty(vocab, config, request.origin_input_ids, request.output_ids, width)), step
        assert len(registry.requests) <= 2
        request.append(rng.choice(pool))
    assert registry.stats.evicted >= 30 and registry.stats.replays >= 30


def test_rows_several_tokens_ahead_are_fed_in_order(registry, tok):
    """A row whose output grew by several tokens since the processor last saw it (a step it was not
    called for) gets them fed in order, batched with the other rows of its group (`catch_up`),
    while its neighbours advance one token; every step equals the reference."""
    vocab = SwitchVocabulary.from_tokenizer(tok, TRIGGERS)
    processor = ThoughtSwitchPenalty()
    width = len(tok)
    config = TIPConfig(alpha=1.0, beta=3, triggers=TRIGGERS, scope="all")
    rng = random.Random(5)
    pool = token_pool(vocab, tok)
    requests = [Request(f"r{i}", [5]) for i in range(3)]
    skipped = 0
    for step in range(30):
        batch = [r for i, r in enumerate(requests) if i == 0 or (step + i) % 3 != 0]  # rows 1 and 2 sit some calls out
        out = processor(torch.zeros(len(batch), width), [r.params(custom_params(config)) for r in batch])
        for row, request in enumerate(batch):
            assert torch.equal(-out[row], expected_penalty(vocab, config, request.origin_input_ids, request.output_ids, width)), (step, request.rid)
        for request in requests:  # every request generates, called or not
            request.append(rng.choice(pool))
        skipped += len(requests) - len(batch)
    assert skipped > 10 and registry.stats.replays >= skipped - 2


def test_shrunk_output_and_reused_rid_start_over(registry, tok):
    vocab = SwitchVocabulary.from_tokenizer(tok, ("wait",))
    processor = ThoughtSwitchPenalty()
    width = len(tok)
    config = TIPConfig(alpha=1.0, beta=2, triggers=("wait",), scope="all")
    wait_id = tok.encode(" wait")[0]
    request = Request("same", [5])
    for token in (wait_id, 11, 12, 13):
        processor(torch.zeros(1, width), [request.params(custom_params(config))])
        request.append(token)
    request.output_ids = request.output_ids[:1]  # SGLang discarded output on retraction
    out = processor(torch.zeros(1, width), [request.params(custom_params(config))])
    assert torch.equal(-out[0], expected_penalty(vocab, config, [5], request.output_ids, width))
    assert out[0].ne(0).any()  # one token after the switch: inside the window again
    # A new request with the same rid must not inherit the old state (its proxy is another object).
    # Nor its settings: the newcomer asks for another alpha.
    newcomer = Request("same", [5])
    other = TIPConfig(alpha=5.0, beta=2, triggers=("wait",), scope="all")
    out = processor(torch.zeros(1, width), [newcomer.params(custom_params(other))])
    assert torch.equal(-out[0], expected_penalty(vocab, other, [5], [], width))
    assert request.rid in registry.requests and registry.requests["same"].proxy is newcomer.params({})["__req__"]


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"tip_alpha": -1}, "tip_alpha"),
        ({"tip_alpha": 1, "tip_beta": 1.5}, "tip_beta"),
        ({"tip_alpha": 1, "tip_scope": "nowhere"}, "tip_scope"),
        ({"tip_alpha": 1, "tip_typo": 1}, "tip_typo"),
        ({"tip_alpha": 1, "tip_triggers": ["<|im_end|>"]}, "tip_triggers"),
        ({"tip_alpha": 1, "tip_triggers": {"a": 1}}, "tip_triggers"),
    ],
)
def test_bad_parameters_turn_tip_off_for_the_request_and_warn(registry, tok, caplog, params, key):
    processor = ThoughtSwitchPenalty()
    good, bad = Request("good", [1]), Request("bad", [1])
    logits = torch.randn(2, len(tok))
    before = logits.clone()
    with caplog.at_level(logging.WARNING, logger="tip_decode.adapters.sglang"):
        out = processor(logits, [bad.params(params), good.params({"tip_alpha": "inf", "tip_beta": 5, "tip_scope": "all"})])
    assert torch.equal(out[0], before[0])
    assert out[1].isinf().any()  # the other request of the batch still gets its penalty
    assert any(key in r.getMessage() and "Interventions are off" in r.getMessage() for r in caplog.records), caplog.text


def test_rows_without_a_request_and_internal_errors_leave_logits_unchanged(registry, tok, caplog):
    processor = ThoughtSwitchPenalty()
    logits = torch.randn(3, len(tok))
    before = logits.clone()
    with caplog.at_level(logging.WARNING, logger="tip_decode.adapters.sglang"):
        out = processor(logits, [None, {"tip_alpha": 1}, ["not", "a", "dict"]])
    assert torch.equal(out, before)
    assert "send at least {}" in caplog.text

    class Broken(Request):
        @property
        def output_ids(self):  # an SGLang change we did not foresee
            raise RuntimeError("boom")

        @output_ids.setter
        def output_ids(self, value):
            pass

    broken, fine = Broken("broken", [1]), Request("fine", [1])
    logits = torch.randn(2, len(tok))
    before = logits.clone()
    out = processor(logits, [fine.params({"tip_alpha": "inf", "tip_beta": 9}), broken.params({"tip_alpha": "inf", "tip_beta": 9})])
    assert torch.equal(out, before)  # nothing half-applied, nothing raised
    assert "broken" not in registry.requests and "fine" not in registry.requests  # rebuilt next step


def test_late_output_is_noticed_once(registry, tok, caplog):
    """SGLang's overlap scheduler: the KV cache holds one token more than prompt + output."""
    processor = ThoughtSwitchPenalty()
    request = Request("late", [1, 2])
    request.kv.kv_committed_len += 1
    with caplog.at_level(logging.WARNING, logger="tip_decode.adapters.sglang"):
        for _ in range(3):
            processor(torch.zeros(1, len(tok)), [request.params({"tip_alpha": 1})])
    assert caplog.text.count("SGLANG_ENABLE_DELAY_SAMPLE=1") == 1
    assert registry.stats.lagging_rows == 3


def test_server_default_applies_to_requests_without_tip_keys(registry, tok, monkeypatch):
    monkeypatch.setenv(adapter.ENV_ALPHA, "inf")
    monkeypatch.setenv(adapter.ENV_BETA, "4")
    monkeypatch.setenv(adapter.ENV_TRIGGERS, "wait")
    monkeypatch.setenv(adapter.ENV_SCOPE, "all")
    processor = ThoughtSwitchPenalty()
    vocab = SwitchVocabulary.from_tokenizer(tok, ("wait",))
    a, b = Request("a", [1]), Request("b", [1])  # kept alive: the rows hold only weak proxies
    logits = processor(torch.zeros(2, len(tok)), [a.params({}), b.params({"tip_alpha": 0})])
    assert logits[0, list(vocab.token_ids)].isinf().all() and not logits[1].ne(0).any()


# ----------------------------------------------------------------------------- client side


def test_processor_string_is_a_pickled_reference_to_the_public_class():
    text = processor_string()
    assert text == ThoughtSwitchPenalty.to_str()
    callable_hex = json.loads(text)["callable"]
    assert pickle.loads(bytes.fromhex(callable_hex)) is ThoughtSwitchPenalty
    assert b"tip_decode.sglang" in bytes.fromhex(callable_hex)
    assert text == json.dumps({"callable": callable_hex})  # SGLang's own formatting
    with pytest.raises(TypeError):
        processor_string(ThoughtSwitchPenalty())  # type: ignore[arg-type]


def test_custom_params_validate_and_stay_json_safe(tok):
    assert custom_params() == {}
    assert custom_params(TIPConfig.off()) == {"tip_alpha": 0}
    assert custom_params(alpha=math.inf, beta=600, triggers="reflection")["tip_alpha"] == "inf"
    assert custom_params(TIPConfig(alpha=3, beta=600)) == {"tip_alpha": 3.0, "tip_beta": 600, "tip_triggers": ["alternatively"], "tip_scope": "auto"}
    assert custom_params({"tip_beta": 10.0, "thinking_budget": 64}) == {"tip_beta": 10, "thinking_budget": 64}
    json.dumps(custom_params(alpha="inf", triggers=["wait", "hmm"]))
    for bad, key in (({"alpha": -1}, "tip_alpha"), ({"beta": 0.5}, "tip_beta"), ({"scope": "x"}, "tip_scope"), ({"triggers": []}, "tip_triggers")):
        with pytest.raises(ValueError, match=key):
            custom_params({f"tip_{k}": v for k, v in bad.items()})
    with pytest.raises(ValueError, match="tip_typo"):
        custom_params({"tip_typo": 1})
    with pytest.raises(ValueError, match="tip_triggers"):
        custom_params(alpha=1, triggers=["<|im_end|>"], tokenizer=tok)
    with pytest.raises(TypeError):
        custom_params(gamma=1)
    with pytest.raises(ValueError, match="__req__"):
        custom_params({"__req__": 1})


def test_request_fields_for_each_route():
    native = generate_fields(alpha=3, beta=600)
    assert native == {"custom_logit_processor": processor_string(), "sampling_params": {"custom_params": {"tip_alpha": 3.0, "tip_beta": 600}}}
    assert openai_fields(alpha=0) == {"custom_logit_processor": processor_string(), "custom_params": {"tip_alpha": 0.0}}


def test_serve_sglang_command_and_environment():
    import sys

    from tip_decode.cli.serve_sglang import sglang_server_command, sglang_server_env
    from tip_decode.core.server_defaults import server_settings

    argv = sglang_server_command("org/m", "127.0.0.1", 30000, ("--device", "cpu"))
    assert argv[:3] == [sys.executable, "-m", "sglang.launch_server"]
    assert "--enable-custom-logit-processor" in argv and argv[argv.index("--model-path") + 1] == "org/m" and argv[-2:] == ["--device", "cpu"]
    config = TIPConfig(alpha=3, beta=50)
    env = sglang_server_env(config, "org/m", (), base={})
    assert env["SGLANG_ENABLE_DELAY_SAMPLE"] == "1" and env["TIP_DECODE_TOKENIZER"] == "org/m"
    assert json.loads(env["TIP_DECODE_INTERVENTIONS"])["tip_beta"] == 50 and server_settings(env).tip == config
    assert "SGLANG_ENABLE_DELAY_SAMPLE" not in sglang_server_env(config, "m", ("--disable-overlap-schedule",), base={})
    assert sglang_server_env(config, "m", (), base={"SGLANG_ENABLE_DELAY_SAMPLE": "0"})["SGLANG_ENABLE_DELAY_SAMPLE"] == "0"


def test_serve_sglang_rejects_bad_options_in_one_line():
    from tip_decode.cli import main

    runner = CliRunner()
    result = runner.invoke(main, ["serve", "m", "--engine", "sglang", "--alpha", "-2"])
    assert result.exit_code != 0 and "alpha" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["serve", "m", "--engine", "sglang", "--", "--model-path", "x"])
    assert result.exit_code != 0 and "--model-path" in result.output


def test_a_ban_on_a_positive_infinite_logit_gives_minus_infinity(registry, tok):
    """alpha = inf on a logit that is already +inf: the ban wins (-inf), never NaN."""
    vocab = SwitchVocabulary.from_tokenizer(tok, ("wait",))
    banned = list(vocab.token_ids)
    request = Request("inf", [1])
    logits = torch.zeros(1, len(tok))
    logits[0, banned] = math.inf
    out = ThoughtSwitchPenalty()(logits, [request.params({"tip_alpha": "inf", "tip_beta": 5, "tip_triggers": ["wait"], "tip_scope": "all"})])
    assert not out.isnan().any()
    assert out[0, banned].eq(-math.inf).all()


def test_client_helpers_cover_every_namespace(tok):
    settings = MIXED_SETTINGS[-5]  # tip + nowait + cyclic + budget
    sent = custom_params(settings)
    # Sent whole, JSON-safe: its interventions with every setting, the others turned off explicitly.
    assert json.loads(json.dumps(sent)) == {
        "tip_alpha": 1.0, "tip_beta": 4, "tip_triggers": ["wait", "alternatively"], "tip_scope": "auto",
        "nowait": 1, "nowait_keywords": ["but", "maybe"], "nowait_scope": "auto",
        "cyclic_amplitude": 5.0, "cyclic_period": 6.0, "cyclic_shift": 0.0, "cyclic_start": 0, "cyclic_end": -1,
        "cyclic_words": ["wait", "Wait", "but", "But", "Alternatively"], "cyclic_scope": "auto",
        "gated": 0,
        "budget_min": 5, "budget_max": 16, "budget_word": "Wait",
        "deepconf": 0, "thinkbrake": 0,
        "affirm": 0, "alphaone": 0, "inject": 0, "nothinking": 0,
    }  # fmt: skip
    back = InterventionSet.from_mapping(sent, default=InterventionSet.from_mapping({"gated": 1, "tip_alpha": 9}))
    assert back == settings  # whatever the server default
    assert custom_params(nowait=1, budget_max=4000.0) == {"nowait": 1, "budget_max": 4000}
    assert custom_params({"gated_alpha": math.inf, "thinking_budget": 64}) == {"gated_alpha": "inf", "thinking_budget": 64}
    fields = generate_fields(nowait=1, cyclic_period=600)
    assert fields["sampling_params"]["custom_params"] == {"nowait": 1, "cyclic_period": 600.0}
    assert openai_fields(budget_max=0)["custom_params"] == {"budget_max": 0}
    with pytest.raises(TypeError, match="same setting"):
        custom_params(alpha=1, tip_alpha=2)
    for bad, key in BAD_WITHOUT_TOKENIZER:
        with pytest.raises(ValueError, match=f"`{key}`"):
            custom_params(bad)
    for bad, key in BAD_WITH_TOKENIZER:
        custom_params(bad)  # only the tokenizer can tell
        with pytest.raises(ValueError, match=f"`{key}`"):
            custom_params(bad, tokenizer=tok)


@pytest.mark.parametrize(("params", "key"), BAD_WITHOUT_TOKENIZER + BAD_WITH_TOKENIZER)
def test_bad_keys_of_every_namespace_turn_the_request_off_and_warn(registry, tok, caplog, params, key):
    processor = ThoughtSwitchPenalty()
    good, bad = Request("good", [1]), Request("bad", [1])
    logits = torch.randn(2, len(tok))
    before = logits.clone()
    with caplog.at_level(logging.WARNING, logger="tip_decode.adapters.sglang"):
        out = processor(logits, [bad.params(params), good.params({"nowait": 1, "nowait_scope": "all"})])
    assert torch.equal(out[0], before[0])
    assert out[1].eq(-math.inf).any()
    assert any(f"`{key}`" in r.getMessage() and "Interventions are off" in r.getMessage() for r in caplog.records), caplog.text


def test_server_default_interventions_apply_and_requests_override_them(registry, tok, monkeypatch):
    monkeypatch.setenv(adapter.ENV_INTERVENTIONS, json.dumps({"nowait_keywords": ["wait"], "nowait_scope": "all"}))
    banned = list(plan_for(tok, InterventionSet(nowait=NoWaitConfig(keywords=("wait",), scope="all"))).rule("nowait").token_ids)
    processor = ThoughtSwitchPenalty()
    a, b, c = Request("a", [1]), Request("b", [1]), Request("c", [1])
    logits = processor(torch.zeros(3, len(tok)), [a.params({}), b.params({"nowait": 0}), c.params({"nowait_keywords": ["but"]})])
    assert logits[0, banned].eq(-math.inf).all() and logits[0].isfinite().sum() == len(tok) - len(banned)
    assert not logits[1].ne(0).any()
    assert logits[2, banned].eq(0).all() and logits[2].eq(-math.inf).any()  # its own keywords, the default's scope


def test_a_bad_server_default_turns_requests_off_naming_the_variable(registry, tok, monkeypatch, caplog):
    monkeypatch.setenv(adapter.ENV_INTERVENTIONS, "{nowait: 1}")
    request = Request("a", [1])
    with caplog.at_level(logging.WARNING, logger="tip_decode.adapters.sglang"):
        out = ThoughtSwitchPenalty()(torch.zeros(1, len(tok)), [request.params({"nowait": 1})])
    assert not out.ne(0).any()
    assert adapter.ENV_INTERVENTIONS in caplog.text
