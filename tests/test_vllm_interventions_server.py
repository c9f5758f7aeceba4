"""Every intervention's keys through a real OpenAI-compatible server (the session's `tip_server`).

A bad value of each namespaced key is rejected at admission with HTTP 400 naming the key; good
requests with several interventions are served, and the server goes on serving.
"""

from __future__ import annotations

import pytest
from bad_settings import BAD

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


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
