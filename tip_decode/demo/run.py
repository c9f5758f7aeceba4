"""`tip-decode demo` as a library call: the shipped model, held-out problems, the comparison harness.

`run_demo` builds harness problems from the step-search task, runs baseline and TIP (or a small
alpha x beta grid) through `tip_decode.harness.run_compare`, which writes the standard folder
layout, then scores every thought with `WalkJudge` (a thought is correct when the walk it follows
reaches the goal, which is the paper's definition of a correct thought) to get a task-aware
underthinking score, and writes it to `demo.json` next to the harness's files. `explain` turns the
measured numbers into the paragraph the command prints.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tip_decode.core.config import TIPConfig
from tip_decode.demo import MODEL_DIR
from tip_decode.demo.evaluate import DEMO_MAX_NEW_TOKENS, DEMO_TEMPERATURE, DEMO_TRIGGERS
from tip_decode.demo.task import make_problems

logger = logging.getLogger(__name__)

DEFAULT_PROBLEMS = 300
#: The demo's TIP setting: the paper's alpha, and beta in the model's own units. The paper's beta
#: (600) is about 1.3 times QwQ's mean thought length (446 tokens on MATH500-Hard). beta was fixed
#: from that ratio before the shipped model was measured, using a pilot model whose thoughts
#: averaged about 15 tokens; the shipped model's average 12.4 (docs/demo.md), so 20 is a little
#: longer than the paper's ratio. It was not tuned on the held-out problems.
DEMO_ALPHA = 3.0
DEMO_BETA = 20
GRID_ALPHAS = (1.0, 3.0, 10.0)
GRID_BETAS = (10, 20, 40, 80)
BACKENDS = ("hf", "vllm")
_STEP = re.compile(r"\+(\d+)")


class WalkJudge:
    """Judges a thought of the step-search task: correct when its walk uses the answer's step.

    The step of a walk is decided by its first step token, so a thought cut short after one step
    still counts as on the right track (following it would reach the goal), as the paper's judges
    were asked to decide.
    """

    def judge(self, request: Any) -> Any:
        from tip_decode.analysis.judge import CORRECT, INCORRECT, UNJUDGED, Verdict

        match = _STEP.search(request.thought_text.split("</think>")[0])
        if match is None:
            return Verdict(UNJUDGED, None, "the thought takes no step")
        if match.group(1) == request.reference.strip():
            return Verdict(CORRECT, 2, f"walks with step +{match.group(1)}, which reaches the goal")
        return Verdict(INCORRECT, 0, f"walks with step +{match.group(1)}, a dead end")


@dataclass(frozen=True)
class DemoResult:
    """What a demo run produced: the harness summary, the task-judged metrics and the folder."""

    out_dir: Path
    summary: dict[str, Any]
    walk_metrics: dict[str, dict[str, Any]]
    grid: dict[str, Any] | None
    seconds: float


def harness_problems(count: int) -> list[Any]:
    """`count` held-out step-search problems as harness `Problem` records (answers graded as numbers)."""
    from tip_decode.harness import Problem

    return [Problem(id=f"demo-{i}", question=p.prompt_text(), answer=str(p.answer), answer_kind="number") for i, p in enumerate(make_problems(count))]


def demo_tip() -> TIPConfig:
    """The demo's TIP setting (alpha 3, beta 20 in the model's units, the demo's switch words)."""
    return TIPConfig(alpha=DEMO_ALPHA, beta=DEMO_BETA, triggers=DEMO_TRIGGERS)


def demo_configs(grid: bool, specs: Sequence[str] = ()) -> list[Any]:
    """The demo's configurations: baseline and TIP, the grid, or `specs` (`-c`, the grammar of
    `tip-decode compare`; a bare `tip` is the demo's TIP, other interventions their papers' defaults)."""
    from tip_decode.core.interventions import InterventionSet
    from tip_decode.harness import RunConfig, grid_configs, parse_config_spec

    if grid and specs:
        raise ValueError("give either --grid or configurations (-c), not both")
    if grid:
        return grid_configs(list(GRID_ALPHAS), list(GRID_BETAS), demo_tip())
    if specs:
        defaults = InterventionSet(tip=demo_tip())
        configs = [parse_config_spec(spec, defaults) for spec in specs]
        names = [c.name for c in configs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"configuration names have to be unique (each names a file), but {', '.join(duplicates)} is given twice; name one with NAME=...")
        return configs
    return [RunConfig("baseline", None), RunConfig("tip", demo_tip())]


