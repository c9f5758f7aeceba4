"""`tip-decode calibrate`: DeepConf's threshold from a run's warm-up traces (tip_decode/harness/calibrate.py)."""

from __future__ import annotations

import click

from tip_decode.cli.common import emit_json, library_progress, user_errors
from tip_decode.core.interventions.deepconf import MAX_TOPK, MAX_WINDOW, PAPER_TOPK, PAPER_WINDOW
from tip_decode.harness.calibrate import PAPER_KEEP


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--config", "-c", "config", default="baseline", show_default=True, help="The configuration whose records are the warm-up traces (run without DeepConf)."
)
@click.option(
    "--keep",
    type=click.FloatRange(min=0, max=100, min_open=True),
    default=PAPER_KEEP,
    show_default=True,
    help="Percent of warm-up traces whose lowest window stays above the threshold: 90 is DeepConf-high, 10 DeepConf-low.",
)
@click.option("--window", type=click.IntRange(1, MAX_WINDOW), default=PAPER_WINDOW, show_default=True, help="Tokens per window (deepconf_window).")
@click.option("--topk", type=click.IntRange(1, MAX_TOPK), default=PAPER_TOPK, show_default=True, help="Log-probabilities per token confidence (deepconf_topk).")
@click.option("--model", default=None, help="Where to load the model from (default: the run's run.json).")
@click.option("--device", default="cpu", show_default=True, help="Torch device of the forward passes.")
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as one JSON object.")
def calibrate(run_dir: str, config: str, keep: float, window: int, topk: int, model: str | None, device: str, as_json: bool) -> None:
    """DeepConf's online threshold from warm-up traces, as the paper sets it.

    RUN_DIR is a folder of `tip-decode compare` or `demo`; the records of --config are the warm-up
    traces. Each trace's lowest mean confidence over --window consecutive tokens is measured with
    the run's model; the threshold is the (100 - keep)th percentile of those. Writes
    RUN_DIR/calibration.json, records it under `calibration` in RUN_DIR/run.json, and prints the
    `-c deepconf:threshold=...` spec to run with.
    """
    from tip_decode.harness.calibrate import calibrate_run

    library_progress(True)
    with user_errors():
        result = calibrate_run(run_dir, config=config, keep=keep, window=window, topk=topk, device=device, model=model)
    if as_json:
        emit_json(
            {
                "threshold": result.threshold,
                "spec": result.spec(),
                "keep": result.keep,
                "window": result.window,
                "topk": result.topk,
                "traces": result.traces,
                "skipped": result.skipped,
            }
        )
        return
    click.echo(
        f"DeepConf threshold {result.threshold:.6g}: the {100 - result.keep:g}th percentile of the lowest {result.window}-token window confidence "
        f"of {result.traces} warm-up traces of {result.config!r}" + (f" ({result.skipped} without tokens skipped)" if result.skipped else "") + "."
    )
    click.echo(f"Run with: -c {result.spec()}   (recorded in {run_dir}/calibration.json and run.json)")
