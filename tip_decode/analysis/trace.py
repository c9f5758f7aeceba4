"""Trace analysis: thoughts, switches, premature and abandoned-on-track flags, and the UT score.

A response is segmented on token ids with the same `SwitchRecognizer` the processors' tensor state
is tested against, so "a switch" means one thing everywhere. Definitions (docs/analysis.md has the
formulas and a worked example):

- The reasoning span is `[r0, r1)`: `r0` is where the recogniser starts reasoning (0 with scope
  "all" or an open think block in the prompt; right after a generated `<think>` otherwise), `r1` is
  the position of the generated `</think>` or the end of the response.
- Thought i is `g[psi_i : psi_(i+1)]` with `psi_0 = r0` and `psi_i` (i >= 1) the i-th switch
  position; the last thought ends at `r1`. Tokens before `r0` and from `</think>` on (the final
  answer) belong to no thought, but count in the response length `T`.
- A switch is premature when the thought it ends is shorter than `premature_threshold` tokens;
  abandoned-on-track when the thought it ends is judged correct.
- UT of an incorrect response: `1 - T_hat / T`, `T_hat` = end of the first correct thought (tokens
  up to and including it), or `T` when no thought is correct. When a thought before the first
  correct one could not be judged (an LLM judge's malformed reply), the first correct thought and UT
  are unknown: both are None.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tip_decode.analysis.candidates import CANDIDATE_SOURCES, extract_candidates
from tip_decode.analysis.judge import UNJUDGED, AnswerMatchJudge, JudgeRequest, ThoughtJudge, Verdict
from tip_decode.core.config import PAPER_BETA
from tip_decode.core.recognizer import SwitchEvent, SwitchRecognizer, check_segmentation_arguments
from tip_decode.core.vocabulary import SwitchVocabulary, TokenizerView
from tip_decode.grading import ANSWER_KINDS, grade

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thought:
    """One thought: generated positions `[start, end)` (counted from 0).

    `trigger` is the trigger word of the switch that opened it (None for the first thought);
    `ended_by_switch` is False for the last thought. `status` is the judge's verdict ("correct",
    "incorrect", "unjudged"); `correct` the same as a bool (None when unjudged or no reference).
    `mean_entropy` / `mean_logprob` are given only when per-token values were passed.
    """

    index: int
    start: int
    end: int
    text: str
    candidates: tuple[str, ...]
    trigger: str | None
    ended_by_switch: bool
    premature: bool
    status: str
    confidence: int | None
    mean_entropy: float | None = None
    mean_logprob: float | None = None

    @property
    def n_tokens(self) -> int:
        return self.end - self.start

    @property
    def correct(self) -> bool | None:
        return None if self.status == UNJUDGED else self.status == "correct"

    @property
    def abandoned_on_track(self) -> bool:
        """The response switched away from this thought although it was judged correct."""
        return self.ended_by_switch and self.status == "correct"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["n_tokens"] = self.n_tokens
        out["correct"] = self.correct
        out["abandoned_on_track"] = self.abandoned_on_track
        out["candidates"] = list(self.candidates)
        return out


#: One recognised switch: it ends thought `abandoned` and opens thought `abandoned + 1`. The one
#: switch record of the project (`tip_decode.core.recognizer.SwitchEvent`); analysis fills
#: `premature`, `on_track` and, with per-token entropies, `abandoned_mean_entropy`.
Switch = SwitchEvent


@dataclass(frozen=True)
class ResponseAnalysis:
    """Everything `analyze_response` found in one response (see the module docstring)."""

    id: Any
    n_tokens: int
    thoughts: list[Thought]
    switches: list[Switch]
    reasoning_start: int | None
    reasoning_end: int | None
    correct: bool | None
    prediction: str | None
    first_correct_thought: int | None
    ut: float | None
    premature_threshold: int
    scope: str = "all"
    unjudged_thoughts: int = field(default=0)

    @property
    def n_thoughts(self) -> int:
        return len(self.thoughts)

    @property
    def switch_positions(self) -> list[int]:
        return [s.position for s in self.switches]

    @property
    def premature(self) -> int:
        """Number of premature switches."""
        return sum(s.premature for s in self.switches)

    @property
    def abandoned_on_track(self) -> int:
        """Number of switches that abandoned a thought judged correct (see `abandoned_unjudged`)."""
        return sum(s.on_track for s in self.switches)

    @property
    def abandoned_unjudged(self) -> int:
        """Number of switches that abandoned a thought the judge could not judge: for those, whether
        the thought was on track is unknown, so `abandoned_on_track` is a lower bound when this is > 0."""
        return sum(t.ended_by_switch and t.status == UNJUDGED for t in self.thoughts)

    @property
    def t_hat(self) -> int | None:
        """Tokens up to and including the first correct thought (None when none is correct)."""
        k = self.first_correct_thought
        return None if k is None else self.thoughts[k].end

    def to_dict(self, thoughts: bool = True) -> dict[str, Any]:
        """The JSON fields of the `tip-decode analyze` output contract, and a few more."""
        out: dict[str, Any] = {
            "id": self.id,
            "n_tokens": self.n_tokens,
            "n_thoughts": self.n_thoughts,
            "switch_positions": self.switch_positions,
            "premature": self.premature,
            # Unknown (None) when every thought this response abandoned went unjudged.
            "abandoned_on_track": None if self.switches and self.abandoned_unjudged == len(self.switches) else self.abandoned_on_track,
            "abandoned_unjudged": self.abandoned_unjudged,
            "first_correct_thought": self.first_correct_thought,
            "correct": self.correct,
            "ut": self.ut,
            "prediction": self.prediction,
            "reasoning_start": self.reasoning_start,
            "reasoning_end": self.reasoning_end,
            "thought_lengths": [t.n_tokens for t in self.thoughts],
            "unjudged_thoughts": self.unjudged_thoughts,
        }
        if thoughts:
            out["thoughts"] = [t.to_dict() for t in self.thoughts]
        return out


def _token_ids(response: Any, view: TokenizerView | None) -> tuple[list[int], str | None]:
    if isinstance(response, str):
        if view is None:
            raise ValueError(
                "`tokenizer` is required to analyse a text response: switches are recognised on token "
                "ids, exactly as the processor sees them (pass the model's tokenizer)"
            )
        return view.encode(response), response
    if isinstance(response, (bytes, Mapping)) or not isinstance(response, Iterable):
        raise TypeError(f"`response` has to be a string or a sequence of token ids, but is {type(response).__name__}")
    ids = list(response)
    for token in ids:
        if isinstance(token, bool) or not isinstance(token, int) and not hasattr(token, "__index__"):
            raise TypeError(f"`response` has to contain only int token ids, but contains {token!r}")
    return [int(t) for t in ids], None


def resolve_prompt_open(prompt_open: bool | str, vocabulary: SwitchVocabulary, scope: str, ids: Sequence[int]) -> bool:
    """`prompt_open="auto"`: True when the response closes a think block it never opened.

    That is how responses look when the chat template put `<think>` in the prompt (DeepSeek-R1,
    QwQ): the saved response starts inside the reasoning and contains only `</think>`.
    """
    if isinstance(prompt_open, bool):
        return prompt_open
    if prompt_open != "auto":
        raise ValueError(f"`prompt_open` has to be True, False or 'auto', but is {prompt_open!r}")
    think = vocabulary.think
    if vocabulary.resolve_scope(scope) != "think" or not think.available:
        return False
    for token in ids:
        if token == think.start_id:
            return False
        if token == think.end_id:
            return True
    return False


def _mean(values: Sequence[float] | None, start: int, end: int) -> float | None:
    if values is None or end <= start:
        return None
    chunk = [float(v) for v in values[start:end]]
    finite = [v for v in chunk if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def analyze_response(
    response: str | Sequence[int],
    *,
    vocabulary: SwitchVocabulary,
    tokenizer: Any = None,
    reference: str | None = None,
    answer_kind: str = "math",
    correct: bool | None = None,
    judge: ThoughtJudge | None = None,
    scope: str = "auto",
    prompt_open: bool | str = False,
    premature_threshold: int = PAPER_BETA,
    id: Any = None,
    token_logprobs: Sequence[float] | None = None,
    token_entropies: Sequence[float] | None = None,
    problem: str | None = None,
    candidate_sources: tuple[str, ...] = CANDIDATE_SOURCES,
) -> ResponseAnalysis:
    """Segment one response into thoughts at recognised switches, judge them, and score it.

    Args:
        response: the generated text, or the generated token ids (the prompt excluded).
        vocabulary: the switch vocabulary (the one the processor uses).
        tokenizer: a Hugging Face tokenizer or `tokenizers.Tokenizer`; required for text input
            (it is tokenised, then segmented on ids) and to get thought texts from ids.
        reference: the reference answer; without it no thought is judged and `correct` stays as given.
        answer_kind: "math", "number" or "choice" (see `tip_decode.grading`).
        correct: final-answer correctness if already graded; else graded here against `reference`.
        judge: decides whether a thought is correct; default `AnswerMatchJudge()` when `reference`
            is given.
        scope, prompt_open: as for the processor ("auto" for `prompt_open` guesses it from the
            response, see `resolve_prompt_open`).
        premature_threshold: a switch is premature when the thought it ends is shorter (tokens).
        id: carried into the result.
        token_logprobs / token_entropies: per generated token (same length as the ids), for the
            per-thought means.
        problem: the problem statement, for judges that read it (LLMJudge).
        candidate_sources: which candidate answers to extract (see `extract_candidates`).
    """
    check_segmentation_arguments(vocabulary, scope, premature_threshold)
    if answer_kind not in ANSWER_KINDS:
        raise ValueError(f"`answer_kind` has to be one of {', '.join(map(repr, ANSWER_KINDS))}, but is {answer_kind!r}")
    if correct is not None and not isinstance(correct, bool):
        raise TypeError(f"`correct` has to be True, False or None, but is {correct!r}")
    if reference is not None and not isinstance(reference, str):
        raise TypeError(f"`reference` has to be a string or None, but is {type(reference).__name__}")
    view = None if tokenizer is None else tokenizer if isinstance(tokenizer, TokenizerView) else TokenizerView(tokenizer)
    ids, text = _token_ids(response, view)
    for name, values in (("token_logprobs", token_logprobs), ("token_entropies", token_entropies)):
        if values is not None and len(values) != len(ids):
            raise ValueError(f"`{name}` has to have one value per token ({len(ids)}), but has {len(values)}")

    resolved_scope = vocabulary.resolve_scope(scope)
    opened = resolve_prompt_open(prompt_open, vocabulary, resolved_scope, ids)
    recognizer = SwitchRecognizer(vocabulary, resolved_scope, opened)
    events = recognizer.feed(ids)
    r0 = recognizer.reasoning_start
    r1 = recognizer.reasoning_end if recognizer.reasoning_end is not None else len(ids)

    if text is None and view is not None:
        text = view.decode(ids)
    if correct is None and reference is not None and text is not None:
        prediction, correct = grade(text, reference, answer_kind)
    elif reference is not None and text is not None:
        prediction = grade(text, reference, answer_kind)[0]
    else:
        prediction = None
    if judge is None and reference is not None:
        judge = AnswerMatchJudge()

    bounds: list[tuple[int, int, str | None]] = []  # (start, end, opening trigger)
    if r0 is not None:
        starts = [(r0, None)] + [(e.position, e.trigger) for e in events]
        for k, (start, trigger) in enumerate(starts):
            end = starts[k + 1][0] if k + 1 < len(starts) else r1
            bounds.append((start, max(start, end), trigger))

    thoughts: list[Thought] = []
    for index, (start, end, trigger) in enumerate(bounds):
        thought_text = view.decode(ids[start:end]) if view is not None else ""
        candidates = extract_candidates(thought_text, answer_kind, candidate_sources) if thought_text else ()
        ended = index + 1 < len(bounds)
        verdict = Verdict(UNJUDGED, None, "no reference answer")
        if judge is not None and reference is not None:
            try:
                verdict = judge.judge(JudgeRequest(thought_text, candidates, reference, answer_kind, problem))
            except Exception as err:  # a judge must never take the whole analysis down
                logger.warning("judge failed on thought %d of response %r: %s", index, id, err)
                verdict = Verdict(UNJUDGED, None, f"judge error: {err}")
        thoughts.append(
            Thought(
                index=index,
                start=start,
                end=end,
                text=thought_text,
                candidates=candidates,
                trigger=trigger,
                ended_by_switch=ended,
                premature=ended and end - start < premature_threshold,
                status=verdict.status,
                confidence=verdict.confidence,
                mean_entropy=_mean(token_entropies, start, end),
                mean_logprob=_mean(token_logprobs, start, end),
            )
        )
    switches = [
        replace(
            e,
            premature=thoughts[e.abandoned].premature,
            on_track=thoughts[e.abandoned].abandoned_on_track,
            abandoned_mean_entropy=thoughts[e.abandoned].mean_entropy,
        )
        for e in events
    ]
    first_correct: int | None = None
    undetermined = False
    for thought in thoughts:
        if thought.status == "correct":
            first_correct = thought.index
            break
        if thought.status == UNJUDGED and reference is not None:
            # An unjudged thought before any correct one: the first correct thought is unknown.
            undetermined = True
            break
    ut = underthinking(len(ids), None if first_correct is None else thoughts[first_correct].end, correct)
    if undetermined or not any(t.status != UNJUDGED for t in thoughts):
        # Nothing was judged (no reference, no thought, or the judge decided none): UT is unknown,
        # not 0 ("no correct thought" is a finding only when thoughts were judged).
        ut = None
    return ResponseAnalysis(
        id=id,
        n_tokens=len(ids),
        thoughts=thoughts,
        switches=switches,
        reasoning_start=r0,
        reasoning_end=recognizer.reasoning_end,
        correct=correct,
        prediction=prediction,
        first_correct_thought=first_correct,
        ut=ut,
        premature_threshold=premature_threshold,
        scope=resolved_scope,
        unjudged_thoughts=sum(t.status == UNJUDGED for t in thoughts) if reference is not None else 0,
    )


def underthinking(n_tokens: int, t_hat: int | None, correct: bool | None) -> float | None:
    """UT of one response: None unless it is incorrect; `1 - t_hat / n_tokens`, 0 without a correct thought.

    Example:
        >>> round(underthinking(7681, 411, False), 4)
        0.9465
    """
    if correct is not False:
        return None
    if n_tokens <= 0 or t_hat is None:
        return 0.0
    return 1.0 - t_hat / n_tokens


def _mean_or_none(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(analyses: Sequence[ResponseAnalysis], problem_ids: Sequence[Any] | None = None) -> dict[str, Any]:
    """Metrics over many responses (docs/analysis.md gives each formula).

    - `switches_per_response`: mean number of switches per response.
    - `mean_tokens_between_switches`: mean thought length, pooled over every thought of every response.
    - `premature_switches`: total number of premature switches (`premature_per_response`: mean).
    - `abandoned_on_track`: total number of switches that abandoned a thought judged correct; None
      when every abandoned thought went unjudged (nothing was measured). `abandoned_unjudged` counts
      switches whose abandoned thought went unjudged (for them on-track is unknown, so the total is a
      lower bound when this is > 0); `unjudged_thoughts` counts every unjudged thought.
    - `ut`: mean UT over the incorrect responses whose UT is known (None when there are none);
      `ut_unknown` counts incorrect responses whose UT is unknown (a thought before the first
      correct one went unjudged).
    - `weighted_ut`: per problem, the mean over its graded samples of UT (correct samples count 0),
      leaving out samples whose UT is unknown exactly as `ut` does; then the mean over problems (a
      problem whose every sample is unknown is left out). Problems are `problem_ids` (aligned with
      `analyses`), else each response's `id`.
    - `incorrect_with_correct_thought`: share of the incorrect responses with known UT that have a
      correct thought.
    UT values are fractions in [0, 1]; the paper prints them as percentages.
    """
    analyses = list(analyses)
    if problem_ids is not None and len(problem_ids) != len(analyses):
        raise ValueError(f"`problem_ids` has to have one id per analysis ({len(analyses)}), but has {len(problem_ids)}")
    n = len(analyses)
    lengths = [t.n_tokens for a in analyses for t in a.thoughts]
    graded = [a for a in analyses if a.correct is not None]
    incorrect = [a for a in graded if a.correct is False]
    known_incorrect = [a for a in incorrect if a.ut is not None]
    problems: set[Any] = set()
    groups: dict[Any, list[float]] = {}
    keys = list(problem_ids) if problem_ids is not None else [a.id for a in analyses]
    for key, a in zip(keys, analyses):
        if a.correct is None:
            continue
        problems.add(_hashable(key))
        if a.correct is False and a.ut is None:
            continue  # unknown UT: left out, as in `ut`
        groups.setdefault(_hashable(key), []).append(a.ut if a.correct is False else 0.0)
    per_problem = [sum(v) / len(v) for v in groups.values()]
    n_switches = sum(len(a.switches) for a in analyses)
    abandoned_unjudged = sum(a.abandoned_unjudged for a in analyses)
    return {
        "n": n,
        "n_graded": len(graded),
        "accuracy": sum(a.correct is True for a in graded) / len(graded) if graded else None,
        "thoughts_per_response": _mean_or_none([a.n_thoughts for a in analyses]),
        "switches_per_response": _mean_or_none([len(a.switches) for a in analyses]),
        "mean_tokens_between_switches": _mean_or_none(lengths),
        "mean_tokens": _mean_or_none([a.n_tokens for a in analyses]),
        "premature_switches": sum(a.premature for a in analyses),
        "premature_per_response": _mean_or_none([a.premature for a in analyses]),
        # Unknown with no response at all, and when every abandoned thought went unjudged.
        "abandoned_on_track": None if n == 0 or (n_switches and abandoned_unjudged == n_switches) else sum(a.abandoned_on_track for a in analyses),
        "abandoned_unjudged": abandoned_unjudged,
        "unjudged_thoughts": sum(a.unjudged_thoughts for a in analyses),
        "incorrect_with_correct_thought": _mean_or_none([a.first_correct_thought is not None for a in known_incorrect]),
        "ut": _mean_or_none([a.ut for a in known_incorrect]),
        "ut_unknown": len(incorrect) - len(known_incorrect),
        "weighted_ut": _mean_or_none(per_problem),
        "n_problems": len(problems),
    }


def _hashable(key: Any) -> Any:
    try:
        hash(key)
    except TypeError:
        return repr(key)
    return key
