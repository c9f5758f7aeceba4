"""The data a viewer page is built from: problems, configurations, responses and their thoughts.

Nothing here segments or judges anything: every thought, switch and verdict is the
`ResponseAnalysis` that `tip_decode.analysis.analyze_response` returned (the CLI runs it exactly as
`tip-decode analyze` does), so the page shows the command's thoughts and judgements. This module
only arranges them per problem and per configuration, and marks in each thought's text
  - the switch word that opened it (the trigger tokens of its switch), and
  - for a configuration with TIP, the steps at which TIP penalised switch words: the steps at which
    the recogniser's `in_window(beta)` holds, i.e. `t < psi + beta` inside the reasoning (contract
    section 1), replayed on the recorded tokens with the configuration's own triggers and scope.

Records carry no per-step log of what an intervention did. TIP's window is a function of the
generated tokens and its settings alone, so it can be replayed exactly; the other interventions
(NoWait's bans, CyclicReflex's wave, a budget's forcing, gated TIP's entropy gate) are shown by
their settings only (docs/analysis.md, "The trace viewer").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tip_decode.analysis.judge import UNJUDGED
from tip_decode.analysis.trace import ResponseAnalysis
from tip_decode.core.recognizer import SwitchRecognizer
from tip_decode.core.vocabulary import SwitchVocabulary, TokenizerView

#: Version of the page's data layout (`read_page_data` refuses another).
FORMAT = 1
#: Flags of a run of characters inside a thought's text.
SWITCH_WORD = 1
PENALISED = 2
#: Characters of a problem's text kept in the table's index (for the search box and the tooltip).
SNIPPET_CHARS = 240


@dataclass(frozen=True)
class Trace:
    """One analysed response, with the record fields the page shows.

    `problem` groups the samples of one problem (the record's problem id, as `tip-decode analyze`
    groups them for weighted UT); `ids` are the generated token ids that were analysed;
    `prompt_open` is the value the analysis resolved (whether the prompt opened the think block).
    """

    config: str
    problem: Any
    sample: int | None
    ids: Sequence[int]
    analysis: ResponseAnalysis
    reference: str | None = None
    prompt: str | None = None
    problem_text: str | None = None
    finish_reason: str | None = None
    prompt_open: bool = False


@dataclass(frozen=True)
class ConfigView:
    """A configuration as the page names it: its name and flat intervention keys (None: standard decoding)."""

    name: str
    settings: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TIPWindow:
    """TIP's settings as far as the page replays them."""

    alpha: float
    beta: int
    vocabulary: SwitchVocabulary
    scope: str


def tip_window(settings: Mapping[str, Any] | None, tokenizer: Any, default_triggers: Sequence[str]) -> TIPWindow | None:
    """TIP's penalty window of a configuration's settings (None when TIP is off or absent)."""
    if not settings:
        return None
    alpha, beta = settings.get("tip_alpha"), settings.get("tip_beta")
    if alpha is None or beta is None:
        return None
    alpha = float(alpha)
    if alpha == 0 or int(beta) == 0:
        return None  # contract section 1: exactly standard decoding
    triggers = settings.get("tip_triggers") or list(default_triggers)
    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, list(triggers))
    scope = vocabulary.resolve_scope(str(settings.get("tip_scope") or "auto"))
    return TIPWindow(alpha, int(beta), vocabulary, scope)


def penalised_steps(ids: Sequence[int], window: TIPWindow, prompt_open: bool) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """The step ranges `[a, b)` at which TIP penalised switch words, and TIP's own switches as
    (position, recognised_at) pairs: the recogniser fed the recorded tokens one at a time, asked
    before each whether the penalty may act on the token chosen next."""
    recognizer = SwitchRecognizer(window.vocabulary, window.scope, prompt_open)
    ranges: list[tuple[int, int]] = []
    start = None
    for step, token in enumerate(ids):
        inside = recognizer.in_window(window.beta)
        if inside and start is None:
            start = step
        elif not inside and start is not None:
            ranges.append((start, step))
            start = None
        recognizer.push(token)
    if start is not None:
        ranges.append((start, len(ids)))
    return ranges, {(e.position, e.recognised_at) for e in recognizer.events}


def _char_offset(view: TokenizerView, ids: Sequence[int], start: int, boundary: int, text: str) -> int:
    """Characters of `text` (the decoded thought `ids[start:end]`) before token `boundary`."""
    prefix = view.decode(ids[start:boundary])
    if text.startswith(prefix):
        return len(prefix)
    # A decoder that joins tokens differently at the cut (cleaned-up spaces): the common prefix.
    common = 0
    for a, b in zip(prefix, text):
        if a != b:
            break
        common += 1
    return common


