"""Reading a saved run and summarising it (`tip-decode score`): run.json, the records, the judge.

`run_compare` ends here too: it summarises what it wrote with `summarize`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tip_decode.core.config import PAPER_BETA
from tip_decode.core.vocabulary import SwitchVocabulary
from tip_decode.grading import ANSWER_KINDS, answers_equal, extract_answer
from tip_decode.harness.backends import load_hf_tokenizer
from tip_decode.harness.configs import RunConfig
from tip_decode.harness.folder import RunLock, record_file_notes
from tip_decode.harness.jsonl import iter_jsonl
from tip_decode.harness.metrics import analyze_records, config_metrics, json_safe, paired_differences
from tip_decode.harness.preflight import InputError, tokenizer_fingerprint
from tip_decode.harness.report import plot_comparison, write_summary_md

#: Record fields `summarize` reads, with the types they must have.
_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "sample": (int,),
    "response": (str,),
    "reference": (str,),
    "answer_kind": (str,),
    "n_tokens": (int,),
}


def write_json(path: Path, data: Any) -> None:
    # Write then rename, so a kill never leaves a half-written summary.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The run's run.json (an empty dict when there is none); a damaged one is an error naming it."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it is written by `tip-decode compare`") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} has to hold a JSON object, but holds {type(info).__name__}")
    return info


def check_tokenizer_matches(info: Mapping[str, Any], tokenizer: Any, where: str | Path) -> None:
    """`InputError` when `tokenizer` is not the one that wrote the run's records.

    Compares vocabulary fingerprints (every piece and its id): token ids written by one tokenizer
    mean other words under another, so switches, thoughts and UT would be silently wrong.
    """
    recorded = info.get("tokenizer_fingerprint")
    if not recorded:
        return
    given = tokenizer_fingerprint(tokenizer)
    if given is not None and given != recorded:
        name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
        raise InputError(
            f"tokenizer {name!r} is not the one that wrote {where} (vocabulary {given}, the run's is {recorded}, "
            f"from {info.get('tokenizer')!r}): its token ids would be read as other words"
        )


def checked_records(path: Path) -> list[dict[str, Any]]:
    """The records of one configuration file, each checked for the fields `summarize` reads.

    A record with a missing or mistyped field (a hand-edited file) is an error naming file and line.
    """
    records = []
    if not path.exists():
        return records
    # A torn last line is named in summarize's notes, not logged here.
    for number, record in iter_jsonl(path, torn_tail=True, log_torn=False):
        for key, types in _RECORD_FIELDS.items():
            value = record.get(key)
            if key not in record:
                raise ValueError(f"{path} line {number}: missing field {key!r}")
            if isinstance(value, bool) or not isinstance(value, types):
                raise ValueError(f"{path} line {number}: field {key!r} has to be {'an integer' if types == (int,) else 'text'}, but is {value!r}"[:300])
        ids = record.get("token_ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids)):
            raise ValueError(f"{path} line {number}: field 'token_ids' has to be a list of non-negative integer token ids")
        if record["answer_kind"] not in ANSWER_KINDS:
            raise ValueError(f"{path} line {number}: field 'answer_kind' has to be one of {', '.join(ANSWER_KINDS)}, but is {record['answer_kind']!r}")
        records.append(record)
    return records


def judge_name(judge: Any) -> str | None:
    """ "module:qualname" of a judge that can be rebuilt with no arguments, else None."""
    if judge is None:
        return None
    cls = type(judge)
    return f"{cls.__module__}:{cls.__qualname__}"


def load_judge(name: str | None) -> Any:
    """The judge recorded in run.json (None: the default answer-match judge)."""
    if not name:
        return None
    import importlib

    module_name, _, qualname = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj()
    except (ImportError, AttributeError, TypeError) as err:
        raise ValueError(f"cannot rebuild the judge {name!r} recorded in run.json: {err}") from None


def run_configs(info: Mapping[str, Any]) -> dict[str, RunConfig]:
    """The configurations recorded in run.json, by name (old TIP-only entries included)."""
    configs = {}
    for entry in info.get("configs", []):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            try:
                configs[entry["name"]] = RunConfig.from_dict(entry)
            except (TypeError, ValueError) as err:
                raise ValueError(f"run.json: configuration {entry['name']!r} cannot be read: {err}") from None
    return configs


def _baseline_name(configs: Mapping[str, RunConfig], names: Sequence[str]) -> str | None:
    if "baseline" in names:
        return "baseline"
    for name, config in configs.items():
        if name in names and config.is_baseline:
            return name
    return None


def expected_records(info: Mapping[str, Any], present: Mapping[str, set[tuple[str, int]]]) -> set[tuple[str, int]]:
    """The (problem id, sample) pairs a complete run holds for each configuration: run.json's problems
    times its samples; for a run.json written before those were recorded, every pair some
    configuration has."""
    ids, samples = info.get("problem_ids"), info.get("samples")
    if isinstance(ids, list) and all(isinstance(i, str) for i in ids) and isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1:
        return {(i, s) for i in ids for s in range(samples)}
    return set().union(*present.values()) if present else set()


def summarize(
    run_dir: str | Path,
    *,
    tokenizer: Any = None,
    configs: Sequence[str] | None = None,
    keep: set[tuple[str, int]] | None = None,
    plots: bool = True,
    regrade: bool = True,
    judge: Any = None,
    partial: bool = False,
) -> dict[str, Any]:
    """Compute (and write) summary.json, summary.md and plots from the records in `run_dir`.

    `judge` decides which thoughts are correct for UT; by default the judge recorded in run.json
    (the answer-match judge when none is). `keep`: the (problem id, sample) pairs to summarise
    (default: the run's problems and samples from run.json, `expected_records`).

    A folder where a configuration lacks some of those records is not a complete run: an
    `InputError` saying what is missing, unless `partial` (then each configuration is summarised
    over the records it has, and `notes` says what is missing). Record files that are missing,
    empty, end in a torn line or repeat a record are named in the summary's `notes`.

    With `regrade`, every record's `pred` / `correct` / `switch_positions` are recomputed and the
    record files rewritten (atomically, by rename, each record once) — this is `tip-decode score`.
    The folder is locked meanwhile (`tip_decode.harness.folder.RunLock`).
    """
    out = Path(run_dir)
    if not out.is_dir():
        raise InputError(f"no such folder: {str(out)!r} (a run folder written by `tip-decode compare`)")
    with RunLock(out, "tip-decode score"):
        return _summarize_locked(out, tokenizer=tokenizer, configs=configs, keep=keep, plots=plots, regrade=regrade, judge=judge, partial=partial)


def _summarize_locked(
    out: Path,
    *,
    tokenizer: Any,
    configs: Sequence[str] | None,
    keep: set[tuple[str, int]] | None,
    plots: bool,
    regrade: bool,
    judge: Any,
    partial: bool,
) -> dict[str, Any]:
    info = read_run_info(out)
    if configs is None:
        configs = [c["name"] for c in info.get("configs", []) if isinstance(c, dict) and isinstance(c.get("name"), str)] or [
            p.stem for p in sorted(out.glob("*.jsonl"))
        ]
    if not configs:
        raise InputError(f"{out} holds no configuration and no record file: nothing to summarise")
    # Records first (no model, no tokenizer): an incomplete folder is refused in a second.
    notes = record_file_notes(out, configs)
    all_records: dict[str, list[dict[str, Any]]] = {}
    for name in configs:
        records = checked_records(out / f"{name}.jsonl")
        unique: dict[tuple[str, int], dict[str, Any]] = {}
        for record in records:
            unique.setdefault((record["id"], record["sample"]), record)
        if len(unique) < len(records):
            notes.append(
                f"{name}.jsonl holds {len(records) - len(unique)} repeated record(s) (a problem and sample written twice); "
                "the first of each is used" + (" and the file is rewritten without the others" if regrade else "")
            )
        all_records[name] = list(unique.values())
    present = {name: {(r["id"], r["sample"]) for r in records} for name, records in all_records.items()}
    wanted = keep if keep is not None else expected_records(info, present)
    if not any(present[name] & wanted for name in configs):
        raise InputError(f"{out} holds no records of its run's problems: nothing to summarise (`tip-decode compare -o {out}` writes them)")
    missing = {name: len(wanted - present[name]) for name in configs if wanted - present[name]}
    if missing:
        counts = ", ".join(f"{name} has {len(wanted) - n} of {len(wanted)}" for name, n in missing.items())
        if not partial:
            # The damaged files are named here too: the refusal is the only line the user sees.
            damage = "; ".join(notes)
            raise InputError(
                f"{out} is not a complete run ({counts} records{'; ' + damage if damage else ''}): "
                "rerun its compare command to finish it (it resumes), or summarise the records there with --partial"
            )
        notes.append(f"partial run: {counts} records; each configuration is summarised over the records it has")
    if tokenizer is None:
        source = info.get("tokenizer") or info.get("model")
        if not source:
            raise InputError(f"{out}/run.json names no model or tokenizer: pass one (--tokenizer)")
        try:
            tokenizer = load_hf_tokenizer(source)
        except (InputError, RuntimeError) as err:
            raise InputError(f"{err}; the run's tokenizer is gone: pass it with --tokenizer") from None
    else:
        check_tokenizer_matches(info, tokenizer, out)
    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, info.get("switch_triggers") or "paper")
    scope = info.get("switch_scope", "auto")
    threshold = int(info.get("premature_threshold", PAPER_BETA))
    seed = int(info.get("seed", 0) or 0)
    if judge is None:
        judge = load_judge(info.get("judge"))
    recorded = run_configs(info)
    records_by_config: dict[str, list[dict[str, Any]]] = {}
    metrics: dict[str, Any] = {}
    for name in configs:
        records = all_records[name]
        if regrade:
            for record in records:
                record["pred"] = extract_answer(record["response"], record["answer_kind"])
                record["correct"] = answers_equal(record["pred"], record["reference"], record["answer_kind"])
        selected = [r for r in records if (r["id"], r["sample"]) in wanted]
        analyses, aggregate = analyze_records(selected, vocabulary, tokenizer, scope, judge=judge, premature_threshold=threshold)
        if regrade and (out / f"{name}.jsonl").exists():
            tmp = out / f"{name}.jsonl.tmp"
            with tmp.open("w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, out / f"{name}.jsonl")
        records_by_config[name] = selected
        metrics[name] = config_metrics(selected, aggregate, seed=seed, analyses=analyses, markers=vocabulary.think)
        config = recorded.get(name)
        # Each configuration's settings: every intervention's flat keys, and `tip` as before.
        metrics[name]["interventions"] = config.interventions.to_mapping() if config is not None else None
        metrics[name]["tip"] = config.to_dict()["tip"] if config is not None else None
    baseline = _baseline_name(recorded, list(configs))
    summary = {
        "configs": metrics,
        "paired": paired_differences(records_by_config, baseline, seed=seed),
        "baseline": baseline,
        "run": {k: v for k, v in info.items() if k not in ("configs", "problem_ids")},
        "partial": bool(missing),
        "notes": notes,
    }
    summary = json_safe(summary)
    write_json(out / "summary.json", summary)
    write_summary_md(summary, out / "summary.md")
    if plots:
        plot_comparison(summary, records_by_config, out)
    return summary
