"""`tip-decode demo`: the shipped tiny model, baseline vs TIP, measured by the comparison harness."""

from __future__ import annotations

import logging
import time

import click

from tip_decode.cli.common import emit_json, library_progress, require_eval_extra, user_errors
from tip_decode.demo.run import BACKENDS, DEFAULT_PROBLEMS

#: More held-out problems than this only makes the run long: problems are drawn with replacement.
MAX_PROBLEMS = 100_000


@click.command()
@click.option(
    "--out",
    "-o",
    "out",
    type=click.Path(file_okay=False),
    default="tip-decode-demo",
    show_default=True,
    help="Output folder (the `tip-decode compare` layout); rerunning with the same folder resumes.",
)
@click.option("--problems", "-n", type=click.IntRange(min=1, max=MAX_PROBLEMS), default=DEFAULT_PROBLEMS, show_default=True, help="Held-out problems to run.")
@click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True, help="Where to generate (vllm needs vLLM installed).")
@click.option("--grid", is_flag=True, help="Run a small alpha x beta grid instead of one TIP setting (takes several times longer).")
@click.option(
    "--config",
    "-c",
    "config_specs",
    multiple=True,
    help="A configuration instead of baseline and TIP, as in `tip-decode compare -c` (e.g. -c baseline -c nowait -c budget:min=40); a bare `tip` is the demo's TIP (alpha 3, beta 20). Repeatable.",
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1, max=448),
    default=None,
    help="Token limit per response (default: the demo's 160; the model's context is 512).",
)
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=0, show_default=True, help="Run seed (each sample's seed derives from it).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object on stdout (the report goes to stderr).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def demo(
    out: str, problems: int, backend: str, grid: bool, config_specs: tuple[str, ...], max_new_tokens: int | None, seed: int, as_json: bool, quiet: bool
) -> None:
    """Run TIP on a tiny model that underthinks, offline, and explain the numbers.

    The model (shipped with the package, about 1 MB) was trained on a synthetic search task whose
    traces switch approach at random, like the underthinking the TIP paper describes; see
    docs/demo.md. Baseline and TIP are sampled on the same held-out problems with the same seeds.
    The report printed here is also written to OUT/demo.md.
    """
    from tip_decode.cli.common import UsageFailure, one_line
    from tip_decode.demo.evaluate import DEMO_MAX_NEW_TOKENS
    from tip_decode.demo.run import demo_configs, explain, report, run_demo

    if not out.strip():
        raise UsageFailure("--out has to name a folder, but is empty (an empty -o would write the run into the current folder)")
    try:
        demo_configs(grid, config_specs)  # every spec checked before anything loads
    except (TypeError, ValueError) as err:
        raise UsageFailure(one_line(err)) from None

    logging.basicConfig(level=logging.WARNING)
    library_progress(quiet)
    require_eval_extra()
    with user_errors():
        result = run_demo(
            out,
            problems=problems,
            backend=backend,
            grid=grid,
            seed=seed,
            progress=not quiet,
            configs=config_specs,
            max_new_tokens=max_new_tokens or DEMO_MAX_NEW_TOKENS,
        )
    text = report(result)
    # Every response, thought by thought: the page `tip-decode view OUT` writes, linked from the report.
    from tip_decode.cli.view import write_view

    page_began = time.perf_counter()
    page, _, _, _ = write_view(result.out_dir, quiet=True)
    seconds = result.seconds + time.perf_counter() - page_began  # the run and its page
    link = f"Every response, thought by thought: {page} (open it in a browser; `tip-decode view {result.out_dir}` rewrites it)."
    with open(result.out_dir / "demo.md", "a", encoding="utf-8") as handle:
        handle.write(f"\nEvery response, thought by thought: [{page.name}]({page.name}) (open it in a browser; `tip-decode view` rewrites it).\n")
    click.echo(text, err=as_json)
    click.echo(err=as_json)
    click.echo(link, err=as_json)
    click.echo(err=as_json)
    # Name only files that exist, in the order a reader wants them.
    wanted = ["demo.md", page.name, "summary.md", "summary.json", "demo.json", "run.json", "grid.json"]
    files = [name for name in wanted if (result.out_dir / name).is_file()]
    records = sorted(p.name for p in result.out_dir.glob("*.jsonl"))
    plots = sorted(p.name for p in result.out_dir.glob("*.png"))
    click.echo(f"Wrote {result.out_dir}/: {', '.join(files + records + plots)} in {seconds:.0f} s.", err=as_json)
    if as_json:
        emit_json(
            {
                "summary": result.summary,
                "walk_judged": result.walk_metrics,
                "grid": result.grid,
                "explanation": explain(result),
                "files": files + records + plots,
                "page": str(page),
                "seconds": round(seconds, 1),
            }
        )
