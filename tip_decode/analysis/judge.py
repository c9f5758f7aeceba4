"""Judges that decide whether one thought of a response was on the right track.

- `AnswerMatchJudge` (default): the thought is correct when a candidate answer stated in it grades
  equal to the reference with `tip_decode.grading.answers_equal` (math-verify for "math").
- `LLMJudge`: the paper's protocol through any OpenAI-compatible endpoint (a local `vllm serve`
  included): the judge sees the problem, the thought as a draft and the reference answer, says whether
  continuing the draft reaches that answer, with a confidence 0-2; only 2 counts as correct. Requests
  are retried, replies cached in a JSON-lines file keyed by a hash of the request, and a reply that
  cannot be parsed gives an "unjudged" verdict for that thought instead of an exception.
- `AnyJudge`: the paper's two-judge rule (correct when any judge says correct).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tip_decode.grading import answers_equal

logger = logging.getLogger(__name__)

CORRECT, INCORRECT, UNJUDGED = "correct", "incorrect", "unjudged"
VERDICT_STATUSES = (CORRECT, INCORRECT, UNJUDGED)


@dataclass(frozen=True)
class Verdict:
    """A judge's decision on one thought: `status` is "correct", "incorrect" or "unjudged"."""

    status: str
    confidence: int | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in VERDICT_STATUSES:
            raise ValueError(f"`status` has to be one of {VERDICT_STATUSES}, but is {self.status!r}")

    @property
    def correct(self) -> bool | None:
        """True / False, or None when the thought could not be judged."""
        return None if self.status == UNJUDGED else self.status == CORRECT


@dataclass(frozen=True)
class JudgeRequest:
    """Everything a judge may look at for one thought."""

    thought_text: str
    candidates: tuple[str, ...]
    reference: str
    answer_kind: str = "math"
    problem: str | None = None


@runtime_checkable
class ThoughtJudge(Protocol):
    """Anything with `judge(request: JudgeRequest) -> Verdict`."""

    def judge(self, request: JudgeRequest) -> Verdict: ...


class AnswerMatchJudge:
    """Correct when any candidate answer of the thought grades equal to the reference."""

    def judge(self, request: JudgeRequest) -> Verdict:
        for candidate in request.candidates:
            if answers_equal(candidate, request.reference, request.answer_kind):
                return Verdict(CORRECT, 2, f"candidate {candidate!r} equals the reference")
        return Verdict(INCORRECT, 0, "no candidate equals the reference" if request.candidates else "no candidate answer")


class AnyJudge:
    """Correct when any of `judges` says correct (the paper used two LLM judges this way).

    Incorrect when every judge gave a verdict and none said correct; otherwise unjudged.
    """

    def __init__(self, judges: Sequence[ThoughtJudge]) -> None:
        if not judges:
            raise ValueError("`judges` has to name at least one judge, but is empty")
        self.judges = tuple(judges)

    def judge(self, request: JudgeRequest) -> Verdict:
        verdicts = [j.judge(request) for j in self.judges]
        if any(v.status == CORRECT for v in verdicts):
            return Verdict(CORRECT, 2, "; ".join(v.detail for v in verdicts))
        if all(v.status == INCORRECT for v in verdicts):
            return Verdict(INCORRECT, max(v.confidence or 0 for v in verdicts), "; ".join(v.detail for v in verdicts))
        return Verdict(UNJUDGED, None, "; ".join(v.detail for v in verdicts))


JUDGE_SYSTEM_PROMPT = (
    "You review drafts of solutions to problems. You are given a problem, its known correct final "
    "answer, and one draft: a passage where a solver started working on the problem and then stopped. "
    "Decide whether carrying on along the draft's line of reasoning, without changing approach, "
    "would arrive at the known correct answer. Rate your confidence that it would: 0 = it would not "
    "(wrong approach, wrong intermediate result, or no progress), 1 = it might, 2 = it clearly would "
    "(or the draft already states the correct answer). Reply with exactly one line of JSON and "
    'nothing else, for example {"confidence": 2, "reason": "the draft already finds x = 4"}.'
)

