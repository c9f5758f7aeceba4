"""The registry is the one list of interventions: a throw-away intervention registered here (and only
here) is accepted by every entry point that runs without an engine, and no other list of
intervention names exists in tip_decode/.

`boost` adds `amount` to the logit of its word's first token on every step: declared in this file
with a configuration, a rule, its tables and one `register` call, it goes through `InterventionSet`
and flat keys, `-c` specs, summaries, request off-keys, server defaults, SGLang's request fields,
the per-row state in both engines, the vLLM processor (admission and a request's logits row), the
SGLang processor and real Hugging Face `generate`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from tip_decode.core.config import parse_number
from tip_decode.core.interventions import (
    BudgetConfig,
    Intervention,
    InterventionSet,
    InterventionState,
    Key,
    NoWaitConfig,
    interventions,
    namespace_of,
    plan_for,
    register,
    request_mapping,
    unregister,
)
from tip_decode.core.interventions.base import ApplyStep, Rule, RuleTables
from tip_decode.core.interventions.registry import BUILT_IN, names

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BoostConfig:
    amount: float = 4.0
    word: str = "Wait"

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", parse_number(self.amount, "boost_amount", minimum=0.0))
        if not isinstance(self.word, str) or not self.word:
            raise ValueError(f"`boost_word` has to be a non-empty string, but is {self.word!r}")

    @property
    def enabled(self) -> bool:
        return self.amount > 0

    def to_mapping(self) -> dict[str, Any]:
        return {"boost": 1, "boost_amount": self.amount, "boost_word": self.word}


class BoostRule(Rule):
    name = "boost"

    def __init__(self, structure: Hashable, info: Any) -> None:
        (word,) = structure  # type: ignore[misc]
        self.token_ids = info.ordinary_ids(word, "boost_word")[:1]

    def compile(self, layout, width, tables) -> BoostTables:
        return BoostTables(self, layout)


class BoostTables(RuleTables):
    def __init__(self, rule: BoostRule, layout) -> None:
        self.token_ids = rule.token_ids
        self.AMOUNT = layout.add_float("boost.amount")

    def settings(self, config):
        return {}, {self.AMOUNT: config.amount}

    def advance(self, step) -> None:
        pass

    def contribute(self, step: ApplyStep) -> None:
        ops = step.ops
        amount = ops.floats(ops.where(step.active, step.floats[:, self.AMOUNT], -0.0))
        self.bias_into(step, amount[:, None])


BOOST = Intervention(
    name="boost",
    config_type=BoostConfig,
    keys={"boost_amount": Key("amount", lambda v, k: parse_number(v, k, minimum=0.0)), "boost_word": Key("word", lambda v, k: v)},
    paper=BoostConfig(),
    structure=lambda c: (c.word,),
    rule=BoostRule,
    finite=lambda c: True,
    order=60,
    title="a throw-away intervention of the tests",
)


@pytest.fixture
def boost():
    register(BOOST)
    try:
        yield BOOST
    finally:
        unregister("boost")
    assert "boost" not in names()


def test_settings_and_flat_keys(boost):
    assert names() == (
        "tip",
        "nowait",
        "affirm",
        "cyclic",
        "gated",
        "boost",
        "budget",
        "alphaone",
        "deepconf",
        "inject",
        "thinkbrake",
        "nothinking",
    )  # plan order
    settings = InterventionSet(boost=BoostConfig(amount=2.5), nowait=NoWaitConfig(keywords=("wait",)))
    assert settings.boost == BoostConfig(2.5, "Wait") and settings.tip is None
    assert settings.names == ("nowait", "boost")
    assert settings.structure == (("nowait", (("wait",), "auto")), ("boost", ("Wait",)))
    assert settings.to_mapping() == {"nowait": 1, "nowait_keywords": ["wait"], "nowait_scope": "auto", "boost": 1, "boost_amount": 2.5, "boost_word": "Wait"}
    assert InterventionSet.from_mapping(settings.to_mapping()) == settings
    assert hash(InterventionSet.from_mapping(settings.to_mapping())) == hash(settings)
    assert InterventionSet.from_mapping({"boost": 1}).boost == BoostConfig()
    assert InterventionSet.from_mapping({"boost_amount": "3"}).boost == BoostConfig(amount=3.0)
    assert InterventionSet.from_mapping({"boost": 1, "boost_amount": 0}).boost is None  # its own values turn it off
    assert not InterventionSet.from_mapping({"boost": 0})
    assert namespace_of("boost_word") is boost and namespace_of("booster") is None
    with pytest.raises(ValueError, match=r"unknown boost argument `boost_size` \(known: boost, boost_amount, boost_word\)"):
        InterventionSet.from_mapping({"boost_size": 1})
    with pytest.raises(ValueError, match="`boost_amount` has to be a number >= 0, but is -1"):
        InterventionSet.from_mapping({"boost_amount": -1})
    with pytest.raises(TypeError, match="`boost` has to be a BoostConfig or None"):
        InterventionSet(boost=BudgetConfig(max=3))
    # Off-keys: a request sends every intervention, the throw-away one included.
    assert request_mapping(InterventionSet()) == {
        "tip_alpha": 0, "nowait": 0, "affirm": 0, "cyclic": 0, "gated": 0, "boost": 0, "budget": 0, "alphaone": 0, "inject": 0, "nothinking": 0, "deepconf": 0, "thinkbrake": 0,
    }  # fmt: skip
    assert request_mapping(settings)["boost_amount"] == 2.5 and request_mapping(settings)["tip_alpha"] == 0


def test_specs_and_summaries(boost):
    from tip_decode.harness.configs import RunConfig, parse_config_spec, parse_fixed, settings_text

    config = parse_config_spec("boost:amount=2,word=Hmm")
    assert config.name == "boost" and config.interventions.boost == BoostConfig(2.0, "Hmm")
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert parse_config_spec("b=nowait+boost:boost.amount=7").interventions.names == ("nowait", "boost")
    assert parse_config_spec("boost_amount=5,budget_max=9").interventions.names == ("boost", "budget")
    assert parse_config_spec("boost=1").interventions.boost == BoostConfig()
    assert parse_fixed("boost:amount=1").boost.amount == 1.0
    with pytest.raises(ValueError, match=r"amout is not a setting of boost \(boost: amount, word\); did you mean amount\?"):
        parse_config_spec("boost:amout=1")
    with pytest.raises(
        ValueError,
        match=r"known: baseline, tip, nowait, affirm, cyclic, gated, boost, budget, alphaone, deepconf, inject, thinkbrake, nothinking\); did you mean boost\?",
    ):
        parse_config_spec("bost")
    with pytest.raises(ValueError, match="amount=0 turns boost off"):
        parse_config_spec("boost:amount=0")
    with pytest.raises(ValueError, match="boost.amount has to be a number >= 0"):
        parse_config_spec("boost:amount=-2")
    assert settings_text(config.interventions.to_mapping()) == "boost: amount=2, word=Hmm"
    assert settings_text({"tip_alpha": 3, "boost": 1}) == "tip: alpha=3, beta=600, triggers=alternatively, scope=auto; boost: amount=4, word=Wait"


def test_server_defaults_and_sglang_fields(boost):
    from tip_decode.core.server_defaults import ENV_INTERVENTIONS, server_environment, server_settings
    from tip_decode.sglang import custom_params, generate_fields

    settings = InterventionSet.from_mapping({"boost_amount": 1.5, "budget_max": 20})
    env = server_environment(settings, "tok")
    assert json.loads(env[ENV_INTERVENTIONS])["boost_amount"] == 1.5
    assert server_settings(env) == settings
    assert server_settings({ENV_INTERVENTIONS: '{"boost": 1}'}).boost == BoostConfig()
    assert custom_params(boost=1) == {"boost": 1}
    assert custom_params({"boost_amount": 2}) == {"boost_amount": 2.0}
    assert custom_params(settings)["boost_amount"] == 1.5 and custom_params(InterventionSet())["boost"] == 0
    assert generate_fields(boost_word="Hmm")["sampling_params"]["custom_params"] == {"boost_word": "Hmm"}
    with pytest.raises(TypeError, match=r"unknown setting\(s\) bost .*boost"):
        custom_params(bost=1)


def test_state_in_both_engines(boost, qwen3_tokenizer):
    settings = InterventionSet(boost=BoostConfig(amount=2.0, word=" Wait"), nowait=NoWaitConfig(keywords=("hmm",), scope="all"))
    tables = plan_for(qwen3_tokenizer, settings).tables(151936, "cpu")
    wait = qwen3_tokenizer.encode(" Wait", add_special_tokens=False)[0]
    outs = []
    for host in (True, False):
        state = InterventionState(tables, 2, host=host)
        assert state.host == host
        state.start_rows([0, 1], [settings] * 2, [False, True], [0, 0])
        state.update(torch.tensor([11, 12]))
        logits = torch.zeros(2, 151936)
        outs.append(state.apply(logits, finite=False))
    assert torch.equal(outs[0], outs[1])
    assert outs[0][:, wait].tolist() == [2.0, 2.0]
    assert not settings.only_finite and InterventionSet(boost=BoostConfig()).only_finite


def test_hugging_face_generate(boost, tiny_qwen2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tip_decode.hf import ReasoningInterventionsProcessor

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).eval()
    inputs = tokenizer(["Solve 2x + 3 = 11."], return_tensors="pt")
    hmm = tokenizer.encode(" Hmm", add_special_tokens=False)[0]
    plain = model.generate(**inputs, do_sample=False, max_new_tokens=6, pad_token_id=tokenizer.eos_token_id)
    assert hmm not in plain[0].tolist()
    for processor in (
        ReasoningInterventionsProcessor(tokenizer, boost=BoostConfig(amount=1000.0, word=" Hmm")),
        ReasoningInterventionsProcessor(tokenizer, {"boost_amount": 1000, "boost_word": " Hmm"}),
    ):
        assert processor.interventions.names == ("boost",)
        out = model.generate(**inputs, do_sample=False, max_new_tokens=6, logits_processor=[processor], pad_token_id=tokenizer.eos_token_id)
        assert out[0, inputs["input_ids"].shape[1] :].tolist() == [hmm] * 6
    with pytest.raises(TypeError, match="unknown intervention `bost`"):
        ReasoningInterventionsProcessor(tokenizer, bost=BoostConfig())


@pytest.mark.vllm
def test_vllm_processor(boost, tokenizers_dir, monkeypatch):
    """Through the vLLM processor's Model Runner V2 interface (every supported vLLM has it): admission
    names the key, and a request's boost reaches its logits row."""
    pytest.importorskip("vllm")
    import random

    from vllm import SamplingParams
    from vllm_world import Mrv2Batch, fake_config

    from tip_decode.vllm import ReasoningInterventions

    for name in ("TIP_DECODE_INTERVENTIONS", "TIP_DECODE_ALPHA", "TIP_DECODE_BETA", "TIP_DECODE_TRIGGERS", "TIP_DECODE_SCOPE", "TIP_DECODE_TOKENIZER"):
        monkeypatch.delenv(name, raising=False)
    width = 151936
    batch = Mrv2Batch(1, width, 8)
    processor = ReasoningInterventions(fake_config(str(tokenizers_dir / "qwen3"), 1, width), batch.rs)
    with pytest.raises(ValueError, match="`boost_amount`"):
        ReasoningInterventions.validate_params(SamplingParams(extra_args={"boost_amount": -1}))
    with pytest.raises(ValueError, match="`boost_word`"):  # only the tokenizer can tell
        ReasoningInterventions.validate_params(SamplingParams(extra_args={"boost_word": "<|im_end|>"}))
    assert batch.add(processor, 0, SamplingParams(extra_args={"boost_amount": 2.5, "boost_word": " Hmm"}), [1, 2], prompt_len=2)
    processor.apply_staged_writes()
    batch.computed[0] = 2  # the prompt is computed: the step decodes
    context = batch.context([batch.schedule(0, 0, random.Random(0))])
    out = processor.apply(torch.zeros(1, width), context)
    hmm = processor.tokenizer.encode(" Hmm", add_special_tokens=False)[0]
    assert out[0, hmm] == 2.5 and int((out != 0).sum()) == 1