def make_backend(kind: str, model_dir: Path, max_new_tokens: int = DEMO_MAX_NEW_TOKENS, **engine: Any) -> Any:
    """The harness backend for the shipped model: "hf" (CPU) or "vllm" (a small CPU-friendly engine)."""
    from tip_decode.harness import HFBackend, SamplingSettings, VLLMBackend

    if kind not in BACKENDS:
        raise ValueError(f"`backend` has to be one of {BACKENDS}, but is {kind!r}")
    sampling = SamplingSettings(temperature=DEMO_TEMPERATURE, top_p=1.0, max_new_tokens=max_new_tokens)
    if kind == "hf":
        import torch

        # One thread: the model is so small that a forward pass is mostly synchronisation overhead,
        # and on a busy 2-core machine two threads made each step 80 times slower than one.
        torch.set_num_threads(1)
        return HFBackend(str(model_dir), sampling=sampling, batch_size=engine.pop("batch_size", 512), device=engine.pop("device", "cpu"))
    settings = {
        "dtype": "float32",
        "enforce_eager": True,
        "max_model_len": 512,
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
        "gpu_memory_utilization": 0.15,
        # An explicit KV-cache size: the CPU backend otherwise sizes it from the memory left under
        # gpu_memory_utilization, which can be negative on a busy machine; 128 MiB is plenty here.
        "kv_cache_memory_bytes": 128 * 2**20,
        "seed": 0,
        **engine,
    }
    return VLLMBackend(str(model_dir), sampling=sampling, **settings)


