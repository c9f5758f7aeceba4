"""`grid`: TIP's alpha x beta sweep over the comparison machinery, with heatmaps and the best cell.

The grid sweeps TIP only. Other interventions can be held fixed in every configuration, the
baseline included (`fixed`, `tip-decode grid --fixed budget:max=4000`): the grid then measures TIP
on top of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tip_decode.core.config import TIPConfig
from tip_decode.harness.backends import Backend
from tip_decode.harness.configs import grid_configs
from tip_decode.harness.metrics import json_safe
from tip_decode.harness.problems import Problem
from tip_decode.harness.report import plot_heatmap
from tip_decode.harness.run import run_compare

#: The paper's sweep (its Table 2).
PAPER_ALPHAS = (3.0, 5.0, 10.0, 20.0)
PAPER_BETAS = (300, 400, 500, 600, 700)


def cell_config(alpha: float, beta: int) -> str:
    """The configuration that holds the cell (alpha, beta): `a{alpha}_b{beta}`, or "baseline" when
    alpha or beta is 0 (TIP off is standard decoding: the same requests with the same seeds)."""
    tip = TIPConfig(alpha=alpha, beta=beta)
    return f"a{_short(tip.alpha)}_b{tip.beta}" if tip.enabled else "baseline"


def grid_summary(summary: dict[str, Any], alphas: Sequence[float], betas: Sequence[int], out_dir: str | Path) -> dict[str, Any]:
    """Heatmaps of Pass@1 and switches per response, and the best cell when there is one.

    A cell is named best only when the data can tell it apart: it has the highest Pass@1, no other
    cell ties it, and its paired interval against the baseline lies above zero. Otherwise `best` is
    None and `best_reason` says why (every cell tied, or the top cell's interval includes the
    baseline's Pass@1); `highest` always gives the TIP cell with the highest Pass@1 and its numbers
    (None when every cell is TIP off). Cells with alpha 0 or beta 0 show the baseline's numbers.
    """
    out = Path(out_dir)
    names = [[cell_config(a, b) for b in betas] for a in alphas]
    metrics = summary["configs"]
    pass1 = [[metrics[name]["pass@1"]["mean"] for name in row] for row in names]
    switches = [[metrics[name]["switches_per_response"] for name in row] for row in names]
    alpha_labels = [_short(TIPConfig(alpha=a).alpha) for a in alphas]
    baseline_name = summary.get("baseline")
    base = metrics.get(baseline_name, {}) if baseline_name else {}
    size = next(iter(metrics.values()), {})
    n_label = f"n = {size.get('n_problems')} problems × {size.get('samples')} sample{'s' if size.get('samples') != 1 else ''}"
    plot_heatmap(
        pass1,
        alpha_labels,
        list(betas),
        f"Pass@1 per cell\n{n_label}",
        out / "heatmap_pass1.png",
        baseline=base.get("pass@1", {}).get("mean"),
        colourbar_label="Pass@1",
    )
    plot_heatmap(
        switches,
        alpha_labels,
        list(betas),
        f"Switches per response per cell\n{n_label}",
        out / "heatmap_switches.png",
        fmt=".2f",
        baseline=base.get("switches_per_response"),
        colourbar_label="switches per response",
    )
    cells = {name: (a, b) for row, a in zip(names, alphas) for name, b in zip(row, betas) if name != "baseline"}
    best_name, reason = best_cell(summary, list(cells))
    order = list(cells)
    top_name = max(order, key=lambda n: (_mean(metrics[n]), -order.index(n))) if order else None

    def describe(name: str) -> dict[str, Any]:
        alpha, beta = cells[name]
        return {
            "config": name,
            "alpha": TIPConfig(alpha=alpha).to_mapping()["tip_alpha"],
            "beta": int(beta),
            "pass@1": metrics[name]["pass@1"],
            "switches_per_response": metrics[name]["switches_per_response"],
            "paired": summary.get("paired", {}).get(name),
        }

    result = {
        "alphas": alpha_labels,
        "betas": list(betas),
        "cells": names,
        "pass@1": pass1,
        "switches_per_response": switches,
        "best": describe(best_name) if best_name else None,
        "best_reason": reason,
        "highest": describe(top_name) if top_name else None,
    }
    (out / "grid.json").write_text(json.dumps(json_safe(result), indent=2) + "\n", encoding="utf-8")
    return result


def _short(value: float) -> str:
    return "inf" if value == float("inf") else (str(int(value)) if float(value).is_integer() else str(value))


def _mean(metrics: dict[str, Any]) -> float:
    value = metrics["pass@1"]["mean"]
    return value if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf


def best_cell(summary: dict[str, Any], cells: Sequence[str]) -> tuple[str | None, str]:
    """(the best cell, why) or (None, why no cell can be named).

    The best cell has the unique highest Pass@1 and a paired interval against the baseline whose
    lower end is above zero; anything less is not a difference this run can see.
    """
    if not cells:
        return None, "every cell has alpha 0 or beta 0, which turns TIP off: every cell is the baseline"
    metrics = summary["configs"]
    means = {name: _mean(metrics[name]) for name in cells}
    top = max(means.values())
    leaders = [name for name in cells if means[name] == top]
    if len(cells) > 1 and len(leaders) == len(cells):
        return None, f"every cell has the same Pass@1 ({_fmt(top)}): no cell is better than another"
    if len(leaders) > 1:
        return None, f"{len(leaders)} cells tie at the highest Pass@1 ({_fmt(top)}: {', '.join(leaders)})"
    leader = leaders[0]
    paired = summary.get("paired", {}).get(leader) or {}
    ci = paired.get("ci95") or [None, None]
    if ci[0] is None or not math.isfinite(ci[0]):
        return None, f"{leader} has the highest Pass@1 ({_fmt(top)}), but its difference to the baseline has no interval"
    if ci[0] <= 0:
        above = [n for n in cells if _lower(summary, n) > 0]
        tail = (
            "no cell is distinguishable from the baseline"
            if not above
            else f"the intervals of {', '.join(above)} lie above zero, but their Pass@1 is lower, so no single best cell can be named"
        )
        return None, (
            f"{leader} has the highest Pass@1 ({_fmt(top)}), but its paired 95% interval against the baseline "
            f"[{ci[0]:+.3f}, {ci[1]:+.3f}] includes zero: {tail}"
        )
    return (
        leader,
        f"{leader} has the highest Pass@1 ({_fmt(top)}) and its paired 95% interval against the baseline [{ci[0]:+.3f}, {ci[1]:+.3f}] lies above zero (picked on these same problems, so the gain is optimistic)",
    )


def _lower(summary: dict[str, Any], name: str) -> float:
    ci = (summary.get("paired", {}).get(name) or {}).get("ci95") or [None, None]
    return ci[0] if isinstance(ci[0], (int, float)) and math.isfinite(ci[0]) else -math.inf


def _fmt(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def run_grid(
    problems: Sequence[Problem],
    backend: Backend,
    out_dir: str | Path,
    *,
    alphas: Sequence[float] = PAPER_ALPHAS,
    betas: Sequence[int] = PAPER_BETAS,
    base: TIPConfig | None = None,
    fixed: Any = None,
    **compare_options: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run baseline plus every (alpha, beta) cell with `run_compare`; returns (summary, grid result).

    `base` supplies the triggers and scope of every cell; `fixed` (an `InterventionSet` without TIP)
    other interventions every configuration carries, the baseline included; `compare_options` go to
    `run_compare`.
    """
    if not alphas or not betas:
        raise ValueError(f"`alphas` and `betas` have to be non-empty, but are {list(alphas)} and {list(betas)}")
    configs = grid_configs([float(a) for a in alphas], [int(b) for b in betas], base, fixed)
    summary = run_compare(problems, configs, backend, out_dir, **compare_options)
    return summary, grid_summary(summary, [float(a) for a in alphas], [int(b) for b in betas], out_dir)
