"""Tables (tabulate) and plots (matplotlib, Agg backend) of a comparison or a grid."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(mean: Any, ci: Sequence[Any] | None, digits: int = 3) -> str:
    if mean is None:
        return "-"
    if not ci or ci[0] is None:
        return _num(mean, digits)
    return f"{_num(mean, digits)} [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def summary_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, one row per configuration."""
    ks = sorted({int(k) for m in summary["configs"].values() for k in m.get("pass@k", {})} - {1})
    top_k = ks[-1] if ks else None
    headers = ["config", "n", "Pass@1 [95% CI]"]
    if top_k:
        headers.append(f"Pass@{top_k}")
    headers += ["tokens", "switches/resp", "tokens between switches", "UT", "weighted UT", "ΔPass@1 vs baseline [95% CI]"]
    rows = []
    for name, m in summary["configs"].items():
        paired = summary.get("paired", {}).get(name)
        row = [name, str(m["n"]), _interval(m["pass@1"]["mean"], m["pass@1"]["ci95"])]
        if top_k:
            row.append(_num(m["pass@k"].get(str(top_k))))
        row += [
            _num(m["mean_tokens"], 1),
            _num(m["switches_per_response"], 2),
            _num(m["mean_tokens_between_switches"], 1),
            _num(m.get("ut")),
            _num(m.get("weighted_ut")),
            _interval(paired["delta_pass@1"], paired["ci95"]) if paired else "-",
        ]
        rows.append(row)
    return headers, rows


def format_table(summary: Mapping[str, Any], tablefmt: str = "github") -> str:
    from tabulate import tabulate

    headers, rows = summary_rows(summary)
    return tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def write_summary_md(summary: Mapping[str, Any], path: str | Path) -> None:
    run = summary.get("run", {})
    lines = ["# tip-decode compare", ""]
    for key in ("dataset", "model", "backend", "samples", "temperature", "top_p", "max_new_tokens", "seed"):
        if key in run:
            lines.append(f"- {key}: `{run[key]}`")
    lines += ["", format_table(summary), ""]
    lines.append("Pass@1 intervals: normal approximation over per-problem accuracies; Δ intervals: paired bootstrap over problems.")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_comparison(summary: Mapping[str, Any], records_by_config: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: str | Path) -> list[Path]:
    """accuracy.png, switches.png (bars with error bars) and thought_lengths.png (histograms)."""
    plt = _pyplot()
    out = Path(out_dir)
    names = list(summary["configs"])
    written = []

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 3.5))
    means = [summary["configs"][n]["pass@1"]["mean"] or 0.0 for n in names]
    lows = [max(0.0, m - (summary["configs"][n]["pass@1"]["ci95"][0] or m)) for n, m in zip(names, means)]
    highs = [max(0.0, (summary["configs"][n]["pass@1"]["ci95"][1] or m) - m) for n, m in zip(names, means)]
    ax.bar(names, means, yerr=[lows, highs], capsize=4, color="#4C72B0")
    ax.set_ylabel("Pass@1 (95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title("Accuracy per configuration")
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=100)
    plt.close(fig)
    written.append(out / "accuracy.png")

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 3.5))
    switch_means, switch_err = [], []
    for name in names:
        counts = [len(r.get("switch_positions") or []) for r in records_by_config.get(name, [])]
        mean = sum(counts) / len(counts) if counts else 0.0
        sd = math.sqrt(sum((c - mean) ** 2 for c in counts) / (len(counts) - 1)) if len(counts) > 1 else 0.0
        switch_means.append(mean)
        switch_err.append(1.96 * sd / math.sqrt(len(counts)) if counts else 0.0)
    ax.bar(names, switch_means, yerr=switch_err, capsize=4, color="#DD8452")
    ax.set_ylabel("switches per response (95% CI)")
    ax.set_title("Thought switches per configuration")
    fig.tight_layout()
    fig.savefig(out / "switches.png", dpi=100)
    plt.close(fig)
    written.append(out / "switches.png")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in names:
        lengths = []
        for record in records_by_config.get(name, []):
            bounds = [0, *(record.get("switch_positions") or []), record["n_tokens"]]
            lengths += [b - a for a, b in zip(bounds, bounds[1:]) if b > a]
        if lengths:
            ax.hist(lengths, bins=30, alpha=0.5, label=name)
    ax.set_xlabel("thought length (tokens)")
    ax.set_ylabel("thoughts")
    ax.set_title("Thought lengths")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "thought_lengths.png", dpi=100)
    plt.close(fig)
    written.append(out / "thought_lengths.png")
    return written


def plot_heatmap(values: Sequence[Sequence[float | None]], alphas: Sequence[Any], betas: Sequence[int], title: str, path: str | Path, fmt: str = ".3f") -> Path:
    """A heatmap with alpha on rows and beta on columns, each cell annotated with its value."""
    import numpy as np

    plt = _pyplot()
    data = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(betas) + 2, 0.7 * len(alphas) + 1.5))
    image = ax.imshow(data, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(betas)), [str(b) for b in betas])
    ax.set_yticks(range(len(alphas)), [str(a) for a in alphas])
    ax.set_xlabel("beta (penalty duration)")
    ax.set_ylabel("alpha (penalty strength)")
    ax.set_title(title)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if np.isfinite(data[i, j]):
                ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
