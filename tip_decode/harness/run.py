"""Running a comparison: prompts -> backend -> records on disk -> summary, and rescoring saved runs.

Output folder layout (the contract other programs rely on):

- `<config>.jsonl`: one record per (problem id, sample index), appended as each finishes.
- `run.json`: what identifies the run (data and its hash, prompt, model, tokenizer, backend, sampling,
  seed; tip_decode.harness.folder) and its configurations, problems and samples.
- `.lock`: locked while a run writes into the folder (a second writer is refused).
- `summary.json`, `summary.md`: metrics per configuration and paired differences to the baseline.
- `accuracy.png`, `switches.png`, `thought_lengths.png`.
"""

from __future__ import annotations

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
from tip_decode.harness.configs import RunConfig
from tip_decode.harness.folder import IDENTITY_KEYS, RunLock, check_configs_unchanged, check_identity, check_records, record_file_notes, text_sha256
from tip_decode.harness.jsonl import iter_jsonl
from tip_decode.harness.metrics import analyze_records, config_metrics, json_safe, paired_differences, switch_positions
from tip_decode.harness.preflight import InputError, check_configs, check_output_dir, tokenizer_fingerprint
from tip_decode.harness.problems import Problem
from tip_decode.harness.progress import Progress
from tip_decode.harness.prompts import PromptBuilder, chat_prompt_builder
from tip_decode.harness.records import RecordWriter, read_records
from tip_decode.harness.report import plot_comparison, write_summary_md

logger = logging.getLogger(__name__)

#: run.json fields that must match for a rerun to resume into an existing folder (see
#: tip_decode.harness.folder: "model" is compared as a folder, "data" by content).
RESUME_KEYS = tuple(IDENTITY_KEYS)
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


def previous_run_info(out_dir: Path) -> dict[str, Any] | None:
    """The run.json of a folder a run is about to write into (None when there is none); a damaged
    one is an `InputError`: the folder's run cannot be identified, so it is not resumed."""
    path = out_dir / "run.json"
    if not path.exists():
        return None
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path} is damaged (not JSON): use another output folder, or delete run.json to start over there") from None
    if not isinstance(previous, dict):
        raise InputError(f"{path} is damaged (not a JSON object): use another output folder")
    return previous


def check_resume(out_dir: Path, run_info: Mapping[str, Any], configs: Sequence[RunConfig]) -> None:
    """`InputError` when `out_dir` holds a run that the new one must not be mixed with: an identity
    key (`RESUME_KEYS`) differs, or a configuration name stands for other settings.

    `run_info` may hold only some of the keys (the CLI checks before the tokenizer loads, and again
    before the model loads); keys it lacks are not compared.
    """
    previous = previous_run_info(Path(out_dir))
    if previous is None:
        return
    check_identity(Path(out_dir), previous, run_info)
    check_configs_unchanged(Path(out_dir), previous, configs)


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
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate every (problem, sample, configuration) not yet in `out_dir`, then write the summary.

    A folder that holds a run is resumed only when that run is this one (tip_decode.harness.folder):
    same data, prompt, model, tokenizer, backend, sampling settings, seed and metric settings, and
    every record there made from the prompt and reference this run would use; anything else is an
    `InputError` naming what differs. The folder is locked while the run writes (`FolderBusy` for a
    second writer), and no (problem, sample, configuration) is ever written twice.

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
        data: what identifies the data set, recorded in run.json and compared on resume
            (`tip_decode.harness.folder.data_identity`; the CLI passes it). Problems built in Python
            are identified through their records' prompts and references.

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
    if isinstance(out_dir, str) and not out_dir.strip():
        raise InputError("the output folder has to be a path, but is empty (an empty -o would write the run into the current folder)")
    out = check_output_dir(out_dir)
    with RunLock(out, "tip-decode compare"):
        return _run_locked(
            problems, configs, backend, out, samples=samples, seed=seed, prompt_builder=prompt_builder, switch_triggers=switch_triggers,
            switch_scope=switch_scope, dataset=dataset, progress=progress, plots=plots, on_record=on_record, judge=judge,
            premature_threshold=premature_threshold, data=data,
        )


