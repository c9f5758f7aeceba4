import math

import numpy as np
import pytest
from conftest import load_hf_tokenizer

from tip_decode import TRIGGER_PRESETS, TIPConfig
from tip_decode.core.config import MAPPING_KEYS


def test_defaults_are_the_papers():
    config = TIPConfig()
    assert (config.alpha, config.beta, config.triggers, config.scope) == (3.0, 600, ("alternatively",), "auto")
    assert config.enabled


@pytest.mark.parametrize("alpha, beta", [(0, 600), (3.0, 0), (0.0, 0)])
def test_zero_alpha_or_beta_is_off(alpha, beta):
    assert not TIPConfig(alpha=alpha, beta=beta).enabled


def test_inf_alpha_from_string_and_float():
    assert math.isinf(TIPConfig(alpha="inf").alpha)
    assert math.isinf(TIPConfig.from_mapping({"tip_alpha": "inf"}).alpha)
    assert TIPConfig(alpha=float("inf")).to_mapping()["tip_alpha"] == "inf"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -1}, "`alpha` has to be a non-negative number or 'inf', but is -1"),
        ({"alpha": float("nan")}, "`alpha` has to be a non-negative number or 'inf', but is nan"),
        ({"alpha": "lots"}, "`alpha` has to be a non-negative number or 'inf', but is 'lots'"),
        ({"alpha": True}, "`alpha`"),
        ({"beta": -5}, "`beta` has to be a non-negative integer, but is -5"),
        ({"beta": 2.5}, "`beta` has to be a non-negative integer, but is 2.5"),
        ({"beta": "many"}, "`beta` has to be a non-negative integer, but is 'many'"),
        ({"scope": "everywhere"}, "`scope` has to be one of 'auto', 'think', 'all', but is 'everywhere'"),
        ({"triggers": []}, "`triggers` has to name at least one trigger word, but is []"),
        ({"triggers": ["wait", ""]}, "`triggers` has to contain no empty trigger"),
        ({"triggers": [3]}, "`triggers` has to contain only strings"),
        ({"triggers": 7}, "`triggers` has to be a preset name or a list of trigger words, but is 7"),
    ],
)
def test_invalid_keyword_values_name_the_argument(kwargs, message):
    with pytest.raises(ValueError) as info:
        TIPConfig(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "mapping, key",
    [
        ({"tip_alpha": -3}, "tip_alpha"),
        ({"tip_alpha": "nan"}, "tip_alpha"),
        ({"tip_beta": 1.5}, "tip_beta"),
        ({"tip_beta": -1}, "tip_beta"),
        ({"tip_scope": "answer"}, "tip_scope"),
        ({"tip_triggers": []}, "tip_triggers"),
        ({"tip_triggers": [""]}, "tip_triggers"),
    ],
)
def test_invalid_mapping_values_name_the_key(mapping, key):
    with pytest.raises(ValueError) as info:
        TIPConfig.from_mapping(mapping)
    assert f"`{key}`" in str(info.value)
    assert repr(next(iter(mapping.values()))) in str(info.value)


def test_unknown_tip_key_is_an_error_other_keys_are_ignored():
    with pytest.raises(ValueError, match="unknown TIP argument `tip_alpah`") as info:
        TIPConfig.from_mapping({"tip_alpah": 3.25})
    assert "3.25" in str(info.value)  # the value is echoed as well as the key
    assert TIPConfig.from_mapping({"other_feature": 1, "tip_alpha": 2}).alpha == 2.0


def test_mapping_without_alpha_is_off_unless_a_default_is_given():
    assert not TIPConfig.from_mapping({}).enabled
    assert not TIPConfig.from_mapping({"tip_beta": 100}).enabled
    server = TIPConfig(alpha=5, beta=300)
    assert TIPConfig.from_mapping({}, default=server) == server
    assert TIPConfig.from_mapping({"tip_beta": 100}, default=server) == TIPConfig(alpha=5, beta=100)
    assert not TIPConfig.from_mapping({"tip_alpha": 0}, default=server).enabled


