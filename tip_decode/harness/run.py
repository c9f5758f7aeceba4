"""Running a comparison: prompts -> backend -> records on disk -> summary, and rescoring saved runs.

Output folder layout (the contract other programs rely on):

- `<config>.jsonl`: one record per (problem id, sample index), appended as each finishes.
- `run.json`: the run's settings (model, backend, sampling, seed, configurations).
- `summary.json`, `summary.md`: metrics per configuration and paired differences to the baseline.
- `accuracy.png`, `switches.png`, `thought_lengths.png`.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tip_decode import __version__
from tip_decode.core.config import PAPER_BETA, parse_triggers
from tip_decode.core.recognizer import check_segmentation_arguments, prompt_ends_in_open_think
from tip_decode.core.vocabulary import SwitchVocabulary
from tip_decode.grading import ANSWER_KINDS, answers_equal, extract_answer
from tip_decode.harness.backends import Backend, Completion, GenerationRequest, load_hf_tokenizer
from tip_decode.harness.configs import RunConfig, settings_text
from tip_decode.harness.jsonl import iter_jsonl
from tip_decode.harness.metrics import analyze_records, config_metrics, json_safe, paired_differences, switch_positions
from tip_decode.harness.preflight import InputError, check_configs, check_output_dir, same_source, tokenizer_fingerprint
from tip_decode.harness.problems import Problem
from tip_decode.harness.progress import Progress
from tip_decode.harness.prompts import PromptBuilder, chat_prompt_builder
from tip_decode.harness.records import RecordWriter, read_records
from tip_decode.harness.report import plot_comparison, write_summary_md

logger = logging.getLogger(__name__)

#: run.json fields that must match for a rerun to resume into an existing folder ("model" is
#: compared as a folder: the same folder written another way, relative or absolute, matches).
RESUME_KEYS = ("model", "temperature", "top_p", "max_new_tokens", "seed")
#: Record fields `summarize` reads, with the types they must have.
_RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "sample": (int,),
    "response": (str,),
    "reference": (str,),
    "answer_kind": (str,),
    "n_tokens": (int,),
}


def sample_seed(seed: int, problem_id: str, sample: int) -> int:
    """The seed of one sample: a function of (run seed, problem id, sample index) only.

    Every configuration uses the same seed for the same (problem, sample), so baseline and TIP draw
    the same random numbers and differ only where the penalty changes a choice (a paired design).
    """
    return zlib.crc32(f"{seed}:{problem_id}:{sample}".encode()) & 0x7FFFFFFF


def check_resume(out_dir: Path, run_info: Mapping[str, Any], configs: Sequence[RunConfig]) -> None:
    """`InputError` when `out_dir` holds a run that the new one must not be mixed with.

    `run_info` may hold only some of the keys (the CLI checks before the model loads, when the
    tokenizer fingerprint is not known yet); keys it lacks are not compared.
    """
    path = out_dir / "run.json"
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is damaged (not JSON): use another output folder, or delete run.json to start over there") from None
    if not isinstance(previous, dict):
        raise InputError(f"{path} is damaged (not a JSON object): use another output folder")
    for key in RESUME_KEYS:
        if key not in previous or key not in run_info:
            continue
        same = same_source(previous[key], run_info[key]) if key == "model" else previous[key] == run_info[key]
        if not same:
            raise InputError(f"{out_dir} holds a run with {key}={previous[key]!r}, not {run_info[key]!r}: use another output folder")
    before, now = previous.get("tokenizer_fingerprint"), run_info.get("tokenizer_fingerprint")
    if before and now and before != now:
        raise InputError(f"{out_dir} holds a run written with another tokenizer (vocabulary {before}, not {now}): use another output folder")
    earlier: dict[str, RunConfig | None] = {}
    for entry in previous.get("configs", []):
        if isinstance(entry, dict) and "name" in entry:
            try:
                earlier[entry["name"]] = RunConfig.from_dict(entry)
            except (TypeError, ValueError):
                earlier[entry["name"]] = None  # unreadable: never equal to a new configuration
    for config in configs:
        if config.name not in earlier:
            continue
        before = earlier[config.name]
        if before is None or before.interventions != config.interventions:
            was = settings_text(before.interventions.to_mapping()) if before is not None else "settings this version cannot read"
            raise InputError(
                f"{out_dir} holds configuration {config.name!r} with other settings ({was}; now {settings_text(config.interventions.to_mapping())}): "
                "give this configuration another name (NAME=...) or use another output folder"
            )


def _write_json(path: Path, data: Any) -> None:
    # Write then rename, so a kill never leaves a half-written summary.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(json_safe(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_compare(
    problems: Sequence[Problem],
    configs: Sequence[RunConfig],
    backend: Backend,
    out_dir: str | Path,
    *,
    samples: int = 1,
    seed: int = 0,
    prompt_builder: PromptBuilder | None = None,
    switch_triggers: Any = "paper",
    switch_scope: str = "auto",
    dataset: str | None = None,
    progress: bool = True,
    plots: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    judge: Any = None,
    premature_threshold: int = PAPER_BETA,
) -> dict[str, Any]:
    """Generate every (problem, sample, configuration) not yet in `out_dir`, then write the summary.

    Args:
        problems: the problems (`load_problems`, or built by the caller).
        configs: the configurations; names must be unique. The baseline for paired differences is
            the one named "baseline", else the first with no intervention.
        backend: an `HFBackend`, `VLLMBackend` or `OpenAIBackend`.
        out_dir: the output folder (created; an existing one is resumed).
        samples: samples per problem and configuration.
        seed: run seed; each sample's seed is `sample_seed(seed, id, sample)`.
        prompt_builder: problem -> prompt text (default: the chat template with the standard instruction).
        switch_triggers / switch_scope: what counts as a thought switch in the metrics (the same
            for every configuration, so that switch counts are comparable).
        dataset: a label recorded in run.json and the summary.
        progress: show a tqdm bar on stderr.
        plots: write the PNG plots.
        on_record: called with each record after it is written (the demo shows progress with it).
        judge: the thought judge for UT (default: answer match). Its class is recorded in run.json as
            "module:qualname" so that `tip-decode score` rebuilds the same judge.
        premature_threshold: a switch is premature when the thought it ends is shorter (tokens);
            recorded in run.json, so `tip-decode analyze RUN_DIR` uses the same.

    Returns:
        The summary (also written to `summary.json`).
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"`samples` has to be a positive integer, but is {samples!r}")
    if not problems:
        raise ValueError("`problems` is empty: nothing to run")
    if not configs:
        raise ValueError("`configs` is empty: give at least one configuration")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise InputError(f"`configs` names have to be unique, but are {names}")
    out = check_output_dir(out_dir)
    tokenizer = backend.tokenizer
    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, parse_triggers(switch_triggers))
    check_segmentation_arguments(vocabulary, switch_scope, premature_threshold)
    check_configs(configs, tokenizer)  # a keyword with no token, a budget without think markers ...
    build = prompt_builder or chat_prompt_builder(tokenizer)
    sampling = getattr(backend, "sampling", None)
    tokenizer_name = str(getattr(tokenizer, "name_or_path", "") or backend.model)
    run_info = {
        "dataset": dataset,
        "model": backend.model,
        "model_as_typed": getattr(backend, "model_as_typed", None) or backend.model,
        "tokenizer": os.path.abspath(tokenizer_name) if os.path.exists(tokenizer_name) else tokenizer_name,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "backend": backend.name,
        "backend_version": backend.version,
        "tip_decode": __version__,
        "samples": samples,
        "temperature": getattr(sampling, "temperature", None),
        "top_p": getattr(sampling, "top_p", None),
        "max_new_tokens": getattr(sampling, "max_new_tokens", None),
        "seed": seed,
        "switch_triggers": list(vocabulary.triggers),
        "switch_scope": switch_scope,
        "premature_threshold": premature_threshold,
        "judge": judge_name(judge),
        "configs": [c.to_dict() for c in configs],
    }
    check_resume(out, run_info, configs)
    _write_json(out / "run.json", run_info)

    prompts: dict[str, tuple[str, tuple[int, ...], bool]] = {}
    for problem in problems:
        text = build(problem)
        ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        prompts[problem.id] = (text, ids, prompt_ends_in_open_think(ids, vocabulary.think))
    by_id = {p.id: p for p in problems}

    writers: dict[str, RecordWriter] = {}
    requests: list[GenerationRequest] = []
    for config in configs:
        writer = RecordWriter(out / f"{config.name}.jsonl")  # drops a torn last line first
        writers[config.name] = writer
        done = {(r["id"], r["sample"]) for r in read_records(writer.path)}
        for problem in problems:
            text, ids, _ = prompts[problem.id]
            for sample in range(samples):
                if (problem.id, sample) not in done:
                    requests.append(
                        GenerationRequest((problem.id, sample, config.name), text, ids, sample_seed(seed, problem.id, sample), config.interventions)
                    )
    versions = {"tip_decode": __version__, "model": backend.model, "backend": backend.name, "backend_version": backend.version}
    settings = {c.name: c.to_dict() for c in configs}
    total = len(problems) * samples * len(configs)
    logger.info("%d of %d samples to generate (%d already in %s)", len(requests), total, total - len(requests), out)

    bar = Progress(len(requests), "compare", enabled=progress)

    def complete(request: GenerationRequest, completion: Completion) -> None:
        problem_id, sample, config_name = request.key
        problem = by_id[problem_id]
        text, ids, prompt_open = prompts[problem_id]
        # n_tokens counts every generated token, a final eos included (as vLLM reports usage).
        token_ids = list(completion.token_ids)
        pred = extract_answer(completion.text, problem.answer_kind)
        record = {
            "id": problem_id,
            "sample": sample,
            "config": config_name,
            "seed": request.seed,
            "tip": settings[config_name]["tip"],
            "interventions": settings[config_name]["interventions"],
            "prompt": text,
            "response": completion.text,
            "token_ids": token_ids,
            "n_tokens": len(token_ids),
            "finish_reason": completion.finish_reason,
            "reference": problem.answer,
            "answer_kind": problem.answer_kind,
            "pred": pred,
            "correct": answers_equal(pred, problem.answer, problem.answer_kind),
            "prompt_open": prompt_open,
            "switch_positions": switch_positions(vocabulary, token_ids, switch_scope, prompt_open),
            "versions": versions,
        }
        writers[config_name].write(record)
        if not reports_tokens:
            bar.add_tokens(len(token_ids))
        bar.finish_sample()
        if on_record is not None:
            on_record(record)

    # Backends report tokens while they generate (progress that moves during long responses); one
    # written before `on_tokens` existed is counted when each sample finishes.
    reports_tokens = "on_tokens" in inspect.signature(backend.generate).parameters
    try:
        if reports_tokens:
            backend.generate(requests, complete, on_tokens=bar.add_tokens)
        else:
            backend.generate(requests, complete)
    finally:
        bar.close()
        for writer in writers.values():
            writer.close()
    wanted = {(p.id, s) for p in problems for s in range(samples)}
    return summarize(out, tokenizer=tokenizer, configs=[c.name for c in configs], keep=wanted, plots=plots, regrade=False, judge=judge)


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
    for number, record in iter_jsonl(path, torn_tail=True):
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