def prompt_identity(build: Any, tokenizer: Any) -> dict[str, Any]:
    """The prompt settings run.json records: the system message and user template of a
    `chat_prompt_builder` (None for a custom builder or the defaults), and the chat template's hash."""
    return {
        "system": getattr(build, "system", None),
        "template": getattr(build, "template", None),
        "chat_template": text_sha256(getattr(tokenizer, "chat_template", None) if isinstance(getattr(tokenizer, "chat_template", None), str) else None),
    }


def _run_locked(
    problems: Sequence[Problem],
    configs: Sequence[RunConfig],
    backend: Backend,
    out: Path,
    *,
    samples: int,
    seed: int,
    prompt_builder: PromptBuilder | None,
    switch_triggers: Any,
    switch_scope: str,
    dataset: str | None,
    progress: bool,
    plots: bool,
    on_record: Callable[[dict[str, Any]], None] | None,
    judge: Any,
    premature_threshold: int,
    data: Mapping[str, Any] | None,
) -> dict[str, Any]:
    tokenizer = backend.tokenizer
    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, parse_triggers(switch_triggers))
    check_segmentation_arguments(vocabulary, switch_scope, premature_threshold)
    check_configs(configs, tokenizer)  # a keyword with no token, a budget without think markers ...
    build = prompt_builder or chat_prompt_builder(tokenizer)
    sampling = getattr(backend, "sampling", None)
    tokenizer_name = str(getattr(tokenizer, "name_or_path", "") or backend.model)
    run_info = {
        "dataset": dataset,
        "data": dict(data) if data is not None else None,
        **prompt_identity(build, tokenizer),
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
        "problem_ids": [p.id for p in problems],
    }
    previous = previous_run_info(out)
    if previous is not None:
        check_identity(out, previous, run_info)
        check_configs_unchanged(out, previous, configs)
        # Configurations of earlier commands stay in run.json: their records are still in the folder.
        names = {c.name for c in configs}
        kept = [c for c in previous.get("configs", []) if isinstance(c, dict) and c.get("name") not in names]
        run_info["configs"] = kept + run_info["configs"]

    prompts: dict[str, tuple[str, tuple[int, ...], bool]] = {}
    for problem in problems:
        text = build(problem)
        ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        prompts[problem.id] = (text, ids, prompt_ends_in_open_think(ids, vocabulary.think))
    by_id = {p.id: p for p in problems}
    check_records(out, [c.name for c in configs], {p.id: (prompts[p.id][0], p.answer, p.answer_kind) for p in problems})
    _write_json(out / "run.json", run_info)

    writers: dict[str, RecordWriter] = {}
    written: dict[str, set[tuple[str, int]]] = {}
    requests: list[GenerationRequest] = []
    for config in configs:
        writer = RecordWriter(out / f"{config.name}.jsonl")  # drops a torn last line first
        writers[config.name] = writer
        done = {(r["id"], r["sample"]) for r in read_records(writer.path)}
        written[config.name] = done
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
        if (problem_id, sample) in written[config_name]:
            # A backend that reports a request twice must not make the record count twice.
            logger.warning("%s: problem %r sample %d was already written; the second completion is dropped", config_name, problem_id, sample)
            return
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
        written[config_name].add((problem_id, sample))
        bar.finish_sample()
        if on_record is not None:
            on_record(record)

    # Every backend reports its tokens through `on_tokens` (the `Backend.generate` contract): while
    # it generates where the engine streams them, else as each request finishes.
    try:
        backend.generate(requests, complete, on_tokens=bar.add_tokens)
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
    _write_json(out / "summary.json", summary)
    write_summary_md(summary, out / "summary.md")
    if plots:
        plot_comparison(summary, records_by_config, out)
    return summary
