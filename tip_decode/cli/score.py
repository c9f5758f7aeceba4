"""`tip-decode score RUN_DIR`: grades and metrics of a saved run recomputed from its records."""

from __future__ import annotations

from pathlib import Path

import click

from tip_decode.cli.common import UsageFailure, library_progress, require_eval_extra, user_errors
from tip_decode.cli.compare import report_summary


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--tokenizer", default=None, help="Tokenizer folder or name (default: the run's, from run.json); must be the one that wrote the records.")
@click.option(
    "--partial", is_flag=True, help="Summarise a run that is not complete (each configuration over the records it has); without it such a folder is refused."
)
@click.option("--no-plots", is_flag=True, help="Do not write PNG plots.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout (the table goes to stderr).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars from the libraries.")
def score(run_dir: str, tokenizer: str | None, partial: bool, no_plots: bool, as_json: bool, quiet: bool) -> None:
    """Recompute grades and metrics of a saved run from its records, without generating.

    The folder has to hold a complete run (every configuration's records for every problem and
    sample in its run.json), unless --partial; record files that are missing, empty or end in a
    torn line are named.
    """
    from tip_decode.cli.common import load_tokenizer
    from tip_decode.harness import summarize

    library_progress(quiet)
    require_eval_extra(plots=not no_plots)
    if not run_dir.strip():
        raise UsageFailure("RUN_DIR has to name a run folder, but is empty")
    folder = Path(run_dir)
    if not folder.is_dir():
        raise UsageFailure(f"no such folder: {run_dir!r}")
    if not (folder / "run.json").is_file():
        raise UsageFailure(f"{run_dir} is not a run folder (no run.json; `tip-decode compare -o {run_dir}` writes one)")
    tok = load_tokenizer(tokenizer) if tokenizer is not None else None
    with user_errors(f"cannot score {run_dir}: "):
        summary = summarize(folder, tokenizer=tok, plots=not no_plots, regrade=True, partial=partial)
    report_summary(summary, run_dir, as_json)