JUDGE_USER_TEMPLATE = (
    "Problem:\n{problem}\n\nKnown correct final answer:\n{reference}\n\nDraft:\n<<<\n{draft}\n>>>\n\n"
    "Would continuing this draft reach the known correct answer? Reply with one line of JSON: "
    '{{"confidence": 0|1|2, "reason": "<one sentence>"}}.'
)

_CONFIDENCE_JSON = re.compile(r"\{[^{}]*\"confidence\"\s*:\s*\"?([0-9]+)\"?[^{}]*\}", re.DOTALL)
_CONFIDENCE_TEXT = re.compile(r"confidence\W{0,3}([0-9]+)\b", re.IGNORECASE)


def parse_judge_reply(reply: str | None) -> Verdict:
    """Turn a judge model's reply into a verdict; anything unparsable is "unjudged" (never raises).

    Reasoning judges think first: only the text after the last `</think>` is read. The confidence
    comes from a JSON object with a "confidence" key, else from a "confidence: N" phrase; it must be
    0, 1 or 2. Correct exactly at 2, as in the paper.
    """
    if not isinstance(reply, str) or not reply.strip():
        return Verdict(UNJUDGED, None, "empty reply")
    text = reply.rsplit("</think>", 1)[-1]
    match = _CONFIDENCE_JSON.search(text) or _CONFIDENCE_TEXT.search(text)
    if match is None:
        return Verdict(UNJUDGED, None, f"malformed reply: {text.strip()[:80]!r}")
    value = int(match.group(1))
    if value not in (0, 1, 2):
        return Verdict(UNJUDGED, None, f"confidence {value} out of range 0-2")
    reason = ""
    try:
        reason = str(json.loads(match.group(0)).get("reason", "")) if match.re is _CONFIDENCE_JSON else ""
    except (ValueError, AttributeError):
        reason = ""
    return Verdict(CORRECT if value == 2 else INCORRECT, value, reason)


