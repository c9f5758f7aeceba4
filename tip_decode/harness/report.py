"""Tables (tabulate), summary.md and plots (matplotlib, Agg backend) of a comparison or a grid.

Unknown values print as "n/a" (never as 0): a UT with no incorrect response, an interval that
cannot be estimated, an on-track count when the judge judged nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tip_decode.harness.configs import settings_parts, settings_text
from tip_decode.harness.stats import METHOD_TEXT, mean_interval

logger = logging.getLogger(__name__)

NA = "n/a"

#: One line per column of the table, for summary.md (and docs/harness.md).
METRIC_TEXT = {
    "n": "responses measured (problems × samples).",
    "Pass@1": "mean over problems of the share of a problem's samples graded correct; the 95% interval's method is given below.",
    "Pass@k": "chance that at least one of k samples of a problem is correct (unbiased estimator), mean over problems.",
    "tokens": "mean generated tokens per response (the final end-of-sequence token included).",
    "thinking": "mean generated tokens inside the think block per response (up to the end-of-thinking marker, or to the response's end when it never closes); shown when the tokenizer has think markers.",
    "truncated": "share of responses that stopped at the token limit (--max-new-tokens) instead of finishing; their answers may be cut off.",
    "switches/resp": "mean number of thought switches per response (a switch word opening a new line of thought, counted with the switch triggers and scope above).",
    "tokens between switches": "mean thought length: tokens from one switch to the next (or to the end of the reasoning), pooled over all thoughts.",
    "UT": "underthinking score, mean over incorrect responses: 1 - T̂/T, with T the response's tokens and T̂ the tokens up to the end of its first correct thought (UT 0 when thoughts were judged and none was correct; unknown when none could be judged). High UT: the response found a correct line of thought and then spent most of its tokens elsewhere.",
    "weighted UT": "per problem, the mean UT over its samples with correct samples counting 0, then the mean over problems: underthinking weighted by how often it costs the answer.",
    "on-track abandoned": "switches that left a thought the judge found correct (a correct line of thought abandoned); a lower bound when some abandoned thoughts could not be judged.",
    "ΔPass@1": "Pass@1 of this configuration minus the baseline's, paired by problem (same problems, same seeds); an interval that includes 0 means this run cannot tell the two apart.",
    "[95% CI]": "of tokens, thinking, switches/resp and tokens between switches: a BCa bootstrap over problems of the pooled mean (a problem's samples stay together; n/a when every problem has the same value).",
}


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NA
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NA
    return f"{100 * value:.1f}%"


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def _interval(mean: Any, ci: Sequence[Any] | None, digits: int = 3) -> str:
    if not _known(mean):
        return NA
    if not ci or not _known(ci[0]) or not _known(ci[1]):
        return f"{_num(mean, digits)} [{NA}]"
    return f"{_num(mean, digits)} [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def _on_track(m: Mapping[str, Any]) -> str:
    value = m.get("abandoned_on_track")
    if "abandoned_on_track" not in m:
        return NA
    text = _num(value)
    unjudged = m.get("abandoned_unjudged") or 0
    return f"{text} (+{unjudged} unjudged)" if unjudged and value is not None else text


def _measured(m: Mapping[str, Any], key: str, digits: int) -> str:
    """A length or count with its interval (`intervals` of summary.json); older summaries: the mean."""
    interval = (m.get("intervals") or {}).get(key)
    if interval is None:
        return _num(m.get(key), digits)
    return _interval(m.get(key), interval.get("ci95"), digits)


def summary_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table, one row per configuration."""
    ks = sorted({int(k) for m in summary["configs"].values() for k in m.get("pass@k", {})} - {1})
    top_k = ks[-1] if ks else None
    thinking = any(_known(m.get("mean_thinking_tokens")) for m in summary["configs"].values())
    headers = ["config", "n", "Pass@1 [95% CI]"]
    if top_k:
        headers.append(f"Pass@{top_k}")
    headers += ["tokens [95% CI]"] + (["thinking [95% CI]"] if thinking else [])
    headers += [
        "truncated",
        "switches/resp [95% CI]",
        "tokens between switches [95% CI]",
        "UT",
        "weighted UT",
        "on-track abandoned",
        "ΔPass@1 vs baseline [95% CI]",
    ]
    rows = []
    baseline = summary.get("baseline")
    for name, m in summary["configs"].items():
        paired = summary.get("paired", {}).get(name)
        row = [name, str(m["n"]), _interval(m["pass@1"]["mean"], m["pass@1"]["ci95"])]
        if top_k:
            row.append(_num(m["pass@k"].get(str(top_k))))
        row.append(_measured(m, "mean_tokens", 1))
        if thinking:
            row.append(_measured(m, "mean_thinking_tokens", 1))
        row += [
            _pct(m.get("truncated")),
            _measured(m, "switches_per_response", 2),
            _measured(m, "mean_tokens_between_switches", 1),
            _num(m.get("ut")),
            _num(m.get("weighted_ut")),
            _on_track(m),
            "(baseline)" if name == baseline else _interval(paired["delta_pass@1"], paired["ci95"]) if paired else NA,
        ]
        rows.append(row)
    return headers, rows


