"""Thought judges: reply parsing, retries, the request sent, and the cache, against a real server."""

from __future__ import annotations

import json

import pytest
from conftest import load_hf_tokenizer
from vllm_fixtures import free_port

from tip_decode import SwitchVocabulary
from tip_decode.analysis import JudgeRequest, LLMJudge, Verdict, analyze_response, parse_judge_reply
from tip_decode.analysis.judge import JUDGE_SYSTEM_PROMPT, AnyJudge

REQUEST = JudgeRequest(
    thought_text="Let x be 3. Then 2x = 6, so the answer is 6.",
    candidates=("6",),
    reference="6",
    problem="If x = 3, what is 2x?",
)


@pytest.mark.parametrize(
    "reply, status, confidence",
    [
        ('{"confidence": 2, "reason": "the draft finds 6"}', "correct", 2),
        ('{"confidence": 1, "reason": "maybe"}', "incorrect", 1),
        ('Sure.\n{"reason": "wrong approach", "confidence": 0}', "incorrect", 0),
        ("<think>confidence 0? no, let me see</think>\nConfidence: 2", "correct", 2),
        ('{"confidence": "2"}', "correct", 2),
        ('{"confidence": 3}', "unjudged", None),
        ("I think the draft is fine.", "unjudged", None),
        ("", "unjudged", None),
        (None, "unjudged", None),
        ("<think>Confidence: 2</think> no idea", "unjudged", None),
    ],
)
def test_parse_judge_reply(reply, status, confidence):
    verdict = parse_judge_reply(reply)
    assert (verdict.status, verdict.confidence) == (status, confidence)
    assert verdict.correct is {"correct": True, "incorrect": False, "unjudged": None}[status]


def test_unreachable_endpoint_retries_then_unjudged_and_is_not_cached(tmp_path):
    cache = tmp_path / "cache.jsonl"
    judge = LLMJudge("nobody", base_url=f"http://127.0.0.1:{free_port()}/v1", cache_path=cache, max_retries=2, retry_wait=0.0, timeout=5)
    verdict = judge.judge(REQUEST)
    assert verdict.status == "unjudged" and "request failed" in verdict.detail
    assert judge.calls == 3
    assert not cache.exists()  # a transport failure is retried next time, not remembered
    assert judge.judge(REQUEST).status == "unjudged" and judge.calls == 6


def test_any_judge_and_argument_errors():
    class Fixed:
        def __init__(self, status):
            self.status = status

        def judge(self, request):
            return Verdict(self.status, 2 if self.status == "correct" else 0)

    assert AnyJudge([Fixed("incorrect"), Fixed("correct")]).judge(REQUEST).status == "correct"
    assert AnyJudge([Fixed("incorrect"), Fixed("incorrect")]).judge(REQUEST).status == "incorrect"
    assert AnyJudge([Fixed("incorrect"), Fixed("unjudged")]).judge(REQUEST).status == "unjudged"
    with pytest.raises(ValueError, match="`judges`"):
        AnyJudge([])
    with pytest.raises(ValueError, match="`max_retries`"):
        LLMJudge("m", base_url="http://127.0.0.1:1/v1", max_retries=-1)
    with pytest.raises(ValueError, match="`status`"):
        Verdict("maybe")


@pytest.mark.vllm
def test_llm_judge_against_real_server(tip_server, tmp_path):
    pytest.importorskip("vllm")
    import httpx
    from openai import OpenAI

    sent: list[dict] = []

    def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            sent.append(json.loads(request.content))

    def client():
        http = httpx.Client(event_hooks={"request": [record]}, timeout=120)
        return OpenAI(base_url=tip_server.base_url, api_key="EMPTY", max_retries=0, http_client=http)

    cache = tmp_path / "judge.jsonl"
    judge = LLMJudge(tip_server.model, client=client(), cache_path=cache, max_retries=1, retry_wait=0.0, max_tokens=24)
    verdict = judge.judge(REQUEST)
    # A random-weight model answers garbage: a clear "unjudged" after one retry, no exception.
    assert verdict.status == "unjudged" and verdict.detail.startswith(("malformed reply", "empty reply", "confidence"))
    assert judge.calls == 2 and len(sent) == 2 and sent[0] == sent[1]
    body = sent[0]
    assert body["model"] == tip_server.model and body["temperature"] == 0.0 and body["max_tokens"] == 24
    system, user = body["messages"]
    assert system == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    assert user["role"] == "user"
    for part in (REQUEST.problem, REQUEST.thought_text, "Known correct final answer:\n6", '"confidence": 0|1|2'):
        assert part in user["content"]

    # Cached: neither this judge nor a new one reading the same file sends the request again.
    assert judge.judge(REQUEST) == verdict and judge.calls == 2
    entries = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(entries) == 1 and entries[0]["status"] == "unjudged" and entries[0]["key"] == LLMJudge.cache_key(body)
    again = LLMJudge(tip_server.model, client=client(), cache_path=cache, max_retries=1, retry_wait=0.0, max_tokens=24)
    assert again.judge(REQUEST) == verdict and again.calls == 0 and len(sent) == 2

    # Inside an analysis: every thought unjudged, UT unknown, nothing raised.
    tok = load_hf_tokenizer("qwen3")
    vocab = SwitchVocabulary.from_tokenizer(tok, "paper")
    a = analyze_response(
        "x = 3.\n\nAlternatively, x = 4, so \\boxed{4}",
        vocabulary=vocab,
        tokenizer=tok,
        reference="6",
        scope="all",
        judge=again,
        problem="What is 2x if x = 3?",
    )
    assert [t.status for t in a.thoughts] == ["unjudged", "unjudged"] and a.unjudged_thoughts == 2
    assert a.correct is False and a.first_correct_thought is None and a.ut is None
    assert again.calls == 4