class LLMJudge:
    """The paper's thought judge through an OpenAI-compatible chat endpoint.

    Args:
        model: model name served at `base_url`.
        base_url: e.g. "http://127.0.0.1:8000/v1" for a local `vllm serve`.
        api_key: the endpoint's key ("EMPTY" for a local vLLM server).
        cache_path: JSON-lines file of past replies, keyed by a SHA-256 of the request; a request
            found there is never sent again. None keeps the cache in memory only.
        max_retries: extra attempts after a failed call (transport error, server error, or a reply
            that cannot be parsed); after the last one the thought is "unjudged".
        retry_wait: seconds before the first retry, doubled each time.
        max_tokens, temperature, timeout: sent with every request (temperature 0 by default, so a
            cached reply is what the judge would say again).
        client: an `openai.OpenAI` client to use instead of building one (e.g. with a custom
            `http_client`).
        max_draft_chars: longer thoughts are cut to their last `max_draft_chars` characters.

    Example:
        >>> judge = LLMJudge("judge-model", base_url="http://127.0.0.1:8000/v1")   # doctest: +SKIP
        >>> judge.judge(JudgeRequest("So x = 4.", ("4",), "4", problem="Solve x-4=0."))  # doctest: +SKIP
        Verdict(status='correct', confidence=2, detail='...')
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str = "EMPTY",
        cache_path: str | Path | None = None,
        max_retries: int = 2,
        retry_wait: float = 0.5,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout: float = 120.0,
        client: Any = None,
        max_draft_chars: int = 12000,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"`model` has to be a non-empty model name, but is {model!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"`max_retries` has to be a non-negative integer, but is {max_retries!r}")
        if retry_wait < 0:
            raise ValueError(f"`retry_wait` has to be >= 0, but is {retry_wait!r}")
        if client is None:
            try:
                from openai import OpenAI
            except ImportError as err:  # pragma: no cover - openai is a dependency of the harness
                raise ImportError("LLMJudge needs the openai client: pip install openai") from err
            # Our retries (with parsing) replace the client's own, so that `calls` counts every request.
            client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)
        self.client = client
        self.model = model
        self.max_retries = max_retries
        self.retry_wait = retry_wait
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_draft_chars = max_draft_chars
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.calls = 0  # requests actually sent (for tests and cost accounting)
        # Per thought judged: answered by the server (a verdict, parsable or not), found in the cache,
        # or failed (every attempt a transport or server error). `failed` with nothing answered or
        # cached means the judge never worked, and the CLI exits with an error.
        self.answered = 0
        self.cached = 0
        self.failed = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._cache: dict[str, dict[str, Any]] = {}
        if self.cache_path is not None and self.cache_path.exists():
            self._load_cache()

    def _load_cache(self) -> None:
        path = self.cache_path
        if path is None:
            return
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    self._cache[entry["key"]] = entry
                except (ValueError, KeyError, TypeError):
                    # A line cut short by a killed run: skip it, the request will simply be sent again.
                    logger.warning("%s line %d: unreadable cache entry skipped", path, number)

    def messages(self, request: JudgeRequest) -> list[dict[str, str]]:
        """The chat messages sent for `request`."""
        draft = request.thought_text
        if len(draft) > self.max_draft_chars:
            draft = "..." + draft[-self.max_draft_chars :]
        user = JUDGE_USER_TEMPLATE.format(problem=(request.problem or "(not given)").strip(), reference=request.reference.strip(), draft=draft.strip())
        return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def request_body(self, request: JudgeRequest) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": self.messages(request),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    @staticmethod
    def cache_key(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

    def judge(self, request: JudgeRequest) -> Verdict:
        body = self.request_body(request)
        key = self.cache_key(body)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            with self._lock:
                self.cached += 1
            return Verdict(cached["status"], cached.get("confidence"), cached.get("detail", ""))
        verdict, reply, transport_failed = self._ask(body)
        with self._lock:
            if transport_failed:
                self.failed += 1
                self.last_error = verdict.detail
            else:
                self.answered += 1
        if not transport_failed:
            # Malformed replies are cached too: at temperature 0 the judge would say the same again.
            self._store(key, verdict, reply)
        return verdict

    def check(self) -> None:
        """Raise `RuntimeError` (one line) unless the endpoint answers and serves `model`.

        One cheap request (the model list) before judging thousands of thoughts, so that a wrong URL
        or a server that is not running fails at once instead of after every retry of every thought.
        """
        try:
            served = [m.id for m in self.client.models.list()]
        except Exception as err:  # connection refused, timeouts, HTTP errors
            if getattr(err, "status_code", None) in (404, 405):
                return  # a server without a model list: nothing to check here, judging will tell
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise RuntimeError(f"cannot reach the judge at {getattr(self.client, 'base_url', '?')}: {first}") from None
        if served and self.model not in served:
            raise RuntimeError(f"the judge server does not serve {self.model!r} (it serves: {', '.join(served)})")

    def _ask(self, body: dict[str, Any]) -> tuple[Verdict, str | None, bool]:
        wait = self.retry_wait
        verdict = Verdict(UNJUDGED, None, "no attempt")
        reply: str | None = None
        transport_failed = False
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(wait)
                wait *= 2
            try:
                with self._lock:
                    self.calls += 1
                response = self.client.chat.completions.create(**body)
                reply = response.choices[0].message.content if response.choices else None
                transport_failed = False
            except Exception as err:  # openai raises many error types; all mean "try again"
                logger.warning("judge request failed (attempt %d): %s", attempt + 1, err)
                verdict, transport_failed = Verdict(UNJUDGED, None, f"request failed: {err}"), True
                continue
            verdict = parse_judge_reply(reply)
            if verdict.status != UNJUDGED:
                break
            logger.info("judge reply not parsable (attempt %d): %r", attempt + 1, (reply or "")[:80])
        return verdict, reply, transport_failed

    def _store(self, key: str, verdict: Verdict, reply: str | None) -> None:
        entry = {"key": key, "status": verdict.status, "confidence": verdict.confidence, "detail": verdict.detail, "reply": reply}
        with self._lock:
            self._cache[key] = entry
            if self.cache_path is not None:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with self.cache_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
                    handle.flush()


__all__ = [
    "CORRECT",
    "INCORRECT",
    "UNJUDGED",
    "AnswerMatchJudge",
    "AnyJudge",
    "JudgeRequest",
    "LLMJudge",
    "ThoughtJudge",
    "Verdict",
    "parse_judge_reply",
]
