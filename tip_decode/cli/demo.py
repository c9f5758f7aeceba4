"""`tip-decode demo`: the shipped tiny model, baseline vs TIP, measured by the comparison harness."""

from __future__ import annotations

import logging

import click

from tip_decode.demo.run import BACKENDS, DEFAULT_PROBLEMS


@click.command()
@click.option("--out", "-o", "out", type=click.Path(file_okay=False), default="tip-decode-demo", show_default=True, help="Output folder (the `tip-decode compare` layout); rerunning with the same folder resumes.")
@click.option("--problems", "-n", type=click.IntRange(min=1), default=DEFAULT_PROBLEMS, show_default=True, help="Held-out problems to run.")
@click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True, help="Where to generate (vllm needs vLLM installed).")
@click.option("--grid", is_flag=True, help="Run a small alpha x beta grid instead of one TIP setting (takes several times longer).")
@click.option("--seed", type=int, default=0, show_default=True, help="Run seed (each sample's seed derives from it).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def demo(out: str, problems: int, backend: str, grid: bool, seed: int, quiet: bool) -> None:
    """Run TIP on a tiny model that underthinks, offline, and explain the numbers.

    The model (shipped with the package, about 1 MB) was trained on a synthetic search task whose
    traces switch approach at random, like the underthinking the TIP paper describes; see
    docs/demo.md. Baseline and TIP are sampled on the same held-out problems with the same seeds.
    """
    from tip_decode.demo.run import explain, run_demo, walk_table
    from tip_decode.harness import format_table

    logging.basicConfig(level=logging.WARNING)
    try:
        result = run_demo(out, problems=problems, backend=backend, grid=grid, seed=seed, progress=not quiet)
    except ModuleNotFoundError:
        raise  # the command group names the extra to install
    except (ValueError, TypeError, RuntimeError, ImportError, OSError) as err:
        lines = str(err).strip().splitlines()
        raise click.ClickException(lines[0] if lines else type(err).__name__) from None
    run = result.summary["run"]
    click.echo(f"tip-decode demo: {problems} held-out problems, backend {backend}, temperature {run.get('temperature')}, "
               f"at most {run.get('max_new_tokens')} new tokens, switch words {', '.join(run.get('switch_triggers', []))}")
    click.echo()
    click.echo(format_table(result.summary))
    click.echo()
    click.echo(walk_table(result))
    click.echo()
    click.echo(explain(result))
    click.echo()
    plots = sorted(p.name for p in result.out_dir.glob("*.png"))
    click.echo(f"Wrote {result.out_dir}/ (records, summary.json, summary.md, demo.json{', ' + ', '.join(plots) if plots else ''}) in {result.seconds:.0f} s.")