def test_mapping_values_as_json_sends_them():
    # vllm_xargs arrive as JSON numbers/strings/lists: 600.0 is an integer, "3" a number
    config = TIPConfig.from_mapping({"tip_alpha": "3", "tip_beta": 600.0, "tip_triggers": ["Wait", "hmm"], "tip_scope": "all"})
    assert config == TIPConfig(alpha=3.0, beta=600, triggers=("wait", "hmm"), scope="all")


def test_mapping_round_trip():
    config = TIPConfig(alpha=4.5, beta=123, triggers="reflection", scope="think")
    assert TIPConfig.from_mapping(config.to_mapping()) == config
    assert set(config.to_mapping()) == set(MAPPING_KEYS)


def test_presets_expand_and_duplicates_collapse():
    assert TIPConfig(triggers="paper").triggers == ("alternatively",)
    assert TIPConfig(triggers="reflection").triggers == TRIGGER_PRESETS["reflection"]
    # Triggers are lowercased before anything else: "Wait" and "wait" are one trigger.
    assert TIPConfig(triggers="paper,Wait,wait, Alternatively").triggers == ("alternatively", "wait")
    assert TIPConfig(triggers=["HMM", "Hmm", "hmm", "Another  Approach"]).triggers == ("hmm", "another approach")
    assert TIPConfig(triggers="REFLECTION").triggers == TRIGGER_PRESETS["reflection"]
    assert TIPConfig(triggers=["hmm", "paper"]).triggers == ("hmm", "alternatively")


def test_config_is_frozen():
    config = TIPConfig()
    with pytest.raises(AttributeError):
        config.alpha = 5  # type: ignore[misc]


@pytest.mark.parametrize("value", [np.int64(600), np.int32(7), np.uint16(3), np.float64(600.0), np.float32(5.0)])
def test_numpy_integers_are_valid_betas(value):
    assert TIPConfig(beta=value).beta == int(value)
    assert type(TIPConfig(beta=value).beta) is int
    assert TIPConfig.from_mapping({"tip_alpha": 1, "tip_beta": value}).beta == int(value)


@pytest.mark.parametrize("value", [np.float32(2.5), np.float64(3.0), np.float16(1.5), np.int64(2), np.float64("inf")])
def test_numpy_numbers_are_valid_alphas(value):
    assert TIPConfig(alpha=value).alpha == float(value)
    assert type(TIPConfig(alpha=value).alpha) is float


@pytest.mark.parametrize("value", [np.bool_(True), np.float32("nan"), np.float64(-1.0)])
def test_numpy_non_numbers_are_rejected(value):
    with pytest.raises(ValueError, match="`alpha`"):
        TIPConfig(alpha=value)
    with pytest.raises(ValueError, match="`beta`"):
        TIPConfig(beta=value)


@pytest.mark.parametrize("beta", [10**30, 2**63, 2**31, 1e30, "99999999999999999999"])
def test_huge_beta_is_refused_with_the_bound_the_command_line_uses(beta):
    """One bound for the API, server requests and the command line (it once clamped 10**30 silently
    here while the CLI refused anything over 2**31 - 1)."""
    from tip_decode.core.config import MAX_BETA
    from tip_decode.harness.configs import MAX_SPEC_BETA, parse_config_spec

    assert MAX_BETA == MAX_SPEC_BETA == 2**31 - 1
    with pytest.raises(ValueError, match=r"`beta` has to be at most 2147483647"):
        TIPConfig(beta=beta)
    with pytest.raises(ValueError, match=r"`tip_beta` has to be at most 2147483647"):
        TIPConfig.from_mapping({"tip_alpha": 1, "tip_beta": beta})
    with pytest.raises(ValueError, match="at most 2147483647"):
        parse_config_spec(f"tip:beta={beta}")


def test_the_largest_beta_is_kept_as_given():
    assert TIPConfig(beta=2**31 - 1).beta == 2**31 - 1
    assert TIPConfig.from_mapping({"tip_alpha": 1, "tip_beta": float(2**31 - 1)}).beta == 2**31 - 1


