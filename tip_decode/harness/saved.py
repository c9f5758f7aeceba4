"""Saved responses: a run folder or a JSON-lines file read into checked items, analysed.

What `tip-decode analyze` and `tip-decode view` share, so both read a run the same way and agree on
every thought and judgement: which record files a SOURCE names (`read_sources`), the records of one
file (`read_response_records`), one record checked and reduced to the fields the analysis needs
(`validate_record`), the run's own analysis settings (`run_settings`), the thought judge
(`choose_judge`), checks that the tokenizer is the one that wrote the records (`check_id_range`,
`other_model_warning`, both in `check_tokenizer`), and the analysis itself (`analyze_items`, `aggregate_items`,
`analysis_notes`).

Errors: `InputError` where the command's inputs are wrong (a usage error), `ValueError` where a
file's content is; each message is one line that names the file and line.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tip_decode.core.config import PAPER_BETA, parse_triggers
from tip_decode.harness.preflight import InputError

#: Record fields tried, in order, as the problem key of weighted UT when no group field is given.
GROUP_FIELDS = ("problem_id", "unique_id", "problem", "question")
#: Answer kinds a record's `answer_kind` field may name.
ANSWER_KINDS = ("math", "number", "choice")


@dataclass(frozen=True)
class RecordFields:
    """Which record field holds what (the harness's names by default)."""

    response: str = "response"
    answer: str = "answer"
    ids: str = "token_ids"
    id: str = "id"
    problem: str = "problem"
    group: str | None = None


def read_sources(source: Path, config_names: Sequence[str] = ()) -> tuple[dict[str, Any], list[tuple[str | None, Path]]]:
    """(run.json or {}, [(configuration name or None, record file)]) for a file or a run folder.

    A run folder gives one file per configuration (`config_names` selects some); a file that is one
    of a run's record files comes with its run's settings; any other file comes with none.
    """
    from tip_decode.harness.summary import read_run_info

    if not source.exists():
        raise InputError(f"no such file or folder: {str(source)!r}")
    if source.name == "run.json" and source.is_file():
        source = source.parent  # the run's settings file: analyse the run
    if source.is_dir():
        if not (source / "run.json").is_file():
            raise InputError(f"{source} is not a run folder (no run.json); give a JSON-lines file of responses, or a folder written by `tip-decode compare`")
        info = read_run_info(source)
        names = [c.get("name") for c in info.get("configs", []) if isinstance(c, dict)] or [p.stem for p in sorted(source.glob("*.jsonl"))]
        if config_names:
            unknown = [n for n in config_names if n not in names]
            if unknown:
                raise InputError(f"--config {', '.join(unknown)}: the run has no such configuration (it has: {', '.join(names)})")
            names = list(config_names)
        files: list[tuple[str | None, Path]] = [(n, source / f"{n}.jsonl") for n in names if (source / f"{n}.jsonl").is_file()]
        if not files:
            raise ValueError(f"{source} holds no records yet (no <config>.jsonl file)")
        return info, files
    if config_names:
        raise InputError("--config selects configurations of a run folder; SOURCE is a file")
    info = {}
    if (source.parent / "run.json").is_file() and source.suffix == ".jsonl":
        candidate = read_run_info(source.parent)
        if source.stem in [c.get("name") for c in candidate.get("configs", []) if isinstance(c, dict)]:
            info = candidate  # a record file of a run: the run's settings apply
    return info, [(source.stem if info else None, source)]


def read_response_records(path: Path, run_records: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """[(line number, record)] of a JSON-lines file; `ValueError` when it is not one, or empty.

    `run_records`: a record file of a `compare` run, written one whole line at a time, so a torn
    last line is a write cut short (skipped, and named in a note as `score` does), not bad input.
    """
    from tip_decode.harness.jsonl import JSONLError, iter_jsonl

    try:
        records = list(iter_jsonl(path, torn_tail=run_records, log_torn=False))
    except JSONLError as err:
        hint = " (a .json file? analyze reads JSON lines: one object per line)" if path.suffix.lower() == ".json" else ""
        raise ValueError(f"{err}{hint}") from None
    if not records:
        raise ValueError(f"{path}: no responses (the file is empty)")
    return records


def _field(path: Path, number: int, record: dict[str, Any], name: str) -> Any:
    if name not in record:
        fields = ", ".join(sorted(record)) or "none"
        raise ValueError(f"{path} line {number}: missing field {name!r} (fields: {fields})")
    return record[name]


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{value} (a boolean)"
    if isinstance(value, str):
        return f"{value[:20]!r} (text)"
    if isinstance(value, float):
        return f"{value!r} (a fraction)" if not value.is_integer() else f"{value!r} (a float)"
    if value is None:
        return "null"
    return f"{type(value).__name__}"


def _token_ids(path: Path, number: int, record: dict[str, Any], ids_field: str) -> list[int] | None:
    """The record's token ids, or None when it has none; anything else in the field is an error
    that names the field (not a "missing response" error about another field)."""
    if not ids_field or ids_field not in record or record[ids_field] is None:
        return None
    ids = record[ids_field]
    if not isinstance(ids, list):
        raise ValueError(f"{path} line {number}: field {ids_field!r} has to be a list of integer token ids, but is {_describe(ids)}")
    for index, token in enumerate(ids):
        if isinstance(token, bool) or not isinstance(token, int):
            raise ValueError(f"{path} line {number}: field {ids_field!r} has to be a list of integer token ids, but item {index} is {_describe(token)}")
    return ids if ids else None


def _check_text_response(path: Path, number: int, response: Any, fields: RecordFields) -> None:
    if isinstance(response, list):
        raise ValueError(f"{path} line {number}: field {fields.response!r} holds a list; token ids go in --ids-field ({fields.ids!r})")
    if not isinstance(response, str):
        raise ValueError(f"{path} line {number}: field {fields.response!r} has to be text or a list of token ids, not {type(response).__name__}")
    if not response.strip():
        raise ValueError(f"{path} line {number}: empty response in field {fields.response!r}")


def _check_reference(path: Path, number: int, reference: Any, answer_field: str) -> str:
    if isinstance(reference, float) and not math.isfinite(reference):
        raise ValueError(
            f"{path} line {number}: field {answer_field!r} is {reference}, not a reference answer (a missing value written as NaN?); write it as text, or leave the line out"
        )
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        reference = str(reference)
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"{path} line {number}: field {answer_field!r} has to be a non-empty reference answer, not {reference!r}")
    return reference


def _typed(record: dict[str, Any], name: str, kind: type) -> Any:
    value = record.get(name)
    return value if isinstance(value, kind) else None


def validate_record(path: Path, number: int, record: dict[str, Any], fields: RecordFields = RecordFields()) -> dict[str, Any]:
    """One record checked and reduced to what the analysis reads; `ValueError` naming the line.

    The response is the record's token ids when it has them, else its text; the reference is
    `fields.answer` (or the harness's `reference`). Optional fields of the wrong type are None.
    """
    ids = _token_ids(path, number, record, fields.ids)
    # The exact generated ids when the record has them (the harness writes them): no re-tokenising.
    response = ids if ids is not None else _field(path, number, record, fields.response)
    answer_field = fields.answer
    if answer_field == "answer" and "answer" not in record and "reference" in record:
        answer_field = "reference"  # the comparison harness's record field
    reference = _field(path, number, record, answer_field)
    if ids is None:
        _check_text_response(path, number, response, fields)
    reference = _check_reference(path, number, reference, answer_field)
    rid = record.get(fields.id, number)
    if fields.group is not None:
        group = _field(path, number, record, fields.group)
    else:
        group = next((record[f] for f in GROUP_FIELDS if f in record), rid)
    versions = record.get("versions") if isinstance(record.get("versions"), dict) else {}
    return {
        "line": number,
        "response": response,
        "reference": reference,
        # A grade already in the file (e.g. from the harness) is kept rather than redone.
        "correct": _typed(record, "correct", bool),
        "prompt_open": _typed(record, "prompt_open", bool),
        "answer_kind": record.get("answer_kind") if record.get("answer_kind") in ANSWER_KINDS else None,
        "problem": _typed(record, fields.problem, str),
        "finish_reason": _typed(record, "finish_reason", str),
        "model": versions.get("model") if isinstance(versions.get("model"), str) else None,
        "id": rid,
        "group": json.dumps(group, sort_keys=True) if isinstance(group, (dict, list)) else group,
    }


def run_settings(info: dict[str, Any]) -> dict[str, Any]:
    """The analysis settings a run was summarised with: triggers, scope, premature_threshold."""
    return {
        "triggers": parse_triggers(info.get("switch_triggers") or "paper"),
        "scope": info.get("switch_scope") or "auto",
        "premature_threshold": int(info.get("premature_threshold", PAPER_BETA)),
    }


def default_judge_cache(source: Path) -> Path:
    """Where an LLM judge's replies are cached: RUN_DIR/judge-cache.jsonl, or FILE.judge-cache.jsonl."""
    return source / "judge-cache.jsonl" if source.is_dir() else source.with_name(source.name + ".judge-cache.jsonl")


def choose_judge(
    info: dict[str, Any],
    name: str = "answer",
    *,
    name_given: bool = False,
    model: str | None = None,
    base_url: str = "http://127.0.0.1:8000/v1",
    api_key: str = "EMPTY",
    cache_path: Path | None = None,
    max_retries: int = 2,
) -> Any:
    """The thought judge: `name` "llm" is an `LLMJudge` (checked to answer); else the run's recorded
    judge unless `name_given` (the user chose one), else the answer-match judge."""
    from tip_decode.analysis import AnswerMatchJudge, LLMJudge

    if name == "llm":
        judge = LLMJudge(model, base_url=base_url, api_key=api_key, cache_path=cache_path, max_retries=max_retries)
        judge.check()
        return judge
    if info.get("judge") and not name_given:
        from tip_decode.harness.summary import load_judge

        return load_judge(info["judge"])
    return AnswerMatchJudge()


def check_id_range(path: Path, items: list[dict[str, Any]], size: int | None) -> None:
    """`ValueError` for token ids outside a vocabulary of `size`: written by another model's tokenizer."""
    if size is None:
        return
    for item in items:
        response = item["response"]
        if isinstance(response, list):
            bad = next((t for t in response if not 0 <= t < size), None)
            if bad is not None:
                raise ValueError(
                    f"{path} line {item['line']}: token id {bad} is outside the tokenizer's vocabulary (0 to {size - 1}); "
                    "were these ids written by another model? (--tokenizer)"
                )


def other_model_warning(items: list[dict[str, Any]], tokenizer: Any, tokenizer_name: str) -> str | None:
    """Records that name the model that wrote them (`versions.model`, as the harness writes) and a
    tokenizer of another name: `InputError` when that model's folder is here and its tokenizer
    differs; the warning to print when it cannot be checked; None when all is well."""
    from tip_decode.harness.backends import load_hf_tokenizer
    from tip_decode.harness.preflight import same_source, tokenizer_fingerprint

    models = {item["model"] for item in items if item["model"]}
    unchecked = []
    given = None
    for model in sorted(m for m in models if not same_source(m, tokenizer_name)):
        if not os.path.isdir(model):
            unchecked.append(model)
            continue
        try:
            recorded = tokenizer_fingerprint(load_hf_tokenizer(model))
        except (RuntimeError, ValueError):
            unchecked.append(model)
            continue
        given = given or tokenizer_fingerprint(tokenizer)
        if recorded and given and recorded != given:
            raise InputError(
                f"tokenizer {tokenizer_name!r} is not the one that wrote these records (they name {model!r}, whose vocabulary differs): "
                "its token ids would be read as other words"
            )
    if not unchecked:
        return None
    return (
        f"WARNING: these records were written by {', '.join(repr(m) for m in unchecked)}, and --tokenizer is {tokenizer_name!r}: "
        "unless that is the same tokenizer, token ids are read as other words and switches, thoughts and UT are wrong"
    )


def check_tokenizer(
    info: dict[str, Any],
    tokenizer: Any,
    tokenizer_name: str,
    source: Path,
    per_file: Sequence[tuple[Any, Path, list[dict[str, Any]]]],
    warn: Callable[[str], None],
) -> None:
    """Refuse a tokenizer other than the one that wrote the records (a run's: `InputError` unless its
    fingerprint matches; a file's: the models its records name) and token ids outside its
    vocabulary (`ValueError`); `warn` gets the warning when that cannot be checked."""
    from tip_decode.harness.preflight import vocabulary_size
    from tip_decode.harness.summary import check_tokenizer_matches

    if info:
        check_tokenizer_matches(info, tokenizer, source)
    else:
        warning = other_model_warning([item for _, _, items in per_file for item in items], tokenizer, tokenizer_name)
        if warning:
            warn(warning)
    size = vocabulary_size(tokenizer)
    for _, path, items in per_file:
        check_id_range(path, items, size)


def analyze_items(
    path: Path,
    items: list[dict[str, Any]],
    vocabulary: Any,
    tokenizer: Any,
    scope: str,
    opened: bool | str,
    threshold: int,
    answer_kind: str | None,
    judge: Any,
    quiet: bool,
    name: str | None,
) -> list[Any]:
    """`analyze_response` of every item (a progress bar unless `quiet`); `ValueError` naming the line.

    `opened` is "auto" or the prompt-open flag; "auto" takes a record's own prompt_open first.
    """
    from tqdm import tqdm

    from tip_decode.analysis import analyze_response

    analyses = []
    for item in tqdm(items, desc=f"analyze {name}" if name else "analyze", unit="response", file=sys.stderr, disable=True if quiet else None):
        try:
            analysis = analyze_response(
                item["response"],
                vocabulary=vocabulary,
                tokenizer=tokenizer,
                reference=item["reference"],
                answer_kind=answer_kind or item["answer_kind"] or "math",
                correct=item["correct"],
                judge=judge,
                scope=scope,
                # A record's own prompt_open (the harness knows it from the prompt) beats the guess.
                prompt_open=item["prompt_open"] if opened == "auto" and item["prompt_open"] is not None else opened,
                premature_threshold=threshold,
                id=item["id"],
                problem=item["problem"],
            )
        except (TypeError, ValueError, OverflowError) as err:
            text = str(err).strip().splitlines()
            raise ValueError(f"{path} line {item['line']}: {text[0] if text else type(err).__name__}") from None
        analyses.append(analysis)
    return analyses


def aggregate_items(analyses: list[Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """`aggregate` of the analyses, grouped by problem, plus the share cut at the token limit."""
    from tip_decode.analysis import aggregate

    summary = aggregate(analyses, problem_ids=[item["group"] for item in items])
    reasons = [item["finish_reason"] for item in items if item["finish_reason"] is not None]
    # Responses cut at the token limit: known only when the records say why generation stopped.
    summary["truncated"] = sum(r == "length" for r in reasons) / len(reasons) if reasons else None
    return summary


def analysis_notes(analyses: list[Any], summary: dict[str, Any], name: str | None) -> list[str]:
    """Notes on what the numbers leave out: responses without a reasoning block, unjudged thoughts."""
    where = f"{name}: " if name else ""
    lines = []
    no_reasoning = sum(a.reasoning_start is None for a in analyses)
    if no_reasoning:
        lines.append(
            f"{where}{no_reasoning} of {len(analyses)} responses have no reasoning block under scope "
            f"{analyses[0].scope!r} (no think marker opens one), so they have no thoughts; "
            "use --scope all, or --prompt-open yes if the prompt opened the block"
        )
    if summary.get("unjudged_thoughts"):
        text = f"{where}{summary['unjudged_thoughts']} thought(s) could not be judged"
        if summary.get("abandoned_unjudged"):
            text += f"; {summary['abandoned_unjudged']} of them were abandoned by a switch, so on-track counts are lower bounds"
        if summary.get("ut_unknown"):
            text += f"; UT is unknown (null) for {summary['ut_unknown']} incorrect response(s), left out of UT and weighted UT"
        lines.append(text)
    return lines
