"""Running a comparison: prompts -> backend -> records on disk -> summary, and rescoring saved runs.

Output folder layout (the contract other programs rely on):

- `<config>.jsonl`: one record per (problem id, sample index), appended as each finishes.
- `run.json`: the run's settings (model, backend, sampling, seed, configurations).
- `summary.json`, `summary.md`: metrics per configuration and paired differences to the baseline.
- `accuracy.png`, `switches.png`, `thought_lengths.png`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tip_decode import __version__
from tip_decode.core.config import parse_triggers
from tip_decode.grading import answers_equal, extract_answer
from tip_decode.harness.backends import Backend, Completion, GenerationRequest
from tip_decode.harness.configs import RunConfig
from tip_decode.harness.metrics import analyze_records, config_metrics, json_safe, paired_differences, switch_positions
from tip_decode.harness.problems import Problem
from tip_decode.harness.prompts import PromptBuilder, chat_prompt_builder
from tip_decode.harness.records import RecordWriter, read_records
from tip_decode.harness.report import plot_comparison, write_summary_md
from tip_decode.core.recognizer import prompt_ends_in_open_think
from tip_decode.core.vocabulary import SwitchVocabulary

logger = logging.getLogger(__name__)

#: run.json fields that must match for a rerun to resume into an existing folder.
RESUME_KEYS = ("model", "temperature", "top_p", "max_new_tokens", "seed")


def sample_seed(seed: int, problem_id: str, sample: int) -> int:
    """The seed of one sample: a function of (run seed, problem id, sample index) only.

    Every configuration uses the same seed for the same (problem, sample), so baseline and TIP draw
    the same random numbers and differ only where the penalty changes a choice (a paired design).
    """
    return zlib.crc32(f"{seed}:{problem_id}:{sample}".encode()) & 0x7FFFFFFF


def _check_resume(out_dir: Path, run_info: dict[str, Any], configs: Sequence[RunConfig]) -> None:
    path = out_dir / "run.json"
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return
    for key in RESUME_KEYS:
        if key in previous and previous[key] != run_info[key]:
            raise ValueError(
                f"{out_dir} holds a run with {key}={previous[key]!r}, not {run_info[key]!r}: use another output folder"
            )
    earlier = {c["name"]: c.get("tip") for c in previous.get("configs", [])}
    for config in configs:
        mapping = config.to_dict()["tip"]
        if config.name in earlier and earlier[config.name] != mapping:
            raise ValueError(f"{out_dir} holds configuration {config.name!r} with other settings ({earlier[config.name]}): rename it")


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
) -> dict[str, Any]:
    """Generate every (problem, sample, configuration) not yet in `out_dir`, then write the summary.

    Args:
        problems: the problems (`load_problems`, or built by the caller).
        configs: the configurations; names must be unique. The baseline for paired differences is
            the one named "baseline", else the first with TIP off.
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
        raise ValueError(f"`configs` names have to be unique, but are {names}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = backend.tokenizer
    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, parse_triggers(switch_triggers))
    build = prompt_builder or chat_prompt_builder(tokenizer)
    sampling = getattr(backend, "sampling", None)
    run_info = {
        "dataset": dataset,
        "model": backend.model,
        "tokenizer": str(getattr(tokenizer, "name_or_path", "") or backend.model),
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
        "judge": judge_name(judge),
        "configs": [c.to_dict() for c in configs],
    }
    _check_resume(out, run_info, configs)
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
        tip = None if config.is_baseline else config.tip
        for problem in problems:
            text, ids, _ = prompts[problem.id]
            for sample in range(samples):
                if (problem.id, sample) not in done:
                    requests.append(GenerationRequest((problem.id, sample, config.name), text, ids, sample_seed(seed, problem.id, sample), tip))
    versions = {"tip_decode": __version__, "model": backend.model, "backend": backend.name, "backend_version": backend.version}
    tips = {c.name: c.to_dict()["tip"] for c in configs}
    total = len(problems) * samples * len(configs)
    logger.info("%d of %d samples to generate (%d already in %s)", len(requests), total, total - len(requests), out)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(requests), desc="compare", unit="sample", file=sys.stderr, disable=not progress or not requests, dynamic_ncols=True)

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
            "tip": tips[config_name],
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
        bar.update(1)
        if on_record is not None:
            on_record(record)

    try:
        backend.generate(requests, complete)
    finally:
        bar.close()
        for writer in writers.values():
            writer.close()
    wanted = {(p.id, s) for p in problems for s in range(samples)}
    return summarize(out, tokenizer=tokenizer, configs=[c.name for c in configs], keep=wanted, plots=plots, regrade=False, judge=judge)


def judge_name(judge: Any) -> str | None:
    """"module:qualname" of a judge that can be rebuilt with no arguments, else None."""
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


def _baseline_name(run_configs: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str | None:
    if "baseline" in names:
        return "baseline"
    for config in run_configs:
        tip = config.get("tip")
        if config["name"] in names and (not tip or float(tip.get("tip_alpha", 0) or 0) == 0 or int(tip.get("tip_beta", 1)) == 0):
            return config["name"]
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
    info_path = out / "run.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    if configs is None:
        configs = [c["name"] for c in info.get("configs", [])] or [p.stem for p in sorted(out.glob("*.jsonl"))]
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(info.get("tokenizer") or info["model"])
    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, info.get("switch_triggers") or "paper")
    scope = info.get("switch_scope", "auto")
    if judge is None:
        judge = load_judge(info.get("judge"))
    records_by_config: dict[str, list[dict[str, Any]]] = {}
    metrics: dict[str, Any] = {}
    for name in configs:
        records = read_records(out / f"{name}.jsonl")
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
        _, aggregate = analyze_records(selected, vocabulary, tokenizer, scope, judge=judge)
        if regrade:
            tmp = out / f"{name}.jsonl.tmp"
            with tmp.open("w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, out / f"{name}.jsonl")
        records_by_config[name] = selected
        metrics[name] = config_metrics(selected, aggregate)
        metrics[name]["tip"] = next((c.get("tip") for c in info.get("configs", []) if c["name"] == name), None)
    baseline = _baseline_name(info.get("configs", []), list(configs))
    summary = {
        "configs": metrics,
        "paired": paired_differences(records_by_config, baseline, seed=int(info.get("seed", 0) or 0)),
        "baseline": baseline,
        "run": {k: v for k, v in info.items() if k != "configs"},
    }
    summary = json_safe(summary)
    _write_json(out / "summary.json", summary)
    write_summary_md(summary, out / "summary.md")
    if plots:
        plot_comparison(summary, records_by_config, out)
    return summary