def summarize(
    run_dir: str | Path,
    *,
    tokenizer: Any = None,
    configs: Sequence[str] | None = None,
    keep: set[tuple[str, int]] | None = None,
    plots: bool = True,
    regrade: bool = True,
    judge: Any = None,
) -> dict[str, Any]:
    """Compute (and write) summary.json, summary.md and plots from the records in `run_dir`.

    `judge` decides which thoughts are correct for UT; by default the judge recorded in run.json
    (the answer-match judge when none is).

    With `regrade`, every record's `pred` / `correct` / `switch_positions` are recomputed and the
    record files rewritten (atomically, by rename) — this is `tip-decode score`.
    """
    out = Path(run_dir)
    info = read_run_info(out)
    if configs is None:
        configs = [c["name"] for c in info.get("configs", [])] or [p.stem for p in sorted(out.glob("*.jsonl"))]
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
        records = checked_records(out / f"{name}.jsonl")
        # One record per (id, sample): a duplicate could only come from a hand-edited file.
        unique: dict[tuple[str, int], dict[str, Any]] = {}
        for record in records:
            unique.setdefault((record["id"], record["sample"]), record)
        records = list(unique.values())
        if regrade:
            for record in records:
                record["pred"] = extract_answer(record["response"], record["answer_kind"])
                record["correct"] = answers_equal(record["pred"], record["reference"], record["answer_kind"])
        selected = [r for r in records if keep is None or (r["id"], r["sample"]) in keep]
        analyses, aggregate = analyze_records(selected, vocabulary, tokenizer, scope, judge=judge, premature_threshold=threshold)
        if regrade:
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
        "run": {k: v for k, v in info.items() if k != "configs"},
    }
    summary = json_safe(summary)
    _write_json(out / "summary.json", summary)
    write_summary_md(summary, out / "summary.md")
    if plots:
        plot_comparison(summary, records_by_config, out)
    return summary
