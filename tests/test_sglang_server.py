"""The TIP processor inside real SGLang servers (the tiny Qwen2 on CPU, `--model-impl transformers`).

One server, started once for the module: `tip-decode serve --engine sglang`, SGLang's overlap
scheduler on, with the delayed sampling `tip-decode serve` turns on, so the processor sees the
current output: the exact penalty. SGLang's own launcher without delayed sampling is in
test_sglang_overlap.py; the offline engine with the overlap scheduler off in test_sglang_engine.py.

Processed logits are observed through SGLang's own `return_logprob` / `token_ids_logprob` (greedy
requests: log-softmax of the logits after the processor), compared with a run without the processor.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sglang_support import (
    PROMPTS,
    SERVER_ARGS,
    batch_generate,
    build_model,
    free_port,
    greedy,
    hf_parity_check,
    mixed_batch_check,
    read_records,
    sglang_python,
    start_server,
    stop,
    subprocess_env,
    untouched_outputs,
    word_triggers,
)

pytestmark = [pytest.mark.sglang, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
UNTOUCHED_STEPS = 24


@pytest.fixture(scope="module")
def python() -> str:
    return sglang_python()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, python) -> Path:
    return build_model(tmp_path_factory.mktemp("sglang-tiny"))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def _tip_decode(python: str) -> list[str]:
    script = Path(python).with_name("tip-decode")
    return [str(script)] if script.exists() else [python, "-c", "import sys; from tip_decode.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def served(python, model_dir, tmp_path_factory):
    """`tip-decode serve --engine sglang` with TIP off by default; records the registry per call."""
    folder = tmp_path_factory.mktemp("sglang-served")
    port = free_port()
    env = subprocess_env(TIP_DECODE_SGLANG_RECORD=str(folder / "record.jsonl"))
    env.pop("SGLANG_ENABLE_DELAY_SAMPLE", None)
    command = [
        *_tip_decode(python),
        "serve",
        str(model_dir),
        "--engine",
        "sglang",
        "--alpha",
        "0",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--",
        *SERVER_ARGS,
    ]
    server = start_server(command, env, folder / "server.log", port)
    server.record = folder / "record.jsonl"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        stop(server.process)


@pytest.fixture(scope="module")
def untouched(served, tokenizer) -> list[list[int]]:
    return untouched_outputs(served, tokenizer)


# ----------------------------------------------------------------------------- exactness


def test_mixed_batch_matches_reference_with_delayed_sampling(served, tokenizer, untouched):
    """Overlap scheduler on + SGLANG_ENABLE_DELAY_SAMPLE (tip-decode serve): the exact penalty at every step."""
    mixed_batch_check(batch_generate(served), tokenizer, untouched, lag=False)


def test_greedy_output_equals_hf_generate_with_tip(served, tokenizer, untouched, model_dir):
    hf_parity_check(batch_generate(served), tokenizer, untouched, model_dir)


# ----------------------------------------------------------------------------- robustness


def test_bad_parameters_turn_tip_off_and_the_server_keeps_serving(served, tokenizer, untouched):
    from tip_decode.sglang import custom_params, processor_string

    words = word_triggers(tokenizer, untouched, 3)
    prompt = tokenizer.encode(PROMPTS[0])
    processor = processor_string()

    def run(params, with_processor: bool = True) -> list[int]:
        sampling = greedy(UNTOUCHED_STEPS)
        if params is not ...:
            sampling["custom_params"] = params
        body = {"input_ids": prompt, "sampling_params": sampling}
        if with_processor:
            body["custom_logit_processor"] = processor
        return list(served.generate(body)["output_ids"])

    banned = {"tip_alpha": "inf", "tip_beta": UNTOUCHED_STEPS, "tip_triggers": words, "tip_scope": "all"}
    with_tip = run(custom_params(banned))
    assert with_tip != untouched[0]
    bad_inputs = [
        ({"tip_alpha": -1}, "tip_alpha"),
        ({"tip_alpha": 1, "tip_beta": 1.5}, "tip_beta"),
        ({"tip_alpha": 1, "tip_scope": "nowhere"}, "tip_scope"),
        ({"tip_alpha": 1, "tip_typo": 1}, "tip_typo"),
        ({"tip_alpha": 1, "tip_triggers": ["<|im_end|>"]}, "tip_triggers"),  # no token to penalise
        ({"tip_alpha": 1, "tip_triggers": [3]}, "tip_triggers"),
    ]
    for params, key in bad_inputs:
        with pytest.raises(ValueError, match=key):
            custom_params(params, tokenizer=tokenizer)  # the client helper refuses before sending
        assert run(params) == untouched[0], params  # sent anyway: served, TIP off for this request
        assert key in served.log(), f"no warning naming {key}:\n{served.log_tail()}"
    # No custom_params at all: SGLang gives the processor no request; served without TIP.
    assert run(...) == untouched[0]
    assert "custom_params dict" in served.log()
    # The server still serves, and still applies TIP correctly to the next request.
    assert run(custom_params(banned)) == with_tip
    assert served.alive()


def test_requests_are_released_when_they_finish(served, tokenizer):
    """Sequential requests through the recording subclass: the registry does not grow with them."""
    import sglang_recorder

    from tip_decode.sglang import custom_params, processor_string

    recorder = processor_string(sglang_recorder.RecordingThoughtSwitchPenalty)
    prompt = tokenizer.encode(PROMPTS[2])
    served.record.unlink(missing_ok=True)
    for i in range(40):
        served.generate(
            {"input_ids": prompt, "sampling_params": greedy(4, custom_params=custom_params(alpha=1.0 + i, beta=8)), "custom_logit_processor": recorder}
        )
    records = read_records(served.record)
    assert len(records) >= 40 * 4, len(records)
    assert max(r["tracked"] for r in records) <= 20, max(r["tracked"] for r in records)
    assert records[-1]["released"] >= 20, records[-1]
    assert all(r["lagging_rows"] == 0 for r in records), "delayed sampling is on: no row may be late"


# ----------------------------------------------------------------------------- routes, example, harness


def test_openai_routes_apply_tip(served, tokenizer, untouched):
    import openai

    from tip_decode.sglang import openai_fields

    client = openai.OpenAI(base_url=served.url + "/v1", api_key="EMPTY", max_retries=0, timeout=300)
    words = word_triggers(tokenizer, untouched, 3)

    def completion(extra: dict) -> list[str]:
        reply = client.completions.create(
            model="default", prompt=PROMPTS[0], max_tokens=16, temperature=0.0, logprobs=1, extra_body={"min_tokens": 16, **extra}
        )
        return reply.choices[0].logprobs.tokens

    def has_trigger(tokens: list[str]) -> bool:
        return any(t.strip().lower() in words for t in tokens)

    plain_tokens = completion({})
    assert has_trigger(plain_tokens), plain_tokens
    assert completion(openai_fields(alpha=0)) == plain_tokens
    banned = completion(openai_fields(alpha="inf", beta=64, triggers=words, scope="all"))
    assert not has_trigger(banned) and banned != plain_tokens

    def chat(extra: dict) -> str:
        reply = client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "Count to five."}], max_tokens=16, temperature=0.0, extra_body={"min_tokens": 16, **extra}
        )
        return reply.choices[0].message.content or ""

    chat_plain = chat({})
    chat_words = word_triggers(tokenizer, [tokenizer.encode(chat_plain)], 2)
    chat_banned = chat(openai_fields(alpha="inf", beta=64, triggers=chat_words, scope="all"))
    assert chat_banned != chat_plain
    assert not any(w in chat_banned.lower().split() for w in chat_words), (chat_banned, chat_words)


def test_client_example_runs_against_the_server(served):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sglang_client.py"), "--url", served.url, "--max-new-tokens", "8"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-3000:] + served.log_tail()
    for route in ("/generate", "/v1/completions", "/v1/chat/completions"):
        assert f"--- {route}, TIP on" in result.stdout and f"--- {route}, TIP off" in result.stdout, result.stdout


def test_compare_harness_with_the_sglang_backend(served, model_dir, tmp_path):
    from click.testing import CliRunner

    from tip_decode.cli import main

    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {a} + {a}?", "answer": str(2 * a)}) + "\n" for a in (2, 3)))
    out = tmp_path / "run"
    args = [
        "compare",
        "--backend",
        "sglang",
        "--base-url",
        served.url,
        "--tokenizer",
        str(model_dir),
        "--data",
        str(data),
        "-k",
        "2",
        "-c",
        "baseline",
        "-c",
        "tip:alpha=inf,beta=64,triggers=the+a",
        "--max-new-tokens",
        "12",
        "--temperature",
        "0.7",
        "-o",
        str(out),
        "--no-plots",
        "-q",
        "--force-triggers",  # "a" on purpose: a tiny random model says it often, so the penalty acts
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + served.log_tail()
    run = json.loads((out / "run.json").read_text())
    assert run["backend"] == "sglang" and run["backend_version"], run
    records = {name: [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines() if line.strip()] for name in ("baseline", "tip")}
    assert all(len(r) == 2 * 2 for r in records.values()), records


def test_sglang_backend_sends_tip_only_with_a_configuration(served, tokenizer, untouched, model_dir):
    from tip_decode import TIPConfig
    from tip_decode.harness import GenerationRequest, SamplingSettings, SGLangBackend

    backend = SGLangBackend(served.url + "/v1", tokenizer=str(model_dir), sampling=SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=UNTOUCHED_STEPS))
    assert backend.model == str(model_dir) and backend.version
    words = word_triggers(tokenizer, untouched, 3)
    ids = tuple(tokenizer.encode(PROMPTS[0]))
    tip = TIPConfig(alpha=math.inf, beta=UNTOUCHED_STEPS, triggers=words, scope="all")
    requests = [GenerationRequest(("p", 0, "baseline"), PROMPTS[0], ids, 0, None), GenerationRequest(("p", 0, "tip"), PROMPTS[0], ids, 0, tip)]
    assert "custom_logit_processor" not in backend.payload(requests[0])
    assert backend.payload(requests[1])["sampling_params"]["custom_params"]["tip_alpha"] == "inf"
    done = {}
    backend.generate(requests, lambda request, completion: done.setdefault(request.key[2], completion))
    baseline, with_tip = done["baseline"], done["tip"]
    assert list(baseline.token_ids) == untouched[0][: len(baseline.token_ids)]
    assert with_tip.token_ids != baseline.token_ids
    assert not any(tokenizer.decode([t]).strip().lower() in words for t in with_tip.token_ids)
    assert baseline.finish_reason in ("length", "stop")


# ----------------------------------------------------------------------------- every intervention

STREAM_STEPS = 24


def _prompt_facts(prompt_ids: list[int], markers) -> tuple[bool, int]:
    last = {token: i for i, token in enumerate(prompt_ids)}
    opened = last.get(markers.start_id, -1) > last.get(markers.end_id, -1)
    return opened, (len(prompt_ids) - last[markers.start_id] - 1 if opened else 0)


def reference_stream(hf_model, reference, settings, prompt_ids: list[int], steps: int) -> tuple[list[int], int]:
    """The greedy token stream the slow reference gives: transformers' raw logits, the docs' rules.

    Returns the tokens and the number of steps that could be called: a stream stops early where a
    gate is too close to its threshold or the top two processed logits are within `margin` (float
    differences between SGLang's and transformers' forward passes could then pick either).
    """
    import torch
    from reference_interventions import Row

    opened, thinking = _prompt_facts(prompt_ids, reference.markers)
    row = Row(opened, thinking, logits={})
    margin = 1e-3
    for t in range(steps):
        with torch.no_grad():
            raw = hf_model(torch.tensor([prompt_ids + row.generated])).logits[0, -1].float()
        row.logits[t] = raw
        bias, forced, uncertain = reference.expected(settings, row, t) if settings else ({}, None, False)
        if uncertain:
            return row.generated, t
        out = raw.clone()
        for token, value in bias.items():
            out[token] = -math.inf if value == -math.inf else out[token] + value
        if forced is not None:
            token = forced
        else:
            top2 = torch.topk(out, 2)
            if float(top2.values[0] - top2.values[1]) < margin:
                return row.generated, t
            token = int(top2.indices[0])
        row.generated.append(token)
    return row.generated, steps


def test_every_intervention_and_a_mixed_batch_match_the_reference_stream(served, tokenizer, untouched, model_dir):
    """Greedy token streams through `tip-decode serve --engine sglang`, one batch mixing every
    intervention alone and combined (plus off and no processor), then each request alone: every
    stream equals the one the slow reference (tests/reference_interventions.py) gives over
    transformers' raw logits of the same model, and each intervention changes some stream."""
    import torch
    from reference_interventions import Reference, entropy

    from tip_decode.core.interventions import InterventionSet
    from tip_decode.harness.backend_base import load_hf_causal_lm
    from tip_decode.sglang import custom_params, processor_string

    hf_model = load_hf_causal_lm(str(model_dir), dtype=torch.float32).eval()
    reference = Reference(tokenizer, gate_margin=5e-3)
    prompts = [tokenizer.encode(p) for p in PROMPTS]
    words = word_triggers(tokenizer, untouched, 5)
    # A gate threshold between the thoughts' mean entropies, so the gate opens on some steps and not others.
    with torch.no_grad():
        logits = hf_model(torch.tensor([prompts[1] + untouched[1][:STREAM_STEPS]])).logits[0, len(prompts[1]) - 1 :]
    entropies = sorted(entropy(row) for row in logits)
    threshold = float(entropies[len(entropies) // 2]) + 1e-2
    settings_list = [
        InterventionSet.from_mapping({"tip_alpha": "inf", "tip_beta": 8, "tip_triggers": words[:3], "tip_scope": "all"}),
        InterventionSet.from_mapping({"nowait_keywords": words[:3], "nowait_scope": "all"}),
        InterventionSet.from_mapping({"cyclic_amplitude": 40.0, "cyclic_period": 8, "cyclic_words": words[:3], "cyclic_scope": "all"}),
        InterventionSet.from_mapping({"budget_max": 6}),
        InterventionSet.from_mapping({"budget_min": 4, "budget_max": 10, "budget_word": " Hmm, wait"}),
        InterventionSet.from_mapping({"gated_alpha": "inf", "gated_beta": 12, "gated_triggers": words[:3], "gated_scope": "all", "gated_threshold": threshold}),
        InterventionSet.from_mapping(
            {
                "tip_alpha": 3.0,
                "tip_beta": 6,
                "tip_triggers": words[3:5],
                "tip_scope": "all",
                "nowait_keywords": words[:2],
                "nowait_scope": "all",
                "budget_max": 8,
            }
        ),
        InterventionSet(),  # sent whole: every intervention off, whatever the server default
        None,  # no processor at all
    ]
    rows = [(p, s) for p in range(len(prompts)) for s in range(len(settings_list))]
    processor = processor_string()

    def body(items: list[tuple[int, int]]) -> dict:
        settings = [settings_list[s] for _, s in items]
        sampling = [
            {
                "temperature": 0.0,
                "max_new_tokens": STREAM_STEPS,
                "ignore_eos": True,
                **({} if x is None else {"custom_params": custom_params(x, tokenizer=tokenizer)}),
            }
            for x in settings
        ]
        out = {"input_ids": [prompts[p] for p, _ in items], "sampling_params": sampling}
        if any(x is not None for x in settings):
            out["custom_logit_processor"] = [None if x is None else processor for x in settings]
        return out

    batch = served.generate(body(rows))
    streams = {key: list(reply["output_ids"]) for key, reply in zip(rows, batch)}
    alone = {key: list(served.generate(body([key]))[0]["output_ids"]) for key in rows if key[0] == 1}
    compared = 0
    changed: set[int] = set()
    for (p, s), got in streams.items():
        settings = settings_list[s]
        want, called = reference_stream(hf_model, reference, settings, prompts[p], STREAM_STEPS)
        where = (PROMPTS[p][:20], None if settings is None else settings.to_mapping())
        assert got[:called] == want[:called], where
        if (p, s) in alone:
            assert alone[(p, s)][:called] == want[:called], ("alone", *where)
        compared += called
        if got != streams[(p, len(settings_list) - 1)]:
            changed.add(s)
    assert compared >= len(rows) * STREAM_STEPS * 3 // 4, compared
    # Off and no processor give the untouched stream; every intervention changes some stream.
    assert streams[(1, len(settings_list) - 2)] == streams[(1, len(settings_list) - 1)]
    assert changed >= set(range(len(settings_list) - 2)), sorted(changed)
    assert served.alive()
