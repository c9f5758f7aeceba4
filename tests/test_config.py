import math

import pytest

from tip_decode import TIPConfig, TRIGGER_PRESETS
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
    with pytest.raises(ValueError, match="unknown TIP argument `tip_alpah`"):
        TIPConfig.from_mapping({"tip_alpah": 3})
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
    assert config == TIPConfig(alpha=3.0, beta=600, triggers=("Wait", "hmm"), scope="all")


def test_mapping_round_trip():
    config = TIPConfig(alpha=4.5, beta=123, triggers="reflection", scope="think")
    assert TIPConfig.from_mapping(config.to_mapping()) == config
    assert set(config.to_mapping()) == set(MAPPING_KEYS)


def test_presets_expand_and_duplicates_collapse():
    assert TIPConfig(triggers="paper").triggers == ("alternatively",)
    assert TIPConfig(triggers="reflection").triggers == TRIGGER_PRESETS["reflection"]
    assert TIPConfig(triggers="paper,Wait,wait, Alternatively").triggers == ("alternatively", "Wait")
    assert TIPConfig(triggers=["hmm", "paper"]).triggers == ("hmm", "alternatively")


def test_config_is_frozen():
    config = TIPConfig()
    with pytest.raises(AttributeError):
        config.alpha = 5  # type: ignore[misc]
