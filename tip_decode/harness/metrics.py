"""From records to the summary: grading, switch analysis, and per-configuration metrics.

Switch positions, UT and weighted UT come from `tip_decode.analysis` (the same code behind
`tip-decode analyze`), so the numbers agree between the two commands. When that package is not
importable, switch counts fall back to the core recognizer and UT is reported as null.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from tip_decode.grading import answers_equal, extract_answer
from tip_decode.harness.stats import ks_for, mean_ci, paired_bootstrap, pass_at_k
from tip_decode.core.recognizer import find_switches

logger = logging.getLogger(__name__)


def _analysis_api() -> tuple[Any, Any] | None:
    try:
        from tip_decode.analysis import aggregate, analyze_response
    except ImportError:
        return None
    return analyze_response, aggregate


def switch_positions(vocabulary: Any, token_ids: Sequence[int], scope: str = "auto", prompt_open: bool = False) -> list[int]:
    """Switch positions of a generated sequence (the contract's section 3, via the core recognizer)."""
    return [event.position for event in find_switches(vocabulary, list(token_ids), scope, prompt_open)]


def grade_record(record: dict[str, Any]) -> dict[str, Any]:
    """Fill `pred` and `correct` of a record from its `response`, `reference` and `answer_kind`."""
    pred = extract_answer(record["response"], record["answer_kind"])
    record["pred"] = pred
    record["correct"] = answers_equal(pred, record["reference"], record["answer_kind"])
    return record


def analyze_records(
    records: Sequence[dict[str, Any]], vocabulary: Any, tokenizer: Any, scope: str = "auto", judge: Any = None
) -> tuple[list[Any], dict[str, Any] | None]:
    """Run the analysis over records (in place: `switch_positions`); returns (analyses, aggregate).

    `judge` decides which thoughts are correct (for UT); None is the answer-match judge.
    """
    api = _analysis_api()
    analyses = []
    for record in records:
        ids = record.get("token_ids")
        if ids is None:
            ids = tokenizer(record["response"], add_special_tokens=False)["input_ids"] if tokenizer is not None else []
        prompt_open = bool(record.get("prompt_open", False))
        if api is not None:
            analysis = api[0](
                list(ids),
                vocabulary=vocabulary,
                tokenizer=tokenizer,
                reference=record["reference"],
                answer_kind=record["answer_kind"],
                correct=record["correct"],
                judge=judge,
                scope=scope,
                prompt_open=prompt_open,
                id=record["id"],
            )
            record["switch_positions"] = list(analysis.switch_positions)
            analyses.append(analysis)
        else:
            record["switch_positions"] = switch_positions(vocabulary, ids, scope, prompt_open)
    if api is None:
        return [], None
    return analyses, api[1](analyses, problem_ids=[r["id"] for r in records])


def _fallback_switch_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counts = [len(r["switch_positions"]) for r in records]
    lengths = [r["n_tokens"] / (c + 1) for r, c in zip(records, counts)]
    return {
        "switches_per_response": float(sum(counts) / len(counts)) if counts else math.nan,
        "mean_tokens_between_switches": float(sum(lengths) / len(lengths)) if lengths else math.nan,
        "ut": None,
        "weighted_ut": None,
    }


def per_problem_accuracy(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    by_problem: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        by_problem[record["id"]].append(bool(record["correct"]))
    return {pid: sum(v) / len(v) for pid, v in by_problem.items()}


def config_metrics(records: Sequence[Mapping[str, Any]], aggregate: Mapping[str, Any] | None) -> dict[str, Any]:
    """Metrics of one configuration (the keys of summary.json's `configs` entries)."""
    by_problem: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        by_problem[record["id"]].append(bool(record["correct"]))
    accuracy = {pid: sum(v) / len(v) for pid, v in by_problem.items()}
    mean, ci = mean_ci(list(accuracy.values()))
    samples = min((len(v) for v in by_problem.values()), default=0)
    pass_k: dict[str, float] = {}
    for k in ks_for(samples) if samples else []:
        values = [pass_at_k(len(v), sum(v), k) for v in by_problem.values()]
        pass_k[str(k)] = float(sum(values) / len(values))
    switch = _fallback_switch_metrics(records)
    if aggregate is not None:
        for key in ("switches_per_response", "mean_tokens_between_switches", "ut", "weighted_ut", "premature_switches"):
            if key in aggregate:
                switch[key] = aggregate[key]
    tokens = [r["n_tokens"] for r in records]
    return {
        "n": len(records),
        "n_problems": len(by_problem),
        "samples": samples,
        "pass@1": {"mean": mean, "ci95": ci},
        "pass@k": pass_k,
        "mean_tokens": float(sum(tokens) / len(tokens)) if tokens else math.nan,
        **switch,
        "truncated": float(sum(r.get("finish_reason") == "length" for r in records) / len(records)) if records else math.nan,
    }


def paired_differences(records_by_config: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str | None, seed: int = 0) -> dict[str, Any]:
    """For every configuration but the baseline: Pass@1 difference to it with a bootstrap CI."""
    if baseline is None or baseline not in records_by_config:
        return {}
    base = per_problem_accuracy(records_by_config[baseline])
    paired = {}
    for name, records in records_by_config.items():
        if name == baseline:
            continue
        result = paired_bootstrap(per_problem_accuracy(records), base, seed=seed)
        paired[name] = {"delta_pass@1": result["delta"], "ci95": result["ci95"], "n_problems": result["n_problems"], "baseline": baseline}
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
