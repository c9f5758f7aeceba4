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
from tip_decode.grading import answers_equal, extract_answer
from tip_decode.harness.backends import Backend, Completion, GenerationRequest
from tip_decode.harness.configs import RunConfig
from tip_decode.harness.folder import IDENTITY_KEYS, RunLock, check_configs_unchanged, check_identity, check_records, text_sha256
from tip_decode.harness.metrics import switch_positions
from tip_decode.harness.preflight import InputError, check_configs, check_output_dir, tokenizer_fingerprint
from tip_decode.harness.problems import Problem
from tip_decode.harness.progress import Progress
from tip_decode.harness.prompts import PromptBuilder, chat_prompt_builder
from tip_decode.harness.records import RecordWriter, read_records
from tip_decode.harness.summary import (  # noqa: F401  (kept importable from here: tip_decode.harness.run was their home)
    check_tokenizer_matches,
    checked_records,
    expected_records,
    judge_name,
    load_judge,
    read_run_info,
    run_configs,
    summarize,
    write_json,
)

logger = logging.getLogger(__name__)

#: run.json fields that must match for a rerun to resume into an existing folder (see
#: tip_decode.harness.folder: "model" is compared as a folder, "data" by content).
RESUME_KEYS = tuple(IDENTITY_KEYS)


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
            problems,
            configs,
            backend,
            out,
            samples=samples,
            seed=seed,
            prompt_builder=prompt_builder,
            switch_triggers=switch_triggers,
            switch_scope=switch_scope,
            dataset=dataset,
            progress=progress,
            plots=plots,
            on_record=on_record,
            judge=judge,
            premature_threshold=premature_threshold,
            data=data,
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
    write_json(out / "run.json", run_info)

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