def format_table(summary: Mapping[str, Any], tablefmt: str = "github") -> str:
    from tabulate import tabulate

    headers, rows = summary_rows(summary)
    return tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def config_settings(m: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A configuration's flat intervention keys from its summary entry (older summaries: `tip`)."""
    if isinstance(m.get("interventions"), Mapping):
        return m["interventions"]
    tip = m.get("tip")
    if not tip or float(tip.get("tip_alpha", 0) or 0) == 0 or int(tip.get("tip_beta", 1) or 0) == 0:
        return None
    return tip


def format_configs(summary: Mapping[str, Any], short: bool = True, tablefmt: str = "github") -> str:
    """Each configuration's interventions and every parameter, one row per configuration."""
    from tabulate import tabulate

    rows = []
    for name, m in summary["configs"].items():
        parts = settings_parts(config_settings(m), short=short)
        rows.append([name, "; ".join(parts) or settings_text(None)])
    return tabulate(rows, headers=["config", "settings (interventions and parameters)"], tablefmt=tablefmt, disable_numparse=True)


def _methods(summary: Mapping[str, Any]) -> list[str]:
    lines = []
    by_method: dict[str, list[str]] = {}
    for name, m in summary["configs"].items():
        by_method.setdefault(m["pass@1"].get("ci_method") or "unknown", []).append(name)
    for method, names in by_method.items():
        who = "" if len(by_method) == 1 else f" ({', '.join(names)})"
        lines.append(f"- Pass@1 interval{who}: {METHOD_TEXT.get(method, method)}.")
    paired_methods: dict[str, list[str]] = {}
    for name, p in summary.get("paired", {}).items():
        paired_methods.setdefault(p.get("ci_method") or "unknown", []).append(name)
    for method, names in paired_methods.items():
        who = "" if len(paired_methods) == 1 else f" ({', '.join(names)})"
        lines.append(f"- ΔPass@1 interval{who}: {METHOD_TEXT.get(method, method)}.")
    return lines


def _length_methods(summary: Mapping[str, Any]) -> str:
    methods = sorted({i.get("ci_method") for m in summary["configs"].values() for i in (m.get("intervals") or {}).values() if i.get("ci_method")})
    if not methods:
        return "no interval (a summary written before intervals of lengths existed)."
    return "; ".join(METHOD_TEXT.get(method, method) for method in methods) + "."


#: A truncated share at or above this is called out: Pass@1 and UT then largely describe cut-off responses.
TRUNCATION_NOTE = 0.2


def truncation_notes(summary: Mapping[str, Any]) -> list[str]:
    """One line per configuration whose responses often hit the token limit."""
    limit = summary.get("run", {}).get("max_new_tokens")
    lines = []
    for name, m in summary["configs"].items():
        share = m.get("truncated")
        if _known(share) and share >= TRUNCATION_NOTE:
            lines.append(
                f"{name}: {_pct(share)} of responses hit the token limit ({limit} new tokens): their answers are cut off, "
                "so Pass@1 and UT largely describe unfinished responses (raise --max-new-tokens)"
            )
    return lines


def _unknowns(summary: Mapping[str, Any]) -> list[str]:
    lines = []
    for name, m in summary["configs"].items():
        notes = []
        if m.get("unjudged_thoughts"):
            notes.append(
                f"{_plural(m['unjudged_thoughts'], 'thought')} could not be judged ({m.get('abandoned_unjudged') or 0} of them abandoned by a switch: on-track unknown)"
            )
        if m.get("ut_unknown"):
            notes.append(f"UT is unknown for {_plural(m['ut_unknown'], 'incorrect response')} (left out of UT and weighted UT)")
        if m.get("truncated") is None and m.get("n"):
            notes.append("the records do not say which responses hit the token limit")
        if notes:
            lines.append(f"- {name}: " + "; ".join(notes) + ".")
    return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def write_summary_md(summary: Mapping[str, Any], path: str | Path) -> None:
    """summary.md: the run's settings, each configuration's settings, the table, what each column
    means, which intervals were used, and what is unknown."""

    run = summary.get("run", {})
    configs = summary["configs"]
    first = next(iter(configs.values()), {})
    lines = [f"# tip-decode compare: {run.get('dataset') or 'results'}", ""]
    lines.append(f"- model: `{run.get('model')}` (backend {run.get('backend')} {run.get('backend_version') or ''})".rstrip())
    lines.append(f"- problems: {first.get('n_problems', NA)}, samples per problem: {run.get('samples', first.get('samples', NA))}")
    lines.append(
        f"- sampling: temperature {run.get('temperature')}, top_p {run.get('top_p')}, at most {run.get('max_new_tokens')} new tokens, seed {run.get('seed')}"
    )
    triggers = run.get("switch_triggers")
    lines.append(
        f"- switches counted with triggers {', '.join(triggers) if isinstance(triggers, list) else triggers} and scope "
        f"{run.get('switch_scope', 'auto')}; a switch is premature when the thought it ends is shorter than "
        f"{run.get('premature_threshold', 600)} tokens"
    )
    lines.append(f"- thought judge (UT, on-track): {run.get('judge') or 'answer match (a thought is correct when it states the reference answer)'}")
    lines += ["", "## Configurations", ""]
    lines.append(format_configs(summary, short=False))
    lines += ["", "## Results", "", format_table(summary), ""]
    lines += ["## What the columns mean", ""]
    lines += [f"- **{name}**: {text}" for name, text in METRIC_TEXT.items()]
    lines += ["", "## Intervals", ""]
    lines += _methods(summary)
    lines.append(f"- tokens, thinking, switches/resp, tokens between switches: {_length_methods(summary)}")
    truncated = truncation_notes(summary)
    if truncated:
        lines += ["", "## Truncated responses", ""]
        lines += [f"- {line}." for line in truncated]
    unknown = _unknowns(summary)
    if unknown:
        lines += ["", "## Unknown values", "", "`n/a` marks a value that was not measured.", ""]
        lines += unknown
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _colours(names: Sequence[str], baseline: str | None) -> dict[str, Any]:
    """Distinct colours: grey for the baseline, tab10 (tab20 beyond ten) for the others."""
    plt = _pyplot()
    others = [n for n in names if n != baseline]
    cmap = plt.get_cmap("tab10" if len(others) <= 10 else "tab20")
    colours = {name: cmap(i % cmap.N) for i, name in enumerate(others)}
    if baseline in names:
        colours[baseline] = (0.45, 0.45, 0.45, 1.0)
    return colours


def _size_label(summary: Mapping[str, Any]) -> str:
    sizes = {(m.get("n_problems"), m.get("samples")) for m in summary["configs"].values()}
    if len(sizes) == 1:
        problems, samples = next(iter(sizes))
        return f"n = {problems} problems × {samples} sample{'s' if samples != 1 else ''}"
    return "n = " + ", ".join(f"{name}: {m.get('n')}" for name, m in summary["configs"].items())


def _bar_plot(
    names: list[str],
    means: list[float],
    intervals: list[list[float]],
    colours: dict[str, Any],
    baseline: str | None,
    ylabel: str,
    title: str,
    path: Path,
    ylim: tuple[float, float] | None = None,
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.75 * len(names) + 2.5), 4.2))
    lows = [m - ci[0] if _known(ci[0]) and _known(m) else 0.0 for m, ci in zip(means, intervals)]
    highs = [ci[1] - m if _known(ci[1]) and _known(m) else 0.0 for m, ci in zip(means, intervals)]
    heights = [m if _known(m) else 0.0 for m in means]
    ax.bar(range(len(names)), heights, yerr=[lows, highs], capsize=4, color=[colours[n] for n in names], edgecolor="black", linewidth=0.5)
    if baseline in names and _known(means[names.index(baseline)]):
        ax.axhline(means[names.index(baseline)], color="black", linestyle="--", linewidth=1, label=f"baseline ({means[names.index(baseline)]:.3g})")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_xlabel("configuration")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if ylim is not None:
        ax.set_ylim(*ylim)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_comparison(summary: Mapping[str, Any], records_by_config: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: str | Path) -> list[Path]:
    """accuracy.png, switches.png (bars with 95% intervals, the baseline as a dashed reference line)
    and thought_lengths.png (thought-length distributions, one colour per configuration)."""
    plt = _pyplot()
    out = Path(out_dir)
    names = list(summary["configs"])
    baseline = summary.get("baseline")
    colours = _colours(names, baseline)
    size = _size_label(summary)
    written = []

    means = [summary["configs"][n]["pass@1"]["mean"] for n in names]
    intervals = [summary["configs"][n]["pass@1"]["ci95"] or [None, None] for n in names]
    written.append(
        _bar_plot(names, means, intervals, colours, baseline, "Pass@1 (95% CI)", f"Pass@1 per configuration\n{size}", out / "accuracy.png", ylim=(0, 1))
    )

    switch_means, switch_intervals = [], []
    for name in names:
        counts = [len(r.get("switch_positions") or []) for r in records_by_config.get(name, [])]
        mean, ci = mean_interval(counts)
        switch_means.append(mean)
        switch_intervals.append(ci)
    written.append(
        _bar_plot(
            names,
            switch_means,
            switch_intervals,
            colours,
            baseline,
            "switches per response (95% CI)",
            f"Thought switches per response\n{size}",
            out / "switches.png",
        )
    )

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    lengths_by_config = {}
    for name in names:
        lengths = []
        for record in records_by_config.get(name, []):
            bounds = [0, *(record.get("switch_positions") or []), record["n_tokens"]]
            lengths += [b - a for a, b in zip(bounds, bounds[1:]) if b > a]
        lengths_by_config[name] = lengths
    everything = [x for v in lengths_by_config.values() for x in v]
    if everything:
        import numpy as np

        bins = np.histogram_bin_edges(everything, bins=min(40, max(5, len(set(everything)))))
        for name in names:
            lengths = lengths_by_config[name]
            if lengths:
                # Outlines, not filled bars: many configurations stay readable on top of each other.
                ax.hist(
                    lengths,
                    bins=bins,
                    histtype="step",
                    linewidth=2.4 if name == baseline else 1.5,
                    color=colours[name],
                    label=f"{name} ({len(lengths)} thoughts)",
                )
    ax.set_xlabel("thought length (tokens between switches)")
    ax.set_ylabel("thoughts")
    ax.set_title(f"Thought lengths\n{size}", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "thought_lengths.png", dpi=110)
    plt.close(fig)
    written.append(out / "thought_lengths.png")
    return written


