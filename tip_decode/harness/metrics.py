"""From records to the summary: grading, switch analysis, and per-configuration metrics.

Switch positions, UT and weighted UT come from `tip_decode.analysis` (the same code behind
`tip-decode analyze`), so the numbers agree between the two commands. `config_metrics` without an
analysis aggregate counts switches from the records' `switch_positions` and reports UT as null.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from tip_decode.core.config import PAPER_BETA
from tip_decode.core.recognizer import find_switches
from tip_decode.harness.stats import ks_for, paired_bootstrap, pass1_interval, pass_at_k, pooled_mean_interval

logger = logging.getLogger(__name__)


def switch_positions(vocabulary: Any, token_ids: Sequence[int], scope: str = "auto", prompt_open: bool = False) -> list[int]:
    """Switch positions of a generated sequence (the contract's section 3, via the core recognizer)."""
    return [event.position for event in find_switches(vocabulary, list(token_ids), scope, prompt_open)]


def analyze_records(
    records: Sequence[dict[str, Any]],
    vocabulary: Any,
    tokenizer: Any,
    scope: str = "auto",
    judge: Any = None,
    premature_threshold: int = PAPER_BETA,
) -> tuple[list[Any], dict[str, Any]]:
    """Run the analysis over records (in place: `switch_positions`); returns (analyses, aggregate).

    `judge` decides which thoughts are correct (for UT); None is the answer-match judge.
    `premature_threshold` is the run's (run.json), so that `tip-decode analyze RUN_DIR` agrees.
    """
    from tip_decode.analysis import aggregate, analyze_response

    analyses = []
    for record in records:
        ids = record.get("token_ids")
        if ids is None:
            ids = tokenizer(record["response"], add_special_tokens=False)["input_ids"] if tokenizer is not None else []
        analysis = analyze_response(
            list(ids),
            vocabulary=vocabulary,
            tokenizer=tokenizer,
            reference=record["reference"],
            answer_kind=record["answer_kind"],
            correct=record["correct"],
            judge=judge,
            scope=scope,
            prompt_open=bool(record.get("prompt_open", False)),
            premature_threshold=premature_threshold,
            id=record["id"],
        )
        record["switch_positions"] = list(analysis.switch_positions)
        analyses.append(analysis)
    return analyses, aggregate(analyses, problem_ids=[r["id"] for r in records])


def thinking_tokens(token_ids: Sequence[int], markers: Any, prompt_open: bool) -> int | None:
    """Generated tokens inside the think block: from the first generated token when the prompt ends
    inside an open think block, else from the token after a generated start marker, up to the end
    marker (not counted) or the response's end. None when the tokenizer has no think markers."""
    if markers is None or not markers.available:
        return None
    ids = list(token_ids)
    if prompt_open:
        start = 0
    elif markers.start_id in ids:
        start = ids.index(markers.start_id) + 1
    else:
        return 0
    try:
        end = ids.index(markers.end_id, start)
    except ValueError:
        end = len(ids)
    return end - start


def _thoughts_of(record: Mapping[str, Any], analysis: Any) -> list[int]:
    """Thought lengths of one response: the analysis's, else split at the record's switch positions."""
    if analysis is not None:
        return [t.n_tokens for t in analysis.thoughts]
    bounds = [0, *(record.get("switch_positions") or []), record["n_tokens"]]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def length_intervals(
    records: Sequence[Mapping[str, Any]],
    analyses: Sequence[Any] | None = None,
    markers: Any = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Tokens, thinking tokens, switches per response and thought length, each a pooled mean with a
    95% interval over problems (`stats.pooled_mean_interval`)."""
    sums: dict[str, dict[str, float]] = {key: defaultdict(float) for key in ("tokens", "thinking", "switches", "thought_tokens")}
    counts: dict[str, dict[str, float]] = {key: defaultdict(float) for key in ("responses", "thinking", "thoughts")}
    for index, record in enumerate(records):
        problem = record["id"]
        analysis = analyses[index] if analyses is not None else None
        sums["tokens"][problem] += record["n_tokens"]
        counts["responses"][problem] += 1
        switches = len(analysis.switches) if analysis is not None else len(record.get("switch_positions") or [])
        sums["switches"][problem] += switches
        thoughts = _thoughts_of(record, analysis)
        sums["thought_tokens"][problem] += sum(thoughts)
        counts["thoughts"][problem] += len(thoughts)
        ids = record.get("token_ids")
        thinking = thinking_tokens(ids, markers, bool(record.get("prompt_open", False))) if ids is not None else None
        if thinking is not None:
            sums["thinking"][problem] += thinking
            counts["thinking"][problem] += 1
    return {
        "mean_tokens": pooled_mean_interval(sums["tokens"], counts["responses"], seed),
        "mean_thinking_tokens": pooled_mean_interval(sums["thinking"], counts["thinking"], seed),
        "switches_per_response": pooled_mean_interval(sums["switches"], counts["responses"], seed),
        "mean_tokens_between_switches": pooled_mean_interval(sums["thought_tokens"], counts["thoughts"], seed),
    }


def _fallback_switch_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counts = [len(r["switch_positions"]) for r in records]
    lengths = [length for r in records for length in _thoughts_of(r, None)]
    return {
        "switches_per_response": float(sum(counts) / len(counts)) if counts else math.nan,
        "mean_tokens_between_switches": float(sum(lengths) / len(lengths)) if lengths else math.nan,
        "ut": None,
        "weighted_ut": None,
    }


def per_problem_outcomes(records: Sequence[Mapping[str, Any]]) -> dict[str, list[bool]]:
    """Per problem id, the correctness of each of its samples."""
    by_problem: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        by_problem[record["id"]].append(bool(record["correct"]))
    return dict(by_problem)


def per_problem_accuracy(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {pid: sum(v) / len(v) for pid, v in per_problem_outcomes(records).items()}


#: Aggregate keys of `tip_decode.analysis.aggregate` copied into a configuration's metrics.
ANALYSIS_KEYS = (
    "thoughts_per_response",
    "incorrect_with_correct_thought",
    "switches_per_response",
    "mean_tokens_between_switches",
    "ut",
    "weighted_ut",
    "premature_switches",
    "abandoned_on_track",
    "unjudged_thoughts",
    "abandoned_unjudged",
    "ut_unknown",
)


def config_metrics(
    records: Sequence[Mapping[str, Any]],
    aggregate: Mapping[str, Any] | None,
    seed: int = 0,
    analyses: Sequence[Any] | None = None,
    markers: Any = None,
) -> dict[str, Any]:
    """Metrics of one configuration (the keys of summary.json's `configs` entries).

    `truncated` is the share of responses that stopped at the token limit (`finish_reason` "length")
    among the records that say why they stopped (None when none does); `n_truncated` their number.
    `intervals` holds the 95% interval of each length and count (`length_intervals`; `analyses`
    aligned with `records`, `markers` the tokenizer's think markers for the thinking length).
    """
    by_problem = per_problem_outcomes(records)
    samples = min((len(v) for v in by_problem.values()), default=0)
    pass_k: dict[str, float] = {}
    for k in ks_for(samples) if samples else []:
        values = [pass_at_k(len(v), sum(v), k) for v in by_problem.values()]
        pass_k[str(k)] = float(sum(values) / len(values))
    switch = _fallback_switch_metrics(records)
    if aggregate is not None:
        for key in ANALYSIS_KEYS:
            if key in aggregate:
                switch[key] = aggregate[key]
    tokens = [r["n_tokens"] for r in records]
    reasons = [r.get("finish_reason") for r in records if r.get("finish_reason") is not None]
    n_truncated = sum(reason == "length" for reason in reasons)
    intervals = length_intervals(records, analyses, markers, seed)
    thinking = intervals["mean_thinking_tokens"]["mean"]
    return {
        "n": len(records),
        "n_problems": len(by_problem),
        "samples": samples,
        "pass@1": pass1_interval(by_problem, seed=seed),
        "pass@k": pass_k,
        "mean_tokens": float(sum(tokens) / len(tokens)) if tokens else math.nan,
        "mean_thinking_tokens": None if math.isnan(thinking) else thinking,
        **switch,
        "truncated": n_truncated / len(reasons) if reasons else None,
        "n_truncated": n_truncated if reasons else None,
        "intervals": intervals,
    }


def paired_differences(records_by_config: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str | None, seed: int = 0) -> dict[str, Any]:
    """For every configuration but the baseline: Pass@1 difference to it with a paired bootstrap CI."""
    if baseline is None or baseline not in records_by_config:
        return {}
    base = per_problem_accuracy(records_by_config[baseline])
    paired = {}
    for name, records in records_by_config.items():
        if name == baseline:
            continue
        result = paired_bootstrap(per_problem_accuracy(records), base, seed=seed)
        paired[name] = {
            "delta_pass@1": result["delta"],
            "ci95": result["ci95"],
            "ci_method": result["ci_method"],
            "n_problems": result["n_problems"],
            "baseline": baseline,
        }
    return paired


def json_safe(value: Any) -> Any:
    """NaN becomes null (summary.json stays strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
