"""`tip-decode analyze SOURCE`: thoughts, switches and the underthinking score of saved responses.

SOURCE is a JSON-lines file of responses, or a run folder written by `tip-decode compare` / `demo`
(or one of its `<config>.jsonl` files). On a run's records every setting defaults to the run's own
(run.json: tokenizer, switch triggers, scope, premature threshold, thought judge), so the numbers
are the run's summary's; a tokenizer other than the one that wrote the records is refused.
"""

from __future__ import annotations

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
    reading_options,
    triggers_option,
    user_errors,
    vet_triggers,
)
from tip_decode.core.config import SCOPES
from tip_decode.harness.saved import GROUP_FIELDS

#: Plot formats matplotlib writes.
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


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
@reading_options
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
    from tip_decode.harness import saved

    library_progress(quiet)
    _check_options(ctx, with_thoughts, as_json, judge_name, judge_model, plot, triggers, force_triggers)
    if source.name == "run.json" and source.is_file():
        source = source.parent  # the run's settings file stands for its folder
    with user_errors():
        info, files = saved.read_sources(source, config_names)
    folder_input = source.is_dir()

    # The run's own settings, unless the command line says otherwise (then the numbers differ from
    # the run's summary, and a note says why).
    notes: list[str] = []
    if info:
        run = saved.run_settings(info)
        given = {"triggers": triggers, "scope": scope, "premature_threshold": premature_threshold}
        for name, value in given.items():
            if _explicit(ctx, name) and value != run[name]:
                notes.append(f"--{name.replace('_', '-')} {value!r} differs from the run's {run[name]!r}: counts will differ from the run's summary")
        chosen = {name: value if _explicit(ctx, name) else run[name] for name, value in given.items()}
        triggers, scope, premature_threshold = chosen["triggers"], chosen["scope"], chosen["premature_threshold"]
    tokenizer_name = tokenizer_name or _run_tokenizer(info)

    # Check every line before the (slow) tokenizer load, so bad input fails at once.
    fields = saved.RecordFields(response_field, answer_field, ids_field, id_field, problem_field, group_field)
    with user_errors():
        per_file = [
            (name, path, [saved.validate_record(path, number, record, fields) for number, record in saved.read_response_records(path, run_records=bool(info))])
            for name, path in files
        ]
    if info:
        from tip_decode.harness.folder import record_file_notes

        notes += [note for note in record_file_notes(files[0][1].parent, [name for name, _ in files]) if "torn" in note]

    with user_errors():
        judge = saved.choose_judge(
            info,
            judge_name,
            name_given=_explicit(ctx, "judge_name"),
            model=judge_model,
            base_url=judge_base_url,
            api_key=judge_api_key,
            cache_path=judge_cache if judge_cache is not None else saved.default_judge_cache(source),
            max_retries=judge_retries,
        )

    tokenizer = load_tokenizer(tokenizer_name)
    with user_errors():
        saved.check_tokenizer(info, tokenizer, tokenizer_name, source, per_file, warn=lambda text: click.echo(text, err=True))
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
        with user_errors():
            analyses = saved.analyze_items(path, items, vocabulary, tokenizer, scope, opened, premature_threshold, answer_kind, judge, quiet, name)
        summary = saved.aggregate_items(analyses, items)
        results[name] = (analyses, summary)
        notes += saved.analysis_notes(analyses, summary, name)
    for note in notes:
        click.echo(f"note: {note}", err=True)

    _report(results, source if folder_input else None, as_json, with_thoughts)
    if plot is not None:
        _plot([a for r in results.values() for a in r[0]], plot, premature_threshold)
        click.echo(f"plot written to {plot}", err=True)
    if judge_name == "llm":
        _check_judge_worked(judge)


def _check_options(
    ctx: click.Context, with_thoughts: bool, as_json: bool, judge_name: str, judge_model: str | None, plot: Path | None, triggers: tuple[str, ...], force: bool
) -> None:
    """Usage errors found before anything is read."""
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
        vet_triggers(triggers, None, force)  # a run's own switch words are not questioned


def _run_tokenizer(info: dict[str, Any]) -> str:
    """The run's tokenizer (or model): the default of --tokenizer."""
    name = info.get("tokenizer") or info.get("model")
    if not name:
        raise UsageFailure("--tokenizer is required: switches are token-level events, and only the tokenizer of the model that wrote the responses finds them")
    return name


def _report(results: dict[str, Any], run: Path | None, as_json: bool, with_thoughts: bool) -> None:
    """JSON (the output contract) or tables, for a run folder (`run`) or one file."""
    if as_json:
        if run is not None:
            configs = {n: {"responses": [a.to_dict(thoughts=with_thoughts) for a in r[0]], "aggregate": r[1]} for n, r in results.items()}
            emit_json({"run": str(run), "configs": configs})
        else:
            analyses, summary = next(iter(results.values()))
            emit_json({"responses": [a.to_dict(thoughts=with_thoughts) for a in analyses], "aggregate": summary})
    elif run is not None:
        _print_run_table(results)
    else:
        analyses, summary = next(iter(results.values()))
        _print_tables(analyses, summary)


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
