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
    off = {
        "tip_alpha": 0,
        "nowait": 0,
        "cyclic": 0,
        "gated": 0,
        "budget": 0,
        "affirm": 0,
        "alphaone": 0,
        "inject": 0,
        "nothinking": 0,
        "deepconf": 0,
        "thinkbrake": 0,
    }
    paper_tip = {"tip_alpha": 3.0, "tip_beta": 600, "tip_triggers": ["alternatively"], "tip_scope": "auto"}
    cases = [
        (InterventionSet(), off),
        (InterventionSet(tip=TIPConfig(alpha=3.0, beta=600)), {**off, **paper_tip}),
        (
            InterventionSet(tip=TIPConfig(alpha=math.inf, beta=5, triggers=("wait",), scope="all"), nowait=NoWaitConfig(keywords=("but",))),
            {
                **off,
                "tip_alpha": "inf",
                "tip_beta": 5,
                "tip_triggers": ["wait"],
                "tip_scope": "all",
                "nowait": 1,
                "nowait_keywords": ["but"],
                "nowait_scope": "auto",
            },
        ),
        (
            InterventionSet(budget=BudgetConfig(min=4, max=10, word=" Hmm, wait")),
            {**{k: v for k, v in off.items() if k != "budget"}, "budget_min": 4, "budget_max": 10, "budget_word": " Hmm, wait"},
        ),
    ]
    for settings, written in cases:
        env = server_environment(settings, tokenizer="some/tokenizer")
        assert json.loads(env[ENV_INTERVENTIONS]) == written
        assert env["TIP_DECODE_TOKENIZER"] == "some/tokenizer" and set(env) == {ENV_INTERVENTIONS, "TIP_DECODE_TOKENIZER"}
        assert server_settings(env) == settings
        # An older variable left in the server's environment cannot turn TIP back on.
        assert server_settings({**env, ENV_ALPHA: "7"}) == settings


def test_the_older_tip_variables_are_read_in_one_place(monkeypatch):
    """`TIP_DECODE_ALPHA` / `_BETA` / `_TRIGGERS` / `_SCOPE` are TIP's default under
    `TIP_DECODE_INTERVENTIONS` (whose keys win), read by `legacy_tip_default` alone."""
    env = {ENV_ALPHA: "2", ENV_BETA: "40", ENV_INTERVENTIONS: '{"tip_beta": 7, "nowait": 1}'}
    assert server_settings(env).tip == TIPConfig(alpha=2.0, beta=7)
    assert server_default(env) == TIPConfig(alpha=2.0, beta=7)
    calls = []
    original = server_defaults.legacy_tip_default
    monkeypatch.setattr(server_defaults, "legacy_tip_default", lambda environ=None: calls.append(environ) or original(environ))
    server_settings(env)
    assert calls == [env]