def test_sglang_processor(boost, tokenizers_dir, monkeypatch, caplog):
    """Through SGLang's custom logit processor (the scheduler's side, as SGLang calls it per batch):
    a request's boost reaches its row, and a bad value turns that request off, naming the key."""
    import weakref

    import tip_decode.adapters.sglang as adapter
    from tip_decode.sglang import ReasoningInterventions

    monkeypatch.setenv(adapter.ENV_TOKENIZER, str(tokenizers_dir / "qwen3"))
    for name in (adapter.ENV_ALPHA, adapter.ENV_BETA, adapter.ENV_TRIGGERS, adapter.ENV_SCOPE, adapter.ENV_INTERVENTIONS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(adapter, "_REGISTRY", adapter._Registry())

    class Req:  # the attributes of SGLang's Req the processor reads
        def __init__(self, rid: str) -> None:
            self.rid, self.origin_input_ids, self.output_ids = rid, [1, 2], []

        def finished(self) -> bool:
            return False

    good, bad = Req("good"), Req("bad")
    params = [
        {"boost_amount": 2.5, "boost_word": " Hmm", "__req__": weakref.proxy(good)},
        {"boost_amount": -1, "__req__": weakref.proxy(bad)},
    ]
    with caplog.at_level("WARNING", logger="tip_decode.adapters.sglang"):
        out = ReasoningInterventions()(torch.zeros(2, 151936), params)
    hmm = adapter._REGISTRY.server.tokenizer().encode(" Hmm", add_special_tokens=False)[0]
    assert out[0, hmm] == 2.5 and int((out[0] != 0).sum()) == 1
    assert not out[1].any() and "`boost_amount`" in caplog.text


def test_register_refuses_clashes():
    with pytest.raises(ValueError, match="registered already"):
        register(interventions()[0])
    with pytest.raises(ValueError, match="built in"):
        unregister("tip")
    with pytest.raises(ValueError, match="has to start with 'echo_'"):
        Intervention(
            name="echo",
            config_type=BoostConfig,
            keys={"boost_amount": Key("amount", parse_number)},
            paper=BoostConfig(),
            structure=lambda c: (),
            rule=BoostRule,
        )


# ----- no other list of interventions -----


def _name_literals(tree: ast.AST, known: set[str]) -> list[tuple[int, str]]:
    """Collections (tuple, list, set, dict keys) holding two or more intervention names, and
    comparisons with a name: a hand-written list, or a special case by name."""
    found = []
    for node in ast.walk(tree):
        elements = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else node.keys if isinstance(node, ast.Dict) else None
        if elements is not None:
            hits = [e.value for e in elements if isinstance(e, ast.Constant) and e.value in known]
            if len(hits) >= 2:
                found.append((node.lineno, f"collection of {hits}"))
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in known:
                    found.append((node.lineno, f"comparison with {side.value!r}"))
    return found


def test_the_registry_is_the_only_list_of_interventions():
    known = set(names())
    modules = {f"{name.replace('.', '/')}.py" for name in BUILT_IN}
    offenders = []
    for path in sorted((ROOT / "tip_decode").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        if relative in modules:
            continue  # an intervention's own module may say its own name
        offenders += [f"{relative}:{line}: {what}" for line, what in _name_literals(ast.parse(path.read_text()), known)]
    assert offenders == []
    # The check finds what it is meant to find.
    assert _name_literals(ast.parse('KINDS = ("tip", "nowait")\nif name == "budget": pass'), known) == [
        (1, "collection of ['tip', 'nowait']"),
        (2, "comparison with 'budget'"),
    ]


def test_the_registry_settings_and_every_intervention_import_without_torch():
    """Declarations, rules, settings, the spec language and the server defaults are torch-free: the
    command line reads specs without loading torch, and only the per-step side needs it."""
    import subprocess
    import sys

    modules = [
        *BUILT_IN,
        "tip_decode.core.interventions",
        "tip_decode.core.interventions.spec",
        "tip_decode.core.server_defaults",
        "tip_decode.harness.configs",
    ]
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
