"""The server-wide defaults (`TIP_DECODE_*` variables), one backend-free home for vLLM and SGLang."""

from __future__ import annotations

import json
import math

import pytest

import tip_decode.adapters.sglang as sglang_adapter
from tip_decode import TIPConfig
from tip_decode.core import server_defaults
from tip_decode.core.interventions import BudgetConfig, InterventionSet, NoWaitConfig
from tip_decode.core.server_defaults import ENV_ALPHA, ENV_BETA, ENV_INTERVENTIONS, ENV_SCOPE, ENV_TRIGGERS, server_default, server_environment, server_settings


def test_both_adapters_read_the_same_defaults():
    pytest.importorskip("vllm")  # the vLLM adapter imports vLLM (the floor environment has none)
    import tip_decode.adapters.vllm.settings as vllm_settings

    for name in ("ENV_ALPHA", "ENV_BETA", "ENV_TRIGGERS", "ENV_SCOPE", "ENV_TOKENIZER", "ENV_INTERVENTIONS", "server_default", "server_settings"):
        assert getattr(vllm_settings, name) is getattr(server_defaults, name), name
        assert getattr(sglang_adapter, name) is getattr(server_defaults, name), name


def test_settings_from_variables():
    env = {ENV_ALPHA: "inf", ENV_BETA: "40", ENV_TRIGGERS: "wait,hmm", ENV_SCOPE: "all", ENV_INTERVENTIONS: json.dumps({"nowait": 1, "budget_max": 9})}
    settings = server_settings(env)
    assert settings.tip == TIPConfig(alpha=math.inf, beta=40, triggers=("wait", "hmm"), scope="all")
    assert settings.nowait == NoWaitConfig() and settings.budget == BudgetConfig(max=9)
    assert settings.names == ("tip", "nowait", "budget")
    assert not server_settings({}) and not server_default({}).enabled
    assert server_settings({ENV_ALPHA: " ", ENV_INTERVENTIONS: "  "}) == server_settings({})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({ENV_ALPHA: "-1"}, ENV_ALPHA),
        ({ENV_ALPHA: "1", ENV_BETA: "1.5"}, ENV_BETA),
        ({ENV_ALPHA: "1", ENV_SCOPE: "nowhere"}, ENV_SCOPE),
        ({ENV_INTERVENTIONS: "{nowait: 1}"}, ENV_INTERVENTIONS),
        ({ENV_INTERVENTIONS: "[1]"}, ENV_INTERVENTIONS),
        ({ENV_INTERVENTIONS: '{"budget_max": -3}'}, "budget_max"),
    ],
)
def test_a_bad_variable_is_named(env, named):
    with pytest.raises(ValueError, match=named):
        server_settings(env)


def test_environment_round_trips():
    cases = [
        InterventionSet(),
        InterventionSet(tip=TIPConfig(alpha=3.0, beta=600)),
        InterventionSet(tip=TIPConfig(alpha=math.inf, beta=5, triggers=("wait",), scope="all"), nowait=NoWaitConfig(keywords=("but",))),
        InterventionSet(budget=BudgetConfig(min=4, max=10, word=" Hmm, wait")),
    ]
    for settings in cases:
        env = server_environment(settings, tokenizer="some/tokenizer")
        back = server_settings(env)
        assert back.names == settings.names and back.to_mapping() == settings.to_mapping(), settings
        assert env["TIP_DECODE_TOKENIZER"] == "some/tokenizer"