def walk_metrics(out_dir: Path, summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per configuration: the thought-level numbers of the harness's analysis (which ran with
    `WalkJudge`, so a thought is judged by where its walk leads), plus the share of responses that
    give a boxed answer, read from the records."""
    from tip_decode.grading import extract_boxed
    from tip_decode.harness import read_records

    keys = ("thoughts_per_response", "abandoned_on_track", "abandoned_unjudged", "unjudged_thoughts", "incorrect_with_correct_thought", "ut")
    result = {}
    for name, metrics in summary["configs"].items():
        records = read_records(out_dir / f"{name}.jsonl")
        walks = {key: metrics.get(key) for key in keys}
        # "number" grading falls back to the last number of the text; a boxed answer is what the
        # model gives when it has finished a walk.
        walks["answered"] = sum(extract_boxed(r["response"]) is not None for r in records) / len(records) if records else None
        result[name] = walks
    return result


def run_demo(
    out_dir: str | Path,
    problems: int = DEFAULT_PROBLEMS,
    backend: str = "hf",
    grid: bool = False,
    seed: int = 0,
    progress: bool = True,
    model_dir: str | Path = MODEL_DIR,
    engine: Mapping[str, Any] | None = None,
    configs: Sequence[str] = (),
    max_new_tokens: int = DEMO_MAX_NEW_TOKENS,
) -> DemoResult:
    """Run the demo comparison into `out_dir` and return its numbers (see the module docstring).

    `configs`: configuration specs (`tip-decode compare -c`'s grammar) instead of baseline and TIP.
    """
    from tip_decode.harness import chat_prompt_builder, run_compare

    if isinstance(problems, bool) or not isinstance(problems, int) or problems < 1:
        raise ValueError(f"`problems` has to be a positive integer, but is {problems!r}")
    if backend not in BACKENDS:
        raise ValueError(f"`backend` has to be one of {BACKENDS}, but is {backend!r}")
    from tip_decode.harness.preflight import check_output_dir

    began = time.perf_counter()
    run_configs = demo_configs(grid, tuple(configs))  # a bad spec fails before anything loads
    out = check_output_dir(out_dir)  # before the model loads: a folder we cannot write fails at once
    engine_backend = make_backend(backend, Path(model_dir), max_new_tokens=max_new_tokens, **dict(engine or {}))
    try:
        summary = run_compare(
            harness_problems(problems),
            run_configs,
            engine_backend,
            out,
            seed=seed,
            # The model was trained on the bare problem statement: no instruction around it.
            prompt_builder=chat_prompt_builder(engine_backend.tokenizer, template="{question}"),
            switch_triggers=list(DEMO_TRIGGERS),
            dataset="tip-decode demo: step search (held-out)",
            progress=progress,
            # A thought is correct when its walk uses the answer's step: the task's own judge, so
            # the table's UT is the paper's UT (the answer-match judge would only see final answers).
            judge=WalkJudge(),
            # Premature means shorter than the demo's penalty window, in the model's own units.
            premature_threshold=DEMO_BETA,
        )
        grid_result = None
        if grid:
            from tip_decode.harness import grid_summary

            grid_result = grid_summary(summary, list(GRID_ALPHAS), list(GRID_BETAS), out)
        walks = walk_metrics(out, summary)
    finally:
        close = getattr(engine_backend, "close", None)
        if callable(close):
            close()
    seconds = time.perf_counter() - began
    result = DemoResult(out, summary, walks, grid_result, seconds)
    explanation = explain(result)
    (out / "demo.json").write_text(
        json.dumps(
            {"walk_judged": walks, "explanation": explanation, "seconds": round(seconds, 1), "problems": problems, "backend": backend},
            indent=2,
            default=_json_default,
        )
        + "\n",
        encoding="utf-8",
    )
    (out / "demo.md").write_text(report(result, explanation) + "\n", encoding="utf-8")
    return result


def header(result: DemoResult) -> str:
    """The first line of the demo's report: what was run."""
    run = result.summary["run"]
    problems = next(iter(result.summary["configs"].values()), {}).get("n_problems")
    return (
        f"tip-decode demo: {problems} held-out problems, backend {run.get('backend')}, temperature {run.get('temperature')}, "
        f"at most {run.get('max_new_tokens')} new tokens, switch words {', '.join(run.get('switch_triggers', []))}"
    )


def report(result: DemoResult, explanation: str | None = None) -> str:
    """The demo's report as printed (and written to demo.md): header, the configurations' settings,
    both tables, the paragraph, and what each configuration did (`effects_text`)."""
    from tip_decode.harness import format_table
    from tip_decode.harness.report import format_configs

    parts = [
        header(result),
        format_configs(result.summary),
        format_table(result.summary),
        walk_table(result),
        explanation if explanation is not None else explain(result),
    ]
    effects = effects_text(result.summary) if result.grid is None else ""  # a grid has its own table
    if effects:
        parts.append(effects)
    if result.grid is not None:
        best = result.grid.get("best")
        parts.append(f"Best cell: {best['config']} ({result.grid['best_reason']})." if best else f"No best cell: {result.grid['best_reason']}.")
    return "\n\n".join(parts)


def effects_text(summary: Mapping[str, Any]) -> str:
    """One line per configuration other than the baseline: what it did to accuracy and to the
    length of the reasoning, each with its 95% interval (the numbers of the table above, in words).
    Empty where only the baseline ran (the paragraph says so)."""
    from tip_decode.harness.report import _measured

    configs = summary["configs"]
    base_name = summary.get("baseline") or next(iter(configs))
    others = [n for n in configs if n != base_name]
    if not others:
        return ""
    base = configs[base_name]
    # Reasoning length: thinking tokens where the model writes a think block, else all tokens.
    key = "mean_thinking_tokens" if base.get("mean_thinking_tokens") is not None else "mean_tokens"
    what = "thinking tokens" if key == "mean_thinking_tokens" else "tokens"
    lines = [
        f"What each configuration did, against {base_name} (Pass@1 {_interval_pct(base['pass@1'])}, {_measured(base, key, 1)} {what} on average; 95% intervals):"
    ]
    for name in others:
        m = configs[name]
        paired = (summary.get("paired") or {}).get(name) or {}
        ci = paired.get("ci95") or [None, None]
        lines.append(
            f"- {name}: Pass@1 {_interval_pct(m['pass@1'])}, difference {_signed(paired.get('delta_pass@1'))} points "
            f"[{_signed(ci[0])}, {_signed(ci[1])}]; {_measured(m, key, 1)} {what} on average."
        )
    return "\n".join(lines)


def _interval_pct(metric: Mapping[str, Any]) -> str:
    ci = metric.get("ci95") or [None, None]
    return f"{_pct(metric.get('mean'))} [{_pct(ci[0])}, {_pct(ci[1])}]"


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def walk_table(result: DemoResult) -> str:
    """Thought-level numbers judged by the task (UT with a thought judged by where its walk leads)."""
    from tabulate import tabulate

    rows = []
    for name, m in result.walk_metrics.items():
        rows.append(
            [
                name,
                _pct(m.get("answered")),
                _num(m.get("thoughts_per_response"), 2),
                _on_track(m),
                _pct(m.get("incorrect_with_correct_thought")),
                str(m.get("unjudged_thoughts", "n/a")),
            ]
        )
    headers = [
        "config",
        "answered",
        "thoughts/resp",
        "on-track thoughts abandoned",
        "wrong answers with a correct thought",
        "thoughts the judge could not judge",
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _on_track(m: Mapping[str, Any]) -> str:
    value = m.get("abandoned_on_track")
    if value is None:
        return "n/a"
    unjudged = m.get("abandoned_unjudged") or 0
    return f"{value} (+{unjudged} unjudged)" if unjudged else str(value)


def _num(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def explain(result: DemoResult) -> str:
    """One paragraph, built only from measured numbers, saying what the comparison shows."""
    configs = result.summary["configs"]
    base_name = result.summary.get("baseline") or next(iter(configs))
    others = [n for n in configs if n != base_name]
    if not others:
        return "Only the baseline was run, so there is nothing to compare."
    if result.grid is not None:
        # The cell with the highest Pass@1 (the grid names it "best" only when it is distinguishable
        # from the baseline).
        best = (result.grid.get("best") or result.grid["highest"])["config"]
        worst = min(others, key=lambda n: configs[n]["pass@1"]["mean"] or 0.0)
    else:
        best = worst = others[0]
    base, tip = configs[base_name], configs[best]
    paired = result.summary.get("paired", {}).get(best) or {}
    delta, ci = paired.get("delta_pass@1"), paired.get("ci95") or [None, None]
    walks_base, walks_tip = result.walk_metrics.get(base_name, {}), result.walk_metrics.get(best, {})
    n = base["n_problems"]
    if delta is None or ci[0] is None:
        verdict = "the accuracy difference could not be estimated"
    elif ci[0] > 0:
        verdict = "an improvement whose 95% interval excludes zero"
    elif ci[1] < 0:
        verdict = "a loss whose 95% interval excludes zero"
    else:
        verdict = "a difference whose 95% interval includes zero, so this run cannot tell the two apart"
    label = _label(best, tip)
    who = "TIP" if label.startswith("TIP") else best
    what = "the penalty" if who == "TIP" else best
    if result.grid is not None:
        # The cell is picked on the very problems it is scored on, so its gain is optimistic.
        label += ", the grid's cell with the highest Pass@1, chosen on these same problems"
    text = (
        f"On {n} held-out problems the tiny model switches {_num(base['switches_per_response'], 2)} times per response at baseline "
        f"and {_num(tip['switches_per_response'], 2)} times with {label}; its thoughts last "
        f"{_num(base['mean_tokens_between_switches'], 1)} and {_num(tip['mean_tokens_between_switches'], 1)} tokens on average. "
        f"Pass@1 goes from {_pct(base['pass@1']['mean'])} to {_pct(tip['pass@1']['mean'])} "
        f"(difference {_signed(delta)} points, 95% CI [{_signed(ci[0])}, {_signed(ci[1])}]): {verdict}. "
        f"The walk judge (a thought is correct when its step size reaches the goal) finds that "
        f"{walks_base.get('abandoned_on_track')} on-track thoughts were abandoned at baseline and "
        f"{walks_tip.get('abandoned_on_track')} with {who}, and that "
        f"{_pct(walks_base.get('incorrect_with_correct_thought'))} and {_pct(walks_tip.get('incorrect_with_correct_thought'))} "
        f"of wrong answers had started a correct thought: "
        + (
            f"{what} kept promising walks alive long enough to finish. "
            if (walks_tip.get("abandoned_on_track") or 0) < (walks_base.get("abandoned_on_track") or 0)
            else f"{what} did not reduce how often promising walks were abandoned. "
        )
        + f"Responses took {_num(base['mean_tokens'], 1)} tokens at baseline and {_num(tip['mean_tokens'], 1)} with {who}, "
        f"and {_pct(base.get('truncated'))} versus {_pct(tip.get('truncated'))} ran out of the {result.summary['run'].get('max_new_tokens')}-token budget "
        "(longer-lived thoughts also keep dead-end walks going)."
    )
    if result.grid is not None and worst != best:
        w = configs[worst]
        text += (
            f" Across the grid, the highest Pass@1 is {best}'s and the lowest is {worst}'s "
            f"({_pct(w['pass@1']['mean'])} Pass@1, {_pct(w.get('truncated'))} out of budget)"
        )
        worst_ci = (result.summary.get("paired", {}).get(worst) or {}).get("ci95") or [None, None]
        if worst_ci[1] is not None and worst_ci[1] < 0:
            text += ": a penalty that is too strong or too long keeps the model on dead ends."
        else:
            text += ", although its paired interval against the baseline includes zero."
    return text


def _label(name: str, metrics: Mapping[str, Any]) -> str:
    """How the paragraph names a configuration: `TIP (alpha 3.0, beta 20)` for TIP alone, else its
    name and settings (`nowait (nowait: keywords=..., scope=auto)`)."""
    from tip_decode.harness.configs import settings_text
    from tip_decode.harness.report import config_settings

    settings = config_settings(metrics) or {}
    if settings and all(key.startswith("tip_") for key in settings):
        return f"TIP ({_describe(metrics.get('tip'))})"
    return f"{name} ({settings_text(settings, short=True)})"


def _describe(tip: Mapping[str, Any] | None) -> str:
    if not tip:
        return "off"
    return f"alpha {tip.get('tip_alpha')}, beta {tip.get('tip_beta')}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}"
