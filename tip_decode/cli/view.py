"""`tip-decode view SOURCE`: one self-contained HTML page to read the reasoning of a run or a trace file.

SOURCE is what `tip-decode analyze` reads (a run folder of `compare` / `grid` / `demo`, one of its
`<config>.jsonl` files, or a JSON-lines file of responses), and it is read and analysed by the same
code (`tip_decode.harness.saved`, with the same defaults: the run's
tokenizer, switch words, scope, premature threshold and judge), so the page's thoughts and
judgements are the ones `tip-decode analyze --json --thoughts` prints.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from tip_decode.cli.common import UsageFailure, library_progress, one_line, reading_options, triggers_option, user_errors
from tip_decode.core.config import PAPER_BETA, SCOPES, parse_triggers

#: The page's file name inside a run folder.
PAGE_NAME = "view.html"
#: Record fields `tip-decode analyze` reads, with its defaults.
FIELD_DEFAULTS = {
    "response_field": "response",
    "answer_field": "answer",
    "ids_field": "token_ids",
    "id_field": "id",
    "problem_field": "problem",
    "group_field": None,
}


def default_page_path(source: Path) -> Path:
    """Where the page goes when --out is not given: RUN_DIR/view.html, or TRACES.html beside a file."""
    if source.name == "run.json" and source.is_file():
        source = source.parent
    return source / PAGE_NAME if source.is_dir() else source.with_suffix(".html")


def human_size(size: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")  # pragma: no cover


def build_view(
    source: Path,
    *,
    tokenizer_name: str | None = None,
    triggers: tuple[str, ...] | None = None,
    scope: str | None = None,
    prompt_open: str = "auto",
    premature_threshold: int | None = None,
    answer_kind: str | None = None,
    config_names: tuple[str, ...] = (),
    fields: dict[str, Any] | None = None,
    title: str | None = None,
    quiet: bool = True,
) -> tuple[dict[str, Any], list[Any], list[str]]:
    """(index, details, notes) of the page for SOURCE. A setting left None is the run's (run.json),
    else `tip-decode analyze`'s default; a given one that differs from the run's adds a note."""
    from tip_decode import __version__
    from tip_decode.analysis import resolve_prompt_open
    from tip_decode.cli.common import load_tokenizer
    from tip_decode.core.vocabulary import SwitchVocabulary, TokenizerView
    from tip_decode.harness import saved
    from tip_decode.viewer import ConfigView, Trace, build_page_data

    fields = {**FIELD_DEFAULTS, **(fields or {})}
    if source.name == "run.json" and source.is_file():
        source = source.parent
    with user_errors():
        info, files = saved.read_sources(source, config_names)
    folder_input = source.is_dir()

    notes: list[str] = []
    given = {"triggers": triggers, "scope": scope, "premature_threshold": premature_threshold}
    chosen = {"triggers": parse_triggers("paper"), "scope": "auto", "premature_threshold": PAPER_BETA}
    if info:
        chosen = saved.run_settings(info)
        for name, value in given.items():
            if value is not None and value != chosen[name]:
                notes.append(f"--{name.replace('_', '-')} {value!r} differs from the run's {chosen[name]!r}: counts differ from the run's summary")
    triggers, scope, premature_threshold = (given[n] if given[n] is not None else chosen[n] for n in ("triggers", "scope", "premature_threshold"))
    if tokenizer_name is None:
        tokenizer_name = info.get("tokenizer") or info.get("model")
        if not tokenizer_name:
            raise UsageFailure(
                "--tokenizer is required: switches are token-level events, and only the tokenizer of the model that wrote the responses finds them"
            )

    # Every line checked before the (slow) tokenizer load, as `tip-decode analyze` does.
    record_fields = saved.RecordFields(*(fields[f"{n}_field"] for n in ("response", "answer", "ids", "id", "problem", "group")))
    per_file = []
    with user_errors():
        for name, path in files:
            numbered = saved.read_response_records(path)
            items = [saved.validate_record(path, number, record, record_fields) for number, record in numbered]
            per_file.append((name, path, [record for _, record in numbered], items))
        judge = saved.choose_judge(info)

    tokenizer = load_tokenizer(tokenizer_name)
    with user_errors():
        saved.check_tokenizer(
            info, tokenizer, tokenizer_name, source, [(n, p, items) for n, p, _, items in per_file], warn=lambda text: click.echo(text, err=True)
        )
    try:
        vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, triggers)
        resolved_scope = vocabulary.resolve_scope(scope)
    except ValueError as err:
        raise UsageFailure(one_line(err)) from None

    opened: bool | str = {"auto": "auto", "yes": True, "no": False}[prompt_open]
    text_view = TokenizerView(tokenizer)
    traces = []
    aggregates = {}
    configs = []
    recorded = {c.get("name"): c for c in info.get("configs", []) if isinstance(c, dict)}
    for name, path, records, items in per_file:
        label = name or path.stem
        with user_errors():
            analyses = saved.analyze_items(path, items, vocabulary, tokenizer, scope, opened, premature_threshold, answer_kind, judge, quiet, name)
        aggregates[label] = saved.aggregate_items(analyses, items)
        entry = recorded.get(name) or {}
        settings = entry.get("interventions") if isinstance(entry.get("interventions"), dict) else entry.get("tip")
        if settings is None and isinstance(records[0].get("interventions"), dict):
            settings = records[0]["interventions"]  # a record file without its run.json
        configs.append(ConfigView(label, settings or None))
        for record, item, analysis in zip(records, items, analyses):
            response = item["response"]
            ids = response if isinstance(response, list) else text_view.encode(response)
            given = item["prompt_open"] if opened == "auto" and item["prompt_open"] is not None else opened
            sample = record.get("sample")
            traces.append(
                Trace(
                    config=label,
                    problem=item["group"],
                    sample=sample if isinstance(sample, int) and not isinstance(sample, bool) else None,
                    ids=ids,
                    analysis=analysis,
                    reference=item["reference"],
                    prompt=record.get("prompt") if isinstance(record.get("prompt"), str) else None,
                    problem_text=item["problem"],
                    finish_reason=item["finish_reason"],
                    prompt_open=resolve_prompt_open(given, vocabulary, resolved_scope, ids),
                )
            )

    summary = _read_summary(source) if folder_input else None
    names = [c.name for c in configs]
    baseline = None
    if summary and summary.get("baseline") in names:
        baseline = summary["baseline"]
    elif "baseline" in names:
        baseline = "baseline"
    with user_errors():
        index, details = build_page_data(
            traces,
            configs,
            tokenizer,
            title=title or _title(source, info),
            source=str(source),
            baseline=baseline,
            settings=_settings(info, tokenizer_name, triggers, resolved_scope, premature_threshold, judge),
            tables=_tables(summary, names, aggregates),
            legend=_legend(summary),
            notes=notes,
            default_triggers=triggers,
            generator=f"tip-decode {__version__} view",
        )
    return index, details, notes


def _read_summary(folder: Path) -> dict[str, Any] | None:
    import json

    path = folder / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise click.ClickException(f"{path} is not valid JSON ({err}); `tip-decode score {folder}` rewrites it") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("configs"), dict):
        raise click.ClickException(f"{path} is not a run summary (no 'configs'); `tip-decode score {folder}` rewrites it")
    return summary


def _title(source: Path, info: dict[str, Any]) -> str:
    # The data set names a run best; the model (often a long local path) is among the settings.
    return str(info.get("dataset") or source.resolve().name)


def _settings(info: dict[str, Any], tokenizer: str, triggers: tuple[str, ...], scope: str, threshold: int, judge: Any) -> list[tuple[str, str]]:
    def text(value: Any) -> str:
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)

    rows = []
    for key, label in (
        ("dataset", "data set"),
        ("model", "model"),
        ("backend", "backend"),
        ("samples", "samples per problem"),
        ("temperature", "temperature"),
        ("top_p", "top-p"),
        ("max_new_tokens", "max new tokens"),
        ("seed", "seed"),
    ):
        if info.get(key) is not None:
            value = text(info[key])
            if key == "backend" and info.get("backend_version"):
                value += f" {info['backend_version']}"
            rows.append((label, value))
    rows += [
        ("tokenizer", tokenizer),
        ("switch words", ", ".join(triggers)),
        ("switch scope", scope),
        ("premature threshold", f"{threshold} tokens"),
        ("thought judge", info.get("judge") or f"{type(judge).__name__} (a thought is on track when a candidate answer in it equals the reference)"),
    ]
    if info.get("tip_decode"):
        rows.append(("written by", f"tip-decode {info['tip_decode']}"))
    return rows


def _tables(summary: dict[str, Any] | None, names: list[str], aggregates: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from tip_decode.harness.configs import settings_text
    from tip_decode.harness.report import config_settings, summary_rows

    if summary is not None:
        shown = {**summary, "configs": {n: m for n, m in summary["configs"].items() if n in names}}
        if shown["configs"]:
            headers, rows = summary_rows(shown)
            settings_rows = [[n, settings_text(config_settings(m), short=True)] for n, m in shown["configs"].items()]
            return [
                {"title": "Summary (summary.json)", "headers": headers, "rows": rows},
                {"title": "Configurations", "headers": ["config", "settings (interventions and parameters)"], "rows": settings_rows},
            ]
    keys = list(next(iter(aggregates.values()))) if aggregates else []
    rows = [[key, *(_plain(aggregates[n].get(key)) for n in aggregates)] for key in keys]
    note = "no summary.json: the analysis's numbers, without intervals" if summary is None else "summary.json has none of these configurations"
    return [{"title": "Analysis", "headers": ["aggregate", *aggregates], "rows": rows, "note": note}]


def _plain(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _legend(summary: dict[str, Any] | None) -> list[tuple[str, str]]:
    if summary is None:
        return []
    from tip_decode.harness.report import METRIC_TEXT
    from tip_decode.harness.stats import METHOD_TEXT

    legend = list(METRIC_TEXT.items())
    methods = {m.get("pass@1", {}).get("ci_method") for m in summary["configs"].values()} - {None}
    legend += [(f"interval: {method}", METHOD_TEXT[method]) for method in sorted(methods) if method in METHOD_TEXT]
    return legend


def write_view(source: Path, out: Path | None = None, **options: Any) -> tuple[Path, int, dict[str, Any], list[str]]:
    """Build the page for SOURCE and write it (default: `default_page_path`); returns (path, bytes, index, notes)."""
    from tip_decode.viewer import write_page

    page = out if out is not None else default_page_path(source)
    index, details, notes = build_view(source, **options)
    with user_errors():
        size = write_page(page, index, details)
    return page, size, index, notes


def _check_out(out: Path) -> None:
    import os

    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise UsageFailure(f"--out {out} is a folder; give a file name")
    if not folder.is_dir():
        raise UsageFailure(f"--out {out}: no such folder {str(folder)!r}")
    if not os.access(folder, os.W_OK):
        raise UsageFailure(f"--out {out}: the folder {str(folder)!r} is not writable")


@click.command("view")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Where to write the page (default: RUN_DIR/{PAGE_NAME}, or TRACES.html beside a file).",
)
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default web browser.")
@click.option(
    "--tokenizer",
    "tokenizer_name",
    default=None,
    help="Tokenizer of the model that wrote the responses. Default for a run's records: the run's; required otherwise.",
)
@triggers_option
@click.option(
    "--scope", type=click.Choice(SCOPES), default="auto", show_default=True, help="Where thoughts are looked for. Default for a run's records: the run's."
)
@reading_options
@click.option("--config", "config_names", multiple=True, help="Run folder: show only this configuration (repeatable; default: all).")
@click.option("--response-field", default="response", show_default=True, help="Field holding the response text.")
@click.option("--answer-field", default="answer", show_default=True, help="Field holding the reference answer ('reference' is used when 'answer' is absent).")
@click.option("--ids-field", default="token_ids", show_default=True, help="Field holding generated token ids; used instead of the text when present.")
@click.option("--id-field", default="id", show_default=True, help="Field holding the response id (optional; the line number otherwise).")
@click.option("--problem-field", default="problem", show_default=True, help="Field holding the problem text (optional).")
@click.option(
    "--group-field",
    default=None,
    help="Field naming the problem a response answers (default: as `tip-decode analyze`: problem_id, unique_id, problem or question, else the id).",
)
@click.option("--title", default=None, help="The page's title (default: the run's data set, or the file name).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def view(
    ctx: click.Context,
    source: Path,
    out: Path | None,
    open_page: bool,
    tokenizer_name: str | None,
    triggers: tuple[str, ...],
    scope: str,
    prompt_open: str,
    premature_threshold: int,
    answer_kind: str | None,
    config_names: tuple[str, ...],
    response_field: str,
    answer_field: str,
    ids_field: str,
    id_field: str,
    problem_field: str,
    group_field: str | None,
    title: str | None,
    quiet: bool,
) -> None:
    """Write one HTML page to read the reasoning of a run or of saved responses, and print its path.

    SOURCE is a run folder of `tip-decode compare` / `grid` / `demo` (or one of its files) or a
    JSON-lines file of responses, as for `tip-decode analyze`, whose thoughts and judgements the
    page shows: a sortable, filterable table of problems, and per problem each configuration's
    response split into thoughts, with switch words, verdicts and TIP's penalty window marked.
    The page is self-contained (no network); --open opens it.
    """

    def explicit(name: str) -> bool:
        return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    library_progress(quiet)
    began = time.perf_counter()
    if not source.exists():
        raise UsageFailure(f"no such file or folder: {str(source)!r}")
    page = out if out is not None else default_page_path(source)
    _check_out(page)
    page, size, index, notes = write_view(
        source,
        page,
        tokenizer_name=tokenizer_name,
        triggers=triggers if explicit("triggers") else None,
        scope=scope if explicit("scope") else None,
        prompt_open=prompt_open,
        premature_threshold=premature_threshold if explicit("premature_threshold") else None,
        answer_kind=answer_kind,
        config_names=config_names,
        fields={
            "response_field": response_field,
            "answer_field": answer_field,
            "ids_field": ids_field,
            "id_field": id_field,
            "problem_field": problem_field,
            "group_field": group_field,
        },
        title=title,
        quiet=quiet,
    )
    for note in notes:
        click.echo(f"note: {note}", err=True)
    totals = index["totals"]
    click.echo(
        f"view: {totals['problems']} problems, {len(index['configs'])} configurations, {totals['responses']} responses, "
        f"{totals['thoughts']} thoughts; {human_size(size)} in {time.perf_counter() - began:.1f} s",
        err=True,
    )
    click.echo(str(page))
    if open_page:
        import webbrowser

        if not webbrowser.open(page.resolve().as_uri()):
            click.echo(f"note: no web browser could be started; open {page} yourself", err=True)