def _text_colour(rgba: Sequence[float]) -> str:
    """Black on light cells, white on dark ones (relative luminance of the cell's colour)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.4 else "white"


def plot_heatmap(
    values: Sequence[Sequence[float | None]],
    alphas: Sequence[Any],
    betas: Sequence[int],
    title: str,
    path: str | Path,
    fmt: str = ".3f",
    baseline: float | None = None,
    colourbar_label: str | None = None,
) -> Path:
    """A heatmap with alpha on rows and beta on columns, each cell annotated with its value in a
    colour that contrasts with the cell; `baseline` is marked on the colour bar."""
    import numpy as np

    plt = _pyplot()
    data = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(betas) + 2.8, 0.7 * len(alphas) + 1.8))
    finite = data[np.isfinite(data)]
    low = min([*finite.tolist(), *([baseline] if _known(baseline) else [])], default=0.0)
    high = max([*finite.tolist(), *([baseline] if _known(baseline) else [])], default=1.0)
    if low == high:
        low, high = low - 0.5, high + 0.5
    # A margin, so a baseline at either end of the range stays visible on the colour bar.
    margin = 0.03 * (high - low)
    low, high = low - margin, high + margin
    image = ax.imshow(data, cmap="viridis", aspect="auto", vmin=low, vmax=high)
    ax.set_xticks(range(len(betas)), [str(b) for b in betas])
    ax.set_yticks(range(len(alphas)), [str(a) for a in alphas])
    ax.set_xlabel("beta (penalty duration, tokens)")
    ax.set_ylabel("alpha (penalty strength)")
    ax.set_title(title, fontsize=10)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if np.isfinite(data[i, j]):
                colour = _text_colour(image.cmap(image.norm(data[i, j])))
                ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", color=colour, fontsize=9)
            else:
                ax.text(j, i, NA, ha="center", va="center", color="black", fontsize=8)
    bar = fig.colorbar(image, ax=ax)
    label = colourbar_label or ""
    if _known(baseline):
        bar.ax.axhline(baseline, color="red", linewidth=2.5)
        label = f"{label}\n(red line: baseline, {format(baseline, fmt)})".strip()
    if label:
        bar.set_label(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
