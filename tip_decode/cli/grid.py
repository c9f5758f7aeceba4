"""`tip-decode grid`: TIP's alpha x beta sweep against the baseline (the options of `compare`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tip_decode.cli.common import MAX_BETA, UsageFailure, one_line, triggers_option
from tip_decode.cli.compare import data_options, generation_options, report_summary, run_with_backend
from tip_decode.core.config import SCOPES


def _number_list(kind: type) -> Callable[[click.Context, click.Parameter, str], list[Any]]:
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> list[Any]:
        texts = [v.strip() for v in value.split(",")]
        if not value.strip() or any(not t for t in texts):
            raise click.BadParameter(f"has to be a comma-separated list of numbers with no empty item, but is {value!r}")
        try:
            items = [kind(t) for t in texts]
        except ValueError:
            raise click.BadParameter(f"has to be a comma-separated list of {'whole ' if kind is int else ''}numbers, but is {value!r}") from None
        for text, item in zip(texts, items):
            if isinstance(item, float) and math.isnan(item):
                raise click.BadParameter(f"has to list numbers, but lists {text!r}")
            if isinstance(item, float) and math.isinf(item) and text.lower() not in ("inf", "+inf", "infinity", "+infinity"):
                raise click.BadParameter(f"{text} is too large for a number (it would be read as infinity, a ban); write 'inf' to ban")
            if item < 0:
                raise click.BadParameter(f"has to list non-negative numbers, but lists {text}")
            if kind is int and item > MAX_BETA:
                raise click.BadParameter(f"{text} is too large; beta is a number of tokens, at most {MAX_BETA}")
        if len(set(items)) != len(items):
            raise click.BadParameter(f"lists a value twice: {value!r}")
        return items

    return parse


@click.command()
@data_options
@click.option("--alphas", default="3,5,10,20", show_default=True, callback=_number_list(float), help="Penalty strengths, comma-separated.")
@click.option("--betas", default="300,400,500,600,700", show_default=True, callback=_number_list(int), help="Penalty durations, comma-separated.")
@triggers_option
@click.option("--scope", type=click.Choice(SCOPES), default="auto", show_default=True, help="Where the penalty acts (every cell).")
@click.option(
    "--fixed",
    "fixed_spec",
    default=None,
    help="Other interventions held fixed in every configuration, the baseline included, e.g. budget:max=4000 or nowait (INTERVENTION[+...][:key=value,...], not tip).",
)
@generation_options
def grid(alphas: list[float], betas: list[int], triggers: tuple[str, ...], scope: str, fixed_spec: str | None, **opts: Any) -> None:
    """Sweep TIP's alpha x beta (the paper's Table 2) against the baseline; heatmaps, and the best
    cell when one can be told apart from the baseline.

    The grid sweeps TIP only; compare other interventions with `tip-decode compare -c ...`.
    `--fixed` holds other interventions in every configuration, the baseline included, so the grid
    measures TIP on top of them.
    """
    from tip_decode.core.config import TIPConfig
    from tip_decode.harness import grid_configs, run_grid
    from tip_decode.harness.configs import parse_fixed

    fixed = None
    if fixed_spec is not None:
        try:
            fixed = parse_fixed(fixed_spec)
        except (ValueError, TypeError) as err:
            raise UsageFailure(one_line(err)) from None
    base = TIPConfig(triggers=triggers, scope=scope)
    configs = grid_configs(alphas, betas, base, fixed)
    opts["grid_triggers"] = triggers
    summary, result = run_with_backend(
        opts,
        configs,
        lambda problems, backend, options: run_grid(problems, backend, opts["out"], alphas=alphas, betas=betas, base=base, fixed=fixed, **options),
    )
    best = result["best"]
    if best is not None:
        ci = best["pass@1"]["ci95"]
        line = f"best cell: alpha={best['alpha']} beta={best['beta']}  Pass@1 {best['pass@1']['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        d = best["paired"]
        line += f"  Δ vs baseline {d['delta_pass@1']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        line += "  (picked on these same problems: the gain is optimistic)"
    else:
        line = f"no best cell: {result['best_reason']}"
    heatmaps = f"heatmaps: {Path(opts['out']) / 'heatmap_pass1.png'}, {Path(opts['out']) / 'heatmap_switches.png'}"
    report_summary(summary, opts["out"], opts["as_json"], extra={"grid": result}, lines=("", line, heatmaps))