def _runs(view: TokenizerView, ids: Sequence[int], start: int, end: int, text: str, marks: list[tuple[int, int, int]]) -> list[list[int]]:
    """The thought's text as [characters, flags] runs; `marks` are token ranges [a, b) with a flag."""
    cuts = {start, end}
    for a, b, _ in marks:
        cuts.update(p for p in (a, b) if start < p < end)
    points = sorted(cuts)
    offsets = {start: 0, end: len(text)}
    for point in points[1:-1]:
        offsets[point] = _char_offset(view, ids, start, point, text)
    runs: list[list[int]] = []
    for a, b in zip(points, points[1:]):
        flags = 0
        for ma, mb, flag in marks:
            if ma <= a and b <= mb:
                flags |= flag
        length = max(0, offsets[b] - offsets[a])
        if not length:
            continue
        if runs and runs[-1][1] == flags:
            runs[-1][0] += length
        else:
            runs.append([length, flags])
    return runs


def _status(status: str) -> str:
    return {"correct": "correct", "incorrect": "incorrect"}.get(status, UNJUDGED)


def trace_data(trace: Trace, view: TokenizerView, window: TIPWindow | None) -> dict[str, Any]:
    """One response as the page draws it (thoughts in the analysis's order, texts as it decoded them)."""
    a = trace.analysis
    ids = list(trace.ids)
    if a.n_tokens != len(ids):
        raise ValueError(f"response {a.id!r}: the analysis has {a.n_tokens} tokens but the trace {len(ids)}")
    r0 = a.reasoning_start
    r1 = a.reasoning_end if a.reasoning_end is not None else len(ids)
    windows: list[tuple[int, int]] = []
    tip_switches: set[tuple[int, int]] = set()
    if window is not None:
        windows, tip_switches = penalised_steps(ids, window, trace.prompt_open)
    switch_of = {s.abandoned + 1: s for s in a.switches}  # the switch that opened thought i
    thoughts = []
    through_penalty = 0
    for thought in a.thoughts:
        marks: list[tuple[int, int, int]] = []
        opened_by = switch_of.get(thought.index)
        if opened_by is not None:
            marks.append((opened_by.position, opened_by.recognised_at + 1, SWITCH_WORD))
        marks += [(wa, wb, PENALISED) for wa, wb in windows if wa < thought.end and wb > thought.start]
        entry: dict[str, Any] = {
            "i": thought.index,
            "a": thought.start,
            "n": thought.n_tokens,
            "t": thought.text,
            "s": _status(thought.status),
            "tr": thought.trigger,
            "end": thought.ended_by_switch,
            "pre": thought.premature,
            "cand": list(thought.candidates),
            "conf": thought.confidence,
        }
        if marks and thought.text:
            entry["runs"] = _runs(view, ids, thought.start, thought.end, thought.text, marks)
        ended_by = switch_of.get(thought.index + 1)
        if window is not None and ended_by is not None:
            # The switch word that ended this thought was sampled while TIP penalised it (its
            # completing token's step is in the window, and it is one of TIP's own switches).
            penalised = (ended_by.position, ended_by.recognised_at) in tip_switches and any(wa <= ended_by.recognised_at < wb for wa, wb in windows)
            entry["pen"] = penalised
            through_penalty += penalised
        thoughts.append(entry)
    before = view.decode(ids[: r0 if r0 is not None else len(ids)])
    after = view.decode(ids[r1:]) if r0 is not None else ""
    return {
        "ok": a.correct,
        "pred": a.prediction,
        "finish": trace.finish_reason,
        "tok": a.n_tokens,
        "ut": _finite(a.ut),
        "fct": a.first_correct_thought,
        "sw": len(a.switches),
        "pre": a.premature,
        # As `tip-decode analyze --json` gives it: unknown (None) when every abandoned thought went unjudged.
        "ota": a.to_dict(thoughts=False)["abandoned_on_track"],
        "unj": a.unjudged_thoughts,
        "before": before,
        "after": after,
        "th": thoughts,
        "pen": through_penalty if window is not None else None,
        "win": [list(w) for w in windows] if window is not None else None,
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _key(value: Any) -> str:
    """A hashable, stable key for a problem id of any JSON type."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _cell(traces: list[dict[str, Any]]) -> dict[str, Any]:
    """A problem's numbers for one configuration, over its samples (the table's cells)."""
    graded = [t for t in traces if t["ok"] is not None]
    incorrect = [t for t in graded if t["ok"] is False]
    known = [t["ut"] for t in incorrect if t["ut"] is not None]
    return {
        "n": len(traces),
        "g": len(graded),
        "ok": sum(t["ok"] is True for t in graded),
        "sw": sum(t["sw"] for t in traces) / len(traces),
        "tok": sum(t["tok"] for t in traces) / len(traces),
        "ut": sum(known) / len(known) if known else None,
        "th": sum(len(t["th"]) for t in traces),
        "trunc": sum(t["finish"] == "length" for t in traces),
    }


def build_page_data(
    traces: Sequence[Trace],
    configs: Sequence[ConfigView],
    tokenizer: Any,
    *,
    title: str,
    source: str,
    baseline: str | None = None,
    settings: Sequence[tuple[str, str]] = (),
    tables: Sequence[Mapping[str, Any]] = (),
    legend: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
    default_triggers: Sequence[str] = ("alternatively",),
    generator: str = "",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(index, details): the table's data for every problem, and per problem its responses in full.

    Problems keep the order in which they first appear in `traces`; samples are the records'
    `sample` numbers (or their order within the problem when records have none). The details of
    a problem are what the page decodes when the problem is opened.
    """
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"configuration names have to be unique, but are {names}")
    position = {name: index for index, name in enumerate(names)}
    view = tokenizer if isinstance(tokenizer, TokenizerView) else TokenizerView(tokenizer)
    windows = {c.name: tip_window(c.settings, tokenizer, default_triggers) for c in configs}

    order: list[str] = []
    problems: dict[str, dict[str, Any]] = {}
    counters: dict[tuple[str, str], int] = {}
    for trace in traces:
        if trace.config not in position:
            raise ValueError(f"trace of configuration {trace.config!r}, which is not among {names}")
        key = _key(trace.problem)
        entry = problems.get(key)
        if entry is None:
            entry = problems[key] = {"id": trace.problem, "ref": trace.reference, "prompt": trace.prompt, "text": trace.problem_text, "samples": {}}
            order.append(key)
        sample = trace.sample
        if sample is None:
            sample = counters.get((key, trace.config), 0)
            counters[(key, trace.config)] = sample + 1
        slots = entry["samples"].setdefault(sample, [None] * len(names))
        if slots[position[trace.config]] is not None:
            raise ValueError(f"configuration {trace.config!r} has two responses for problem {trace.problem!r} sample {sample}")
        slots[position[trace.config]] = trace_data(trace, view, windows[trace.config])
        for field in ("ref", "prompt", "text"):
            if entry[field] is None:
                entry[field] = {"ref": trace.reference, "prompt": trace.prompt, "text": trace.problem_text}[field]

    index_rows = []
    details = []
    n_thoughts = 0
    n_responses = 0
    for key in order:
        entry = problems[key]
        samples = sorted(entry["samples"].items(), key=lambda item: item[0])
        cells = []
        for column in range(len(names)):
            present = [slots[column] for _, slots in samples if slots[column] is not None]
            cells.append(_cell(present) if present else None)
            n_thoughts += sum(len(t["th"]) for t in present)
            n_responses += len(present)
        shown = entry["text"] or entry["prompt"] or ""
        index_rows.append(
            {
                "id": entry["id"] if isinstance(entry["id"], str) else json.dumps(entry["id"]),
                "text": shown[:SNIPPET_CHARS],
                "ref": entry["ref"],
                "k": len(samples),
                "c": cells,
            }
        )
        details.append({"prompt": entry["prompt"], "text": entry["text"], "samples": [{"sample": s, "traces": slots} for s, slots in samples]})

    config_entries = []
    for config in configs:
        window = windows[config.name]
        config_entries.append(
            {
                "name": config.name,
                "settings": _settings_text(config.settings),
                "tip": None if window is None else {"alpha": _alpha_text(window.alpha), "beta": window.beta, "scope": window.scope},
                "notes": intervention_notes(config.settings),
            }
        )
    index = {
        "format": FORMAT,
        "title": title,
        "source": source,
        "generator": generator,
        "baseline": position.get(baseline) if baseline is not None else None,
        "configs": config_entries,
        "settings": [list(pair) for pair in settings],
        "tables": [dict(t) for t in tables],
        "legend": [list(pair) for pair in legend],
        "notes": list(notes),
        "totals": {"problems": len(order), "responses": n_responses, "thoughts": n_thoughts},
        "problems": index_rows,
    }
    return index, details


def _alpha_text(alpha: float) -> str:
    return "inf" if math.isinf(alpha) else f"{alpha:g}"


def _settings_text(settings: Mapping[str, Any] | None) -> str:
    from tip_decode.harness.configs import settings_text

    return settings_text(settings or None, short=True)


def intervention_notes(settings: Mapping[str, Any] | None) -> list[str]:
    """What the page can and cannot show of a configuration's interventions (records log no steps)."""
    if not settings:
        return []
    keys = set(settings)
    notes = []
    if any(k.startswith("nowait") for k in keys):
        notes.append("NoWait banned its keywords throughout the reasoning: they cannot appear, so there is no step to mark.")
    if any(k.startswith("cyclic") for k in keys):
        notes.append("CyclicReflex biased its words by position; records do not log the bias per step, so it is not marked.")
    if any(k.startswith("budget") for k in keys):
        notes.append(
            "A thinking budget may have forced or suppressed the end of thinking; records do not log which tokens were forced, so they are not marked."
        )
    if any(k.startswith("gated") for k in keys):
        notes.append("Gated TIP penalised only while a thought's entropy was low; records carry no entropies, so its steps are not marked.")
    return notes
