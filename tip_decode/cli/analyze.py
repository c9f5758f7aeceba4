"""`tip-decode analyze SOURCE`: thoughts, switches and the underthinking score of saved responses.

SOURCE is a JSON-lines file of responses, or a run folder written by `tip-decode compare` / `demo`
(or one of its `<config>.jsonl` files). On a run's records every setting defaults to the run's own
(run.json: tokenizer, switch triggers, scope, premature threshold, thought judge), so the numbers
are the run's summary's; a tokenizer other than the one that wrote the records is refused.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from tip_decode.cli.common import (
    UsageFailure,
    emit_json,
    force_triggers_option,
    library_progress,
    load_tokenizer,
    one_line,
    triggers_option,
    user_errors,
    vet_triggers,
)
from tip_decode.core.config import PAPER_BETA, SCOPES, parse_triggers

#: Record fields tried, in order, as the problem key of weighted UT when --group-field is not given.
GROUP_FIELDS = ("problem_id", "unique_id", "problem", "question")
#: Plot formats matplotlib writes.
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def _read_records(path: Path, run_records: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """`run_records`: a record file of a `compare` run, written one whole line at a time, so a torn
    last line is a write cut short (skipped, and named in a note as `score` does), not bad input."""
    from tip_decode.harness.jsonl import JSONLError, iter_jsonl

    try:
        records = list(iter_jsonl(path, torn_tail=run_records, log_torn=False))
    except JSONLError as err:
        hint = " (a .json file? analyze reads JSON lines: one object per line)" if path.suffix.lower() == ".json" else ""
        raise click.ClickException(f"{err}{hint}") from None
    if not records:
        raise click.ClickException(f"{path}: no responses (the file is empty)")
    return records


def _field(path: Path, number: int, record: dict[str, Any], name: str) -> Any:
    if name not in record:
        fields = ", ".join(sorted(record)) or "none"
        raise click.ClickException(f"{path} line {number}: missing field {name!r} (fields: {fields})")
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
        raise click.ClickException(f"{path} line {number}: field {ids_field!r} has to be a list of integer token ids, but is {_describe(ids)}")
    for index, token in enumerate(ids):
        if isinstance(token, bool) or not isinstance(token, int):
            raise click.ClickException(
                f"{path} line {number}: field {ids_field!r} has to be a list of integer token ids, but item {index} is {_describe(token)}"
            )
    return ids if ids else None


def _validated(
    path: Path,
    number: int,
    record: dict[str, Any],
    response_field: str,
    answer_field: str,
    id_field: str,
    problem_field: str,
    group_field: str | None,
    ids_field: str = "token_ids",
) -> dict[str, Any]:
    ids = _token_ids(path, number, record, ids_field)
    if ids is not None:
        response: Any = ids  # exact generated ids (the harness writes them): no re-tokenising
    else:
        response = _field(path, number, record, response_field)
    if answer_field == "answer" and "answer" not in record and "reference" in record:
        answer_field = "reference"  # the comparison harness's record field
    reference = _field(path, number, record, answer_field)
    if ids is None:
        if isinstance(response, list):
            raise click.ClickException(f"{path} line {number}: field {response_field!r} holds a list; token ids go in --ids-field ({ids_field!r})")
        if not isinstance(response, str):
            raise click.ClickException(f"{path} line {number}: field {response_field!r} has to be text or a list of token ids, not {type(response).__name__}")
        if not response.strip():
            raise click.ClickException(f"{path} line {number}: empty response in field {response_field!r}")
    if isinstance(reference, float) and not math.isfinite(reference):
        raise click.ClickException(
            f"{path} line {number}: field {answer_field!r} is {reference}, not a reference answer (a missing value written as NaN?); write it as text, or leave the line out"
        )
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        reference = str(reference)
    if not isinstance(reference, str) or not reference.strip():
        raise click.ClickException(f"{path} line {number}: field {answer_field!r} has to be a non-empty reference answer, not {reference!r}")
    rid = record.get(id_field, number)
    if group_field is not None:
        group = _field(path, number, record, group_field)
    else:
        group = next((record[f] for f in GROUP_FIELDS if f in record), rid)
    versions = record.get("versions") if isinstance(record.get("versions"), dict) else {}
    return {
        "line": number,
        "response": response,
        "reference": reference,
        # A grade already in the file (e.g. from the harness) is kept rather than redone.
        "correct": record.get("correct") if isinstance(record.get("correct"), bool) else None,
        "prompt_open": record.get("prompt_open") if isinstance(record.get("prompt_open"), bool) else None,
        "answer_kind": record.get("answer_kind") if record.get("answer_kind") in ("math", "number", "choice") else None,
        "problem": record.get(problem_field) if isinstance(record.get(problem_field), str) else None,
        "finish_reason": record.get("finish_reason") if isinstance(record.get("finish_reason"), str) else None,
        "model": versions.get("model") if isinstance(versions.get("model"), str) else None,
        "id": rid,
        "group": json.dumps(group, sort_keys=True) if isinstance(group, (dict, list)) else group,
    }


def _sources(source: Path, config_names: tuple[str, ...]) -> tuple[dict[str, Any], list[tuple[str | None, Path]]]:
    """(run.json or {}, [(config name or None, file)]) for a file or a run folder."""
    from tip_decode.harness.run import read_run_info

    if not source.exists():
        raise UsageFailure(f"no such file or folder: {str(source)!r}")
    if source.name == "run.json" and source.is_file():
        source = source.parent  # the run's settings file: analyse the run
    if source.is_dir():
        if not (source / "run.json").is_file():
            raise UsageFailure(f"{source} is not a run folder (no run.json); give a JSON-lines file of responses, or a folder written by `tip-decode compare`")
        with user_errors():
            info = read_run_info(source)
        names = [c.get("name") for c in info.get("configs", []) if isinstance(c, dict)] or [p.stem for p in sorted(source.glob("*.jsonl"))]
        if config_names:
            unknown = [n for n in config_names if n not in names]
            if unknown:
                raise UsageFailure(f"--config {', '.join(unknown)}: the run has no such configuration (it has: {', '.join(names)})")
            names = list(config_names)
        files = [(n, source / f"{n}.jsonl") for n in names if (source / f"{n}.jsonl").is_file()]
        if not files:
            raise click.ClickException(f"{source} holds no records yet (no <config>.jsonl file)")
        return info, files
    if config_names:
        raise UsageFailure("--config selects configurations of a run folder; SOURCE is a file")
    info: dict[str, Any] = {}
    run_json = source.parent / "run.json"
    if run_json.is_file() and source.suffix == ".jsonl":
        with user_errors():
            candidate = read_run_info(source.parent)
        if source.stem in [c.get("name") for c in candidate.get("configs", []) if isinstance(c, dict)]:
            info = candidate  # a record file of a run: the run's settings apply
    return info, [(source.stem if info else None, source)]


def _explicit(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _check_plot_path(plot: Path) -> None:
    if plot.suffix.lower() not in PLOT_SUFFIXES:
        raise UsageFailure(f"--plot {plot}: the file name has to end in one of {', '.join(PLOT_SUFFIXES)}")
    folder = plot.parent if str(plot.parent) else Path(".")
    if not folder.is_dir():
        raise UsageFailure(f"--plot {plot}: no such folder {str(folder)!r}")
    if plot.is_dir():
        raise UsageFailure(f"--plot {plot} is a folder; give a file name")
    import os

    if not os.access(folder, os.W_OK):
        raise UsageFailure(f"--plot {plot}: the folder {str(folder)!r} is not writable")


@click.command("analyze")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--tokenizer",
    "tokenizer_name",
    default=None,
    help="Tokenizer of the model that wrote the responses (folder, tokenizer.json or Hub id); switches are recognised on its token ids. Default for a run's records: the run's; required otherwise.",
)
@triggers_option
@force_triggers_option
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    default="auto",
    show_default=True,
    help="Where thoughts are looked for (as for the penalty). Default for a run's records: the run's.",
)
@click.option(
    "--prompt-open",
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    show_default=True,
    help="Responses start inside an open think block ('auto': a record's prompt_open field, else when a response closes a block it never opened).",
)
@click.option(
    "--premature-threshold",
    type=click.IntRange(min=0),
    default=PAPER_BETA,
    show_default=True,
    help="A switch is premature when the thought it ends is shorter (tokens). Default for a run's records: the run's.",
)
@click.option(
    "--kind",
    "answer_kind",
    type=click.Choice(["math", "number", "choice"]),
    default=None,
    help="Answer kind for grading (default: a record's answer_kind field, else math).",
)
@click.option("--response-field", default="response", show_default=True, help="Field holding the response text.")
@click.option(
    "--answer-field",
    default="answer",
    show_default=True,
    help="Field holding the reference answer ('reference', as the harness writes, is used when 'answer' is absent).",
)
@click.option(
    "--ids-field",
    default="token_ids",
    show_default=True,
    help="Field holding generated token ids; used instead of the text when present (as the harness writes).",
)
@click.option("--id-field", default="id", show_default=True, help="Field holding the response id (optional; the line number otherwise).")
@click.option("--problem-field", default="problem", show_default=True, help="Field holding the problem text (for the LLM judge; optional).")
@click.option(
    "--group-field",
    default=None,
    help=f"Field grouping samples of one problem for weighted UT (default: the first of {', '.join(GROUP_FIELDS)} present, else the id).",
)
@click.option("--config", "config_names", multiple=True, help="Run folder: analyse only this configuration (repeatable; default: all).")
@click.option(
    "--judge",
    "judge_name",
    type=click.Choice(["answer", "llm"]),
    default="answer",
    show_default=True,
    help="How a thought is judged correct: its candidate answers graded against the reference, or an LLM judge. Default for a run's records: the run's judge.",
)
@click.option("--judge-model", default=None, help="Model name for --judge llm.")
@click.option("--judge-base-url", default="http://127.0.0.1:8000/v1", show_default=True, help="OpenAI-compatible endpoint for --judge llm.")
@click.option("--judge-api-key", envvar="TIP_JUDGE_API_KEY", default="EMPTY", show_default=True, help="API key for --judge llm (env TIP_JUDGE_API_KEY).")
@click.option(
    "--judge-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON-lines cache of judge replies (default: SOURCE.judge-cache.jsonl).",
)
@click.option("--judge-retries", type=click.IntRange(min=0, max=10), default=2, show_default=True, help="Retries per thought for --judge llm.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the output contract) instead of tables.")
@click.option("--thoughts", "with_thoughts", is_flag=True, help="With --json: include every thought (span, text, candidates, verdict).")
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write a plot of thought-length distributions to this file (PNG, PDF or SVG)."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def analyze(
    ctx: click.Context,
    source: Path,
    tokenizer_name: str | None,
    triggers: tuple[str, ...],
    force_triggers: bool,
    scope: str,
    prompt_open: str,
    premature_threshold: int,
    answer_kind: str | None,
    response_field: str,
    answer_field: str,
    ids_field: str,
    id_field: str,
    problem_field: str,
    group_field: str | None,
    config_names: tuple[str, ...],
    judge_name: str,
    judge_model: str | None,
    judge_base_url: str,
    judge_api_key: str,
    judge_cache: Path | None,
    judge_retries: int,
    as_json: bool,
    with_thoughts: bool,
    plot: Path | None,
    quiet: bool,
) -> None:
    """Segment saved responses into thoughts and report switches and underthinking.

    SOURCE is a JSON-lines file (one object per line with the response, as text or generated token
    ids, and the reference answer) or a run folder written by `tip-decode compare` / `demo`. Prints
    per-response and aggregate metrics: thoughts, switches per response, mean tokens between
    switches, premature switches, abandoned-on-track thoughts, UT and weighted UT.
    """
    from tip_decode.analysis import AnswerMatchJudge, LLMJudge

    library_progress(quiet)
    if with_thoughts and not as_json:
        raise UsageFailure("--thoughts adds every thought to the JSON output: use it with --json")
    if judge_name == "llm" and not judge_model:
        raise UsageFailure("--judge llm needs --judge-model (the model name served at --judge-base-url)")
    if judge_name != "llm":
        for name in ("judge_model", "judge_cache"):
            if _explicit(ctx, name):
                raise UsageFailure(f"--{name.replace('_', '-')} is for --judge llm")
    if plot is not None:
        _check_plot_path(plot)
    if _explicit(ctx, "triggers"):
        vet_triggers(triggers, None, force_triggers)  # a run's own switch words are not questioned
    if source.name == "run.json" and source.is_file():
        source = source.parent  # the run's settings file stands for its folder
    info, files = _sources(source, config_names)
    folder_input = source.is_dir()

    # The run's own settings, unless the command line says otherwise (then the numbers differ from
    # the run's summary, and a note says why).
    notes: list[str] = []
    if info:
        run_triggers = parse_triggers(info.get("switch_triggers") or "paper")
        run_scope = info.get("switch_scope") or "auto"
        run_threshold = int(info.get("premature_threshold", PAPER_BETA))
        for name, given, run_value in (
            ("triggers", triggers, run_triggers),
            ("scope", scope, run_scope),
            ("premature_threshold", premature_threshold, run_threshold),
        ):
            if _explicit(ctx, name) and given != run_value:
                notes.append(f"--{name.replace('_', '-')} {given!r} differs from the run's {run_value!r}: counts will differ from the run's summary")
        triggers = triggers if _explicit(ctx, "triggers") else run_triggers
        scope = scope if _explicit(ctx, "scope") else run_scope
        premature_threshold = premature_threshold if _explicit(ctx, "premature_threshold") else run_threshold
    if tokenizer_name is None:
        tokenizer_name = info.get("tokenizer") or info.get("model")
        if not tokenizer_name:
            raise UsageFailure(
                "--tokenizer is required: switches are token-level events, and only the tokenizer of the model that wrote the responses finds them"
            )

    # Check every line before the (slow) tokenizer load, so bad input fails at once.
    per_file = []
    for name, path in files:
        items = [
            _validated(path, number, record, response_field, answer_field, id_field, problem_field, group_field, ids_field)
            for number, record in _read_records(path, run_records=bool(info))
        ]
        per_file.append((name, path, items))
    if info:
        from tip_decode.harness.folder import record_file_notes

        notes += [note for note in record_file_notes(files[0][1].parent, [name for name, _ in files]) if "torn" in note]

    if judge_name == "llm":
        cache = (
            judge_cache if judge_cache is not None else (source / "judge-cache.jsonl" if folder_input else source.with_name(source.name + ".judge-cache.jsonl"))
        )
        with user_errors():
            judge: Any = LLMJudge(judge_model, base_url=judge_base_url, api_key=judge_api_key, cache_path=cache, max_retries=judge_retries)
            judge.check()
    elif info.get("judge") and not _explicit(ctx, "judge_name"):
        from tip_decode.harness.run import load_judge

        with user_errors():
            judge = load_judge(info["judge"])
    else:
        judge = AnswerMatchJudge()

    tokenizer = load_tokenizer(tokenizer_name)
    if info:
        from tip_decode.harness.run import check_tokenizer_matches

        with user_errors():
            check_tokenizer_matches(info, tokenizer, source)
    else:
        _check_other_model(per_file, tokenizer, tokenizer_name)
    size = _vocabulary_size(tokenizer)
    for _, path, items in per_file:
        _check_id_range(path, items, size)
    if _explicit(ctx, "triggers"):
        vet_triggers(triggers, tokenizer, force_triggers, spelling=False)
    try:
        from tip_decode.core.vocabulary import SwitchVocabulary

        vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, triggers)
        vocabulary.resolve_scope(scope)
    except ValueError as err:
        raise UsageFailure(one_line(err)) from None

    opened: bool | str = {"auto": "auto", "yes": True, "no": False}[prompt_open]
    results = {}
    for name, path, items in per_file:
        analyses = _analyze_items(path, items, vocabulary, tokenizer, scope, opened, premature_threshold, answer_kind, judge, quiet, name)
        summary = _aggregate(analyses, items)
        results[name] = (analyses, summary)
        for line in _warnings(analyses, summary, name):
            notes.append(line)
    for note in notes:
        click.echo(f"note: {note}", err=True)

    if as_json:
        if folder_input:
            emit_json(
                {
                    "run": str(source),
                    "configs": {n: {"responses": [a.to_dict(thoughts=with_thoughts) for a in r[0]], "aggregate": r[1]} for n, r in results.items()},
                }
            )
        else:
            analyses, summary = next(iter(results.values()))
            emit_json({"responses": [a.to_dict(thoughts=with_thoughts) for a in analyses], "aggregate": summary})
    elif folder_input:
        _print_run_table(results)
    else:
        analyses, summary = next(iter(results.values()))
        _print_tables(analyses, summary)
    if plot is not None:
        _plot([a for r in results.values() for a in r[0]], plot, premature_threshold)
        click.echo(f"plot written to {plot}", err=True)
    if judge_name == "llm":
        _check_judge_worked(judge)


def _vocabulary_size(tokenizer: Any) -> int | None:
    from tip_decode.harness.preflight import vocabulary_size

    return vocabulary_size(tokenizer)


def _check_id_range(path: Path, items: list[dict[str, Any]], size: int | None) -> None:
    """Token ids outside the tokenizer's vocabulary: written by another model's tokenizer."""
    if size is None:
        return
    for item in items:
        response = item["response"]
        if isinstance(response, list):
            bad = next((t for t in response if not 0 <= t < size), None)
            if bad is not None:
                raise click.ClickException(
                    f"{path} line {item['line']}: token id {bad} is outside the tokenizer's vocabulary (0 to {size - 1}); "
                    "were these ids written by another model? (--tokenizer)"
                )


def _check_other_model(per_file: list[tuple[Any, Path, list[dict[str, Any]]]], tokenizer: Any, tokenizer_name: str) -> None:
    """Records that name the model that wrote them (`versions.model`, as the harness writes) and a
    --tokenizer of another name: refused when that model's folder is here and its tokenizer differs,
    a loud warning when it cannot be checked."""
    import os

    from tip_decode.harness.backends import load_hf_tokenizer
    from tip_decode.harness.preflight import same_source, tokenizer_fingerprint

    models = {item["model"] for _, _, items in per_file for item in items if item["model"]}
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
            raise UsageFailure(
                f"tokenizer {tokenizer_name!r} is not the one that wrote these records (they name {model!r}, whose vocabulary differs): "
                "its token ids would be read as other words"
            )
    if unchecked:
        click.echo(
            f"WARNING: these records were written by {', '.join(repr(m) for m in unchecked)}, and --tokenizer is {tokenizer_name!r}: "
            "unless that is the same tokenizer, token ids are read as other words and switches, thoughts and UT are wrong",
            err=True,
        )


def _analyze_items(
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
            raise click.ClickException(f"{path} line {item['line']}: {one_line(err)}") from None
        analyses.append(analysis)
    return analyses


def _aggregate(analyses: list[Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    from tip_decode.analysis import aggregate

    summary = aggregate(analyses, problem_ids=[item["group"] for item in items])
    reasons = [item["finish_reason"] for item in items if item["finish_reason"] is not None]
    # Responses cut at the token limit: known only when the records say why generation stopped.
    summary["truncated"] = sum(r == "length" for r in reasons) / len(reasons) if reasons else None
    return summary


def _warnings(analyses: list[Any], summary: dict[str, Any], name: str | None) -> list[str]:
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


def _check_judge_worked(judge: Any) -> None:
    if judge.failed and not judge.answered and not judge.cached:
        raise click.ClickException(
            f"every judge request failed ({judge.failed} thoughts; last error: {judge.last_error}): UT and on-track counts above are unknown"
        )


def _fmt(value: Any) -> Any:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return value


def _print_tables(analyses: list, summary: dict[str, Any]) -> None:
    from tabulate import tabulate

    rows = [
        [
            a.id,
            a.n_tokens,
            a.n_thoughts,
            len(a.switches),
            a.premature,
            _fmt(a.to_dict(thoughts=False)["abandoned_on_track"]),
            _fmt(a.first_correct_thought),
            _fmt(a.correct),
            _fmt(a.ut),
        ]
        for a in analyses
    ]
    headers = ["id", "tokens", "thoughts", "switches", "premature", "on-track abandoned", "first correct", "correct", "UT"]
    click.echo(tabulate(rows, headers=headers, disable_numparse=True))
    click.echo()
    click.echo(tabulate([[k, _fmt(v)] for k, v in summary.items()], headers=["aggregate", "value"], disable_numparse=True))


def _print_run_table(results: dict[str, Any]) -> None:
    from tabulate import tabulate

    names = list(results)
    keys = list(next(iter(results.values()))[1])
    rows = [[key, *(_fmt(results[n][1].get(key)) for n in names)] for key in keys]
    click.echo(tabulate(rows, headers=["aggregate", *names], disable_numparse=True))
    click.echo("\n(per-response numbers: --json)")


def _plot(analyses: list, path: Path, threshold: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        "correct responses": [t.n_tokens for a in analyses if a.correct is True for t in a.thoughts],
        "incorrect responses": [t.n_tokens for a in analyses if a.correct is False for t in a.thoughts],
        "ungraded": [t.n_tokens for a in analyses if a.correct is None for t in a.thoughts],
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    everything = [n for v in groups.values() for n in v]
    bins = 30 if not everything else min(40, max(5, len(set(everything))))
    for label, lengths in groups.items():
        if lengths:
            ax.hist(lengths, bins=bins, alpha=0.55, label=f"{label} ({len(lengths)} thoughts)")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"premature threshold ({threshold})")
    ax.set_xlabel("thought length (tokens)")
    ax.set_ylabel("thoughts")
    ax.set_title(f"Thought lengths ({len(analyses)} responses)")
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as err:
        raise click.ClickException(f"cannot write plot {path}: {err}") from None
    finally:
        plt.close(fig)