@pytest.mark.parametrize("text", ["1e400", "-1e400", "1E999"])
def test_alpha_string_that_overflows_is_not_a_ban(text):
    with pytest.raises(ValueError, match="`tip_alpha`") as info:
        TIPConfig.from_mapping({"tip_alpha": text})
    assert repr(text) in str(info.value)
    with pytest.raises(ValueError, match="`alpha`"):
        TIPConfig(alpha=text)


@pytest.mark.parametrize("text", ["inf", "INF", " +inf ", "Infinity"])
def test_only_an_explicit_infinity_bans(text):
    assert math.isinf(TIPConfig(alpha=text).alpha)


def test_alpha_int_beyond_float_range_is_a_value_error():
    with pytest.raises(ValueError, match="`alpha` has to be a non-negative number below 1.8e308"):
        TIPConfig(alpha=10**400)


# ----- one number parser family: every flat key takes numpy numbers as it takes Python's -----

#: Flat keys of every intervention with a numeric value, and one valid number for each.
NUMERIC_KEYS = {
    "tip_alpha": 2.5, "tip_beta": 5,
    "cyclic_amplitude": 2.5, "cyclic_period": 8, "cyclic_shift": 0.5, "cyclic_start": 2, "cyclic_end": 9,
    "budget_min": 3, "budget_max": 5,
    "gated_alpha": 2.5, "gated_beta": 5, "gated_threshold": 0.5,
}  # fmt: skip


@pytest.mark.parametrize("key", sorted(NUMERIC_KEYS))
def test_numpy_scalars_are_accepted_by_every_key_as_python_numbers_are(key):
    from tip_decode.core.interventions import InterventionSet

    python = NUMERIC_KEYS[key]
    expected = InterventionSet.from_mapping({key: python}).to_mapping()
    kinds = (np.float32, np.float64, np.int64, np.int32) if float(python).is_integer() else (np.float32, np.float64)
    for kind in kinds:
        assert InterventionSet.from_mapping({key: kind(python)}).to_mapping() == expected, (key, kind)
    with pytest.raises(ValueError, match=f"`{key}` has to be"):
        InterventionSet.from_mapping({key: np.bool_(True)})  # a numpy bool is no number, as True is not


def test_budget_and_cyclic_counts_take_numpy_integers():
    """The bug: `tip_beta=np.int64(5)` was accepted and `budget_max=np.int64(5)` refused."""
    from tip_decode.core.interventions import BudgetConfig, CyclicConfig, InterventionSet

    settings = InterventionSet.from_mapping({"tip_beta": np.int64(5), "tip_alpha": np.float32(2), "budget_max": np.int64(5), "cyclic_end": np.int64(9)})
    assert settings.tip.beta == 5 and settings.budget == BudgetConfig(max=5) and settings.cyclic == CyclicConfig(end=9)
    assert type(settings.budget.max) is int and type(settings.tip.alpha) is float
    assert BudgetConfig(min=np.int64(2), max=np.float32(4)) == BudgetConfig(min=2, max=4)
    assert BudgetConfig(max=np.int64(-1)).max is None  # -1 means no limit, whatever its type


@pytest.mark.parametrize("key", ["budget_min", "budget_max", "cyclic_start", "cyclic_end"])
def test_every_other_token_count_is_bounded(key):
    """Token counts beyond any sequence are clamped to `MAX_TOKENS` (the int64 state takes them), by
    the API and the command line alike. (Beta alone is refused above `MAX_BETA`: issue 18 asked for
    one bound there, test_huge_beta_is_refused_with_the_bound_the_command_line_uses.)"""
    from tip_decode.core.config import MAX_TOKENS
    from tip_decode.core.interventions import InterventionSet, InterventionState, plan_for

    assert MAX_TOKENS == 2**62
    settings = InterventionSet.from_mapping({key: 10**30})
    assert settings.to_mapping()[key] == 2**62
    state = InterventionState(plan_for(load_hf_tokenizer("qwen3"), settings).tables(151936, "cpu"), 1)
    state.start_rows([0], [settings], [True], [0])  # used to overflow int64
    assert 2**62 in state.ints[0].tolist()
