"""Interventions on the command line: `-c` specs of compare/grid/demo, their one-line errors (exit 2,
before any model loads), the settings a run records, and `serve --interventions`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import build_tiny_qwen2
from tip_decode.cli import main
from tip_decode.core.interventions import InterventionSet
from tip_decode.harness import parse_config_spec
from tip_decode.harness.backends import GenerationRequest, OpenAIBackend
from tip_decode.harness.configs import RunConfig, parse_fixed, request_mapping


def invoke(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    return result, errors


@pytest.fixture(scope="module")
def broken_model_dir(tmp_path_factory):
    """A model whose weights cannot be read: an error about a spec proves it came before loading."""
    path = build_tiny_qwen2(tmp_path_factory.mktemp("broken-model"))
    for weights in path.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "p.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(3)))
    return path


@pytest.mark.parametrize(
    ("spec", "name", "flat"),
    [
        ("baseline", "baseline", {}),
        ("tip", "tip", {"tip_alpha": 3.0, "tip_beta": 600}),
        ("nowait", "nowait", {"nowait": 1, "nowait_scope": "auto"}),
        ("cyclic", "cyclic", {"cyclic_amplitude": 5.0, "cyclic_period": 1200.0}),
        ("gated", "gated", {"gated_threshold": 0.672, "gated_alpha": 3.0}),
        ("budget:max=4000", "budget", {"budget_min": 0, "budget_max": 4000}),
        ("budget:budget_min=200,budget_max=4000", "budget", {"budget_min": 200, "budget_max": 4000}),
        ("cyclic:period=300,cyclic_amplitude=2", "cyclic", {"cyclic_period": 300.0, "cyclic_amplitude": 2.0}),
        ("nowait:keywords=wait+hmm", "nowait", {"nowait_keywords": ["wait", "hmm"]}),
        ("gated:gated_threshold=0.5,beta=100", "gated", {"gated_threshold": 0.5, "gated_beta": 100}),
        ("tip+budget:alpha=5,max=4000", "tip+budget", {"tip_alpha": 5.0, "budget_max": 4000}),
        ("tip+gated:tip_alpha=2,gated.alpha=7", "tip+gated", {"tip_alpha": 2.0, "gated_alpha": 7.0}),
        ("tip_alpha=3,budget_max=4000", "tip+budget", {"tip_alpha": 3.0, "budget_max": 4000}),
        ("nowait=1,budget_min=20", "nowait+budget", {"nowait": 1, "budget_min": 20}),
        ("short=cyclic:period=300", "short", {"cyclic_period": 300.0}),
        ("wait:alpha=inf,beta=300,triggers=wait+hmm", "wait", {"tip_alpha": "inf", "tip_triggers": ["wait", "hmm"]}),
    ],
)
def test_specs_take_every_intervention_and_its_flat_keys(spec, name, flat):
    config = parse_config_spec(spec)
    assert config.name == name
    mapping = config.to_dict()["interventions"]
    for key, value in flat.items():
        assert mapping[key] == value, (key, mapping)
    if not flat:
        assert config.is_baseline and mapping == {}
    # run.json's form reads back to the same configuration: a run is reproducible from its files.
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_a_request_carries_every_intervention_explicitly():
    config = parse_config_spec("nowait+budget:min=20")
    request = GenerationRequest(("p", 0, config.name), "q", (1, 2), 0, config.interventions)
    body = OpenAIBackend.extra_body(request)["vllm_xargs"]
    # What it asks for, and every other intervention sent off, so a server default never leaks in.
    assert body["nowait"] == 1 and body["budget_min"] == 20
    assert body["tip_alpha"] == 0 and body["cyclic"] == 0 and body["gated"] == 0
    assert InterventionSet.from_mapping(body) == config.interventions
    assert request_mapping(InterventionSet())["tip_alpha"] == 0


SPEC_MISTAKES = [
    # (spec, message): unknown names and keys, bad values, all one line naming the problem
    (
        "nowiat",
        "'nowiat' is not an intervention (known: baseline, tip, nowait, affirm, cyclic, gated, budget, alphaone, deepconf, inject, thinkbrake, nothinking); did you mean nowait?",
    ),
    ("cyclic:perod=3", "perod is not a setting of cyclic"),
    ("cyclic:period=-5", "cyclic.period"),
    ("budget", "budget needs min > 0 or max"),
    ("budget:max=abc", "budget.max has to be a non-negative integer, but is 'abc'"),
    ("tip:budget_max=3", "budget is not one of its interventions (tip); add it: tip+budget"),
    ("tip+gated:alpha=3", "alpha is a setting of tip and gated; write tip.alpha or gated.alpha"),
    ("nowait+nowait", "names nowait twice"),
    ("tip+baseline", "baseline is standard decoding and combines with nothing"),
    ("tip_alpha=3,foo=2", "foo is not a flat intervention key"),
    ("nowait=0", "nowait=0 turns nowait off"),
    ("cyclic:amplitude=0", "turns cyclic off"),
    ("gated:threshold=x", "gated.threshold"),
]


@pytest.mark.parametrize(("spec", "message"), SPEC_MISTAKES)
def test_spec_mistakes_are_one_line_before_the_model_loads(broken_model_dir, data_file, tmp_path, spec, message):
    result, errors = invoke(["compare", "-m", broken_model_dir, "--data", data_file, "-o", tmp_path / "run", "-c", spec])
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_vocabulary_mistakes_are_found_with_the_tokenizer_before_the_weights(broken_model_dir, data_file, tmp_path):
    result, errors = invoke(
        ["compare", "-m", broken_model_dir, "--data", data_file, "-o", tmp_path / "run", "--backend", "vllm", "-c", "nowait:keywords=zzzqx"]
    )
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and "configuration 'nowait': nowait.keywords: no keyword matches a token" in errors[0], result.output
    assert "cannot load model" not in result.output


def test_demo_and_grid_check_their_specs_first(data_file, tmp_path):
    result, errors = invoke(["demo", "-o", tmp_path / "demo", "-c", "cyclic:perod=3"])
    assert result.exit_code == 2 and len(errors) == 1 and "perod is not a setting of cyclic" in errors[0], result.output
    result, errors = invoke(["demo", "-o", tmp_path / "demo", "--grid", "-c", "tip"])
    assert result.exit_code == 2 and "either --grid or configurations" in errors[0], result.output
    result, errors = invoke(["grid", "-m", tmp_path / "nowhere", "--data", data_file, "-o", tmp_path / "grid", "--fixed", "tip:alpha=3"])
    assert result.exit_code == 2 and "--fixed 'tip:alpha=3': the grid sweeps TIP itself" in errors[0], result.output
    assert not (tmp_path / "demo").exists()


def test_grid_fixed_holds_other_interventions_in_every_cell():
    from tip_decode.harness import grid_configs

    fixed = parse_fixed("budget_max=4000")
    configs = grid_configs([1.0, 3.0], [100], fixed=fixed)
    assert [c.name for c in configs] == ["baseline", "a1_b100", "a3_b100"]
    assert all(c.interventions.budget.max == 4000 for c in configs)
    assert configs[0].tip is None and configs[2].tip.alpha == 3.0


def test_compare_records_each_configurations_full_settings(switchy_model_dir, data_file, tmp_path):
    out = tmp_path / "run"
    specs = ["baseline", "ban=tip:alpha=inf,beta=7,triggers=alternatively+wait,scope=all", "tip_alpha=2,tip_beta=3"]
    args = ["compare", "-m", switchy_model_dir, "--data", data_file, "-o", out, "-k", "1", "--max-new-tokens", "4", "--quiet"]
    result = CliRunner().invoke(main, [str(a) for a in args] + [arg for spec in specs for arg in ("-c", spec)])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    recorded = {c["name"]: c["interventions"] for c in run["configs"]}
    assert recorded == {
        "baseline": {},
        "ban": {"tip_alpha": "inf", "tip_beta": 7, "tip_triggers": ["alternatively", "wait"], "tip_scope": "all"},
        "tip": {"tip_alpha": 2.0, "tip_beta": 3, "tip_triggers": ["alternatively"], "tip_scope": "auto"},
    }
    summary = json.loads((out / "summary.json").read_text())
    assert {name: m["interventions"] for name, m in summary["configs"].items()} == recorded
    record = json.loads((out / "ban.jsonl").read_text().splitlines()[0])
    assert record["interventions"] == recorded["ban"]
    md = (out / "summary.md").read_text()
    assert "| ban      | tip: alpha=inf, beta=7, triggers=alternatively+wait, scope=all |" in md
    assert "| tip      | tip: alpha=2, beta=3, triggers=alternatively, scope=auto " in md
    # The switchy model says " Alternatively" at every step; the ban never lets it.
    ban_ids = [json.loads(line)["token_ids"] for line in (out / "ban.jsonl").read_text().splitlines()]
    base_ids = [json.loads(line)["token_ids"] for line in (out / "baseline.jsonl").read_text().splitlines()]
    assert ban_ids != base_ids
    # A rerun with other settings under a recorded name is refused, naming both.
    again = CliRunner().invoke(main, [str(a) for a in args] + ["-c", "ban=tip:alpha=1"])
    assert again.exit_code == 2 and "holds configuration 'ban' with other settings" in again.output, again.output


def test_serve_interventions_are_checked_before_the_server_starts(tokenizers_dir):
    qwen3 = tokenizers_dir / "qwen3"
    cases = [
        ("tip", "TIP's server default is --alpha/--beta/--triggers/--scope"),
        ("nowait:keywords=zzzqx", "--interventions: nowait.keywords: no keyword matches a token"),
        ("budget:max=abc", "--interventions 'budget:max=abc': budget.max has to be a non-negative integer"),
        ("sleep", "'sleep' is not an intervention"),
    ]
    for spec, message in cases:
        result, errors = invoke(["serve", qwen3, "--interventions", spec])
        assert result.exit_code == 2, result.output
        assert len(errors) == 1 and message in errors[0], result.output
    result, errors = invoke(["serve", tokenizers_dir / "llama-3.1", "--interventions", "budget:min=5"])
    assert result.exit_code == 2 and "need single-token think markers" in errors[0], result.output
    # SGLang's processor takes the same defaults, checked the same way before its server starts.
    result, errors = invoke(["serve", tokenizers_dir / "llama-3.1", "--engine", "sglang", "--interventions", "budget:min=5"])
    assert result.exit_code == 2 and "need single-token think markers" in errors[0], result.output


def test_serve_passes_the_interventions_as_the_processor_reads_them():
    from tip_decode.cli.serve import server_env
    from tip_decode.core.config import TIPConfig
    from tip_decode.core.server_defaults import ENV_BETA, ENV_INTERVENTIONS, server_settings

    interventions = parse_fixed("nowait+budget:max=4000,keywords=wait+hmm")
    inherited = {ENV_INTERVENTIONS: '{"cyclic_amplitude": 9}', ENV_BETA: "7"}
    env = server_env(TIPConfig(alpha=3, beta=600), "tok", base=inherited, interventions=interventions)
    # One variable holds the whole default, every intervention explicit (those off as off).
    assert json.loads(env[ENV_INTERVENTIONS]) == {
        "tip_alpha": 3.0, "tip_beta": 600, "tip_triggers": ["alternatively"], "tip_scope": "auto",
        "nowait": 1, "nowait_keywords": ["wait", "hmm"], "nowait_scope": "auto",
        "cyclic": 0, "gated": 0,
        "budget_min": 0, "budget_max": 4000, "budget_word": "",
        "affirm": 0, "alphaone": 0, "inject": 0, "nothinking": 0, "deepconf": 0, "thinkbrake": 0,
    }  # fmt: skip
    assert ENV_BETA not in env and env["TIP_DECODE_TOKENIZER"] == "tok"  # inherited defaults are dropped
    settings = server_settings(env)  # what the vLLM processor's server default will be
    assert settings.nowait.keywords == ("wait", "hmm") and settings.budget.max == 4000
    assert settings.tip.alpha == 3.0 and settings.cyclic is None  # an inherited variable is not kept
    off = server_env(TIPConfig(alpha=0), "tok", base={ENV_INTERVENTIONS: '{"nowait": 1}'})
    assert json.loads(off[ENV_INTERVENTIONS]) == {
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
    assert not server_settings(off)
