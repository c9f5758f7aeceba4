"""`grid`: an alpha x beta sweep over the comparison machinery, with heatmaps and the best cell."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tip_decode.core.config import TIPConfig
from tip_decode.harness.backends import Backend
from tip_decode.harness.configs import grid_configs
from tip_decode.harness.problems import Problem
from tip_decode.harness.report import plot_heatmap
from tip_decode.harness.run import run_compare

#: The paper's sweep (its Table 2).
PAPER_ALPHAS = (3.0, 5.0, 10.0, 20.0)
PAPER_BETAS = (300, 400, 500, 600, 700)


def grid_summary(summary: dict[str, Any], alphas: Sequence[float], betas: Sequence[int], out_dir: str | Path) -> dict[str, Any]:
    """Heatmaps of Pass@1 and switches per response, and the best cell (highest Pass@1 mean)."""
    out = Path(out_dir)
    configs = grid_configs(list(alphas), list(betas))[1:]
    cells = {c.name: c for c in configs}
    pass1 = [[summary["configs"][f"{_cell(a, b, cells)}"]["pass@1"]["mean"] for b in betas] for a in alphas]
    switches = [[summary["configs"][_cell(a, b, cells)]["switches_per_response"] for b in betas] for a in alphas]
    alpha_labels = [c.name.split("_")[0][1:] for c in configs[:: len(betas)]]
    plot_heatmap(pass1, alpha_labels, list(betas), "Pass@1", out / "heatmap_pass1.png")
    plot_heatmap(switches, alpha_labels, list(betas), "switches per response", out / "heatmap_switches.png", fmt=".2f")
    best_name = max(cells, key=lambda n: (summary["configs"][n]["pass@1"]["mean"] or 0.0, -list(cells).index(n)))
    best_metrics = summary["configs"][best_name]
    best = {
        "config": best_name,
        "alpha": cells[best_name].tip.to_mapping()["tip_alpha"],
        "beta": cells[best_name].tip.beta,
        "pass@1": best_metrics["pass@1"],
        "switches_per_response": best_metrics["switches_per_response"],
        "paired": summary.get("paired", {}).get(best_name),
    }
    result = {"alphas": alpha_labels, "betas": list(betas), "pass@1": pass1, "switches_per_response": switches, "best": best}
    (out / "grid.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _cell(alpha: float, beta: int, cells: dict[str, Any]) -> str:
    for name, config in cells.items():
        if config.tip.alpha == float(alpha) and config.tip.beta == int(beta):
            return name
    raise KeyError((alpha, beta))


def run_grid(
    problems: Sequence[Problem],
    backend: Backend,
    out_dir: str | Path,
    *,
    alphas: Sequence[float] = PAPER_ALPHAS,
    betas: Sequence[int] = PAPER_BETAS,
    base: TIPConfig | None = None,
    **compare_options: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run baseline plus every (alpha, beta) cell with `run_compare`; returns (summary, grid result).

    `base` supplies the triggers and scope of every cell; `compare_options` go to `run_compare`.
    """
    if not alphas or not betas:
        raise ValueError(f"`alphas` and `betas` have to be non-empty, but are {list(alphas)} and {list(betas)}")
    configs = grid_configs([float(a) for a in alphas], [int(b) for b in betas], base)
    summary = run_compare(problems, configs, backend, out_dir, **compare_options)
    return summary, grid_summary(summary, [float(a) for a in alphas], [int(b) for b in betas], out_dir)
