"""Every intervention's keys through a real OpenAI-compatible server (the session's `tip_server`).

A bad value of each namespaced key is rejected at admission with HTTP 400 naming the key; good
requests with several interventions are served, and the server goes on serving.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

BAD = [
    ({"nowait": "perhaps"}, "nowait"),
    ({"nowait_keywords": []}, "nowait_keywords"),
    ({"nowait_scope": "sometimes"}, "nowait_scope"),
    ({"nowait_keyword": ["wait"]}, "nowait_keyword"),
    ({"nowait_keywords": ["zzqqxxjj"]}, "nowait_keywords"),  # matches no token: needs the tokenizer
    ({"cyclic_amplitude": -2}, "cyclic_amplitude"),
    ({"cyclic_period": 0}, "cyclic_period"),
    ({"cyclic_shift": "later"}, "cyclic_shift"),
    ({"cyclic_start": 1.5}, "cyclic_start"),
    ({"cyclic_start": 9, "cyclic_end": 3}, "cyclic_end"),
    ({"cyclic_words": ["NotAPieceAnywhere123"]}, "cyclic_words"),  # needs the tokenizer
    ({"cyclic_scope": "x"}, "cyclic_scope"),
    ({"budget_min": -1}, "budget_min"),
    ({"budget_max": 2.5}, "budget_max"),
    ({"budget_min": 9, "budget_max": 3}, "budget_min"),
    ({"budget_word": "<|im_end|>", "budget_min": 4}, "budget_word"),  # special token: needs the tokenizer
    ({"budget": 1}, "budget"),
    ({"budget_limit": 1}, "budget_limit"),
    ({"gated_alpha": "lots"}, "gated_alpha"),
    ({"gated_beta": -1}, "gated_beta"),
    ({"gated_threshold": -0.5}, "gated_threshold"),
    ({"gated_triggers": []}, "gated_triggers"),
    ({"gated_scope": "x"}, "gated_scope"),
    ({"gated_window": 4}, "gated_window"),
    ({"thinkbrake_tau": -0.1}, "thinkbrake_tau"),
    ({"thinkbrake_boundary": []}, "thinkbrake_boundary"),
    ({"thinkbrake_temperature": 0}, "thinkbrake_temperature"),
    ({"thinkbrake_boundary": "x"}, "thinkbrake_tau"),  # required
    ({"thinkbrake_tau": 1, "thinkbrake_boundary": "a\\q"}, "thinkbrake_boundary"),  # not an escape
    ({"deepconf_threshold": 0}, "deepconf_threshold"),
    ({"deepconf_window": 0}, "deepconf_window"),
    ({"deepconf_topk": 5000}, "deepconf_topk"),
    ({"deepconf_window": 8}, "deepconf_threshold"),  # required
    # issue 21 (the flat keys of affirm, alphaone, inject, nothinking)
    ({"affirm_tau": 1.5}, "affirm_tau"),
    ({"affirm_words": []}, "affirm_words"),
    ({"affirm_scope": "x"}, "affirm_scope"),
    ({"alphaone_moment": -3}, "alphaone_moment"),
    ({"alphaone_alpha": "lots"}, "alphaone_alpha"),
    ({"alphaone_think_tokens": 0}, "alphaone_think_tokens"),
    ({"alphaone_seed": -1}, "alphaone_seed"),
    ({"alphaone_temperature": -1}, "alphaone_temperature"),
    ({"alphaone": 2}, "alphaone"),
    ({"inject_text": 5}, "inject_text"),
    ({"inject": 1}, "inject"),
    ({"nothinking": 2}, "nothinking"),
    ({"nothinking_txt": "a"}, "nothinking_txt"),
    ({"alphaone": 1, "affirm": 1}, "alphaone"),  # a refused combination
    ({"affirm_words": ["zzqqxxjj"]}, "affirm_words"),  # matches no token: needs the tokenizer
    ({"inject_text": "ok <|im_end|>"}, "inject_text"),
    ({"alphaone_word": "<think>"}, "alphaone_word"),
]


def complete(client, server, xargs: dict | None, **kwargs):
    return client.completions.create(
        model=server.model,
        prompt="Question: what is 12 times 7?\nAnswer: <think>",
        max_tokens=12,
        temperature=0.0,
        extra_body={"vllm_xargs": xargs} if xargs is not None else {},
        **kwargs,
    )


def test_every_bad_key_is_http_400_naming_it(tip_server):
    pytest.importorskip("vllm")
    import openai

    client = openai.OpenAI(base_url=tip_server.base_url, api_key="EMPTY", max_retries=0, timeout=300)
    for bad, key in BAD:
        with pytest.raises(openai.BadRequestError) as info:
            complete(client, tip_server, bad)
        assert info.value.status_code == 400, (bad, info.value)
        assert f"`{key}`" in str(info.value), (bad, str(info.value))
    # Interventions combined in one request are served, the budget ends the thinking on time, and
    # the server is still up.
    reply = complete(client, tip_server, {"tip_alpha": 3, "nowait": 1, "cyclic": 1, "gated": 1, "budget_max": 2}, logprobs=1)
    tokens = reply.choices[0].logprobs.tokens
    assert tokens[2] == "</think>", tokens
    assert tip_server.process.poll() is None
