"""DeepConf's threshold from warm-up traces (`tip-decode calibrate`), as the paper's online mode sets it.

The authors' online mode (facebookresearch/deepconf@675529d, `deepconf/wrapper.py` l.190-215 and
`deepconf/utils.py` l.41-62, l.283-301) samples warm-up traces without a stop, and for each:

    C_t        = -(mean of the top-k log-probabilities of step t), rounded to 3 decimals
    group_i    = mean of C over the window of n steps starting at step i, rounded to 3 decimals
                 (a trace shorter than n: one group, the mean of all its C, not rounded)
    lowest     = min over the trace's groups
    threshold  = numpy.percentile(lowest of every warm-up trace, 100 - keep)

`keep` (the authors' `confidence_percentile`) is the share of warm-up traces whose lowest group stays
above the threshold: 90 keeps 90% (the wrapper's default, the paper's DeepConf-high), 10 keeps the
top 10% (DeepConf-low, `examples/example_online.py`). The authors read C from the top-k log-probs
vLLM returned with each sampled token; here the warm-up traces are a run's records (any backend),
and their confidences come from one forward pass of the same model over prompt + response in
transformers, the logits each generated token was drawn from (every generated token counts, the
final end-of-sequence one too, as vLLM returns a log-prob entry for it). The paper calibrates per
question (16 warm-up traces each); a run's records give one threshold for the whole run (every
problem's traces pooled), the reading a per-request threshold on a fixed data set allows:
docs/interventions.md, DeepConf.

The result goes to `calibration.json` in the warm-up run's folder and under `calibration` in its
run.json; the command prints the `-c deepconf:...` spec that uses it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tip_decode.core.interventions.deepconf import MAX_TOPK, MAX_WINDOW, PAPER_TOPK, PAPER_WINDOW

#: The authors' `confidence_percentile` default (wrapper.py): keep 90% of warm-up traces.
PAPER_KEEP = 90.0
#: The decimals the authors round warm-up confidences and group means to (utils.py).
ROUNDING = 3


def lowest_group_confidence(confidences: Sequence[float], window: int) -> float | None:
    """The lowest mean of `window` consecutive confidences (the authors' `compute_least_grouped`,
    rounding included); a trace shorter than the window has one group, the mean of all of it;
    None for a trace without confidences (the authors' 0 would drag the percentile to 0)."""
    if not confidences:
        return None
    if len(confidences) < window:
        return sum(confidences) / len(confidences)
    running = sum(confidences[:window])
    lowest = round(running / window, ROUNDING)
    for start in range(1, len(confidences) - window + 1):
        running += confidences[start + window - 1] - confidences[start - 1]
        lowest = min(lowest, round(running / window, ROUNDING))
    return lowest


def threshold_from(lowest: Sequence[float], keep: float) -> float:
    """numpy.percentile(lowest, 100 - keep), linear interpolation (the authors' call)."""
    import numpy as np

    if not lowest:
        raise ValueError("no warm-up trace has a confidence: nothing to calibrate on")
    return float(np.percentile(np.asarray(lowest, dtype=np.float64), 100.0 - keep))


def check_settings(keep: float, window: int, topk: int) -> None:
    """Refuse settings outside the ranges the `deepconf` keys accept, in one line each."""
    if not (isinstance(keep, (int, float)) and not isinstance(keep, bool) and math.isfinite(keep) and 0 < keep <= 100):
        raise ValueError(f"`keep` has to be a percentage above 0 and at most 100, but is {keep!r}")
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW:
        raise ValueError(f"`window` has to be an integer from 1 to {MAX_WINDOW}, but is {window!r}")
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
        raise ValueError(f"`topk` has to be an integer from 1 to {MAX_TOPK}, but is {topk!r}")


def step_confidences(logits: Any, topk: int) -> list[float]:
    """C_t of each row of `logits` (steps x vocabulary, torch), rounded as the authors' warm-up."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    k = min(topk, logprobs.shape[-1])
    values = -logprobs.topk(k, dim=-1).values.mean(dim=-1)
    return [round(float(v), ROUNDING) for v in values]


@dataclass(frozen=True)
class Calibration:
    """What `calibrate_run` measured and decided (written to calibration.json and run.json)."""

    threshold: float
    keep: float
    window: int
    topk: int
    config: str
    traces: int
    skipped: int  # records without generated tokens
    lowest: tuple[float, ...]

    def spec(self) -> str:
        """The `-c` spec that runs DeepConf with this threshold."""
        return f"deepconf:threshold={self.threshold:.6g},window={self.window},topk={self.topk}"


def calibrate_run(
    run_dir: str | Path,
    config: str = "baseline",
    keep: float = PAPER_KEEP,
    window: int = PAPER_WINDOW,
    topk: int = PAPER_TOPK,
    device: str = "cpu",
    model: str | None = None,
) -> Calibration:
    """DeepConf's threshold from the records of `config` in the run folder `run_dir` (warm-up
    traces: generated without DeepConf), recorded in the folder. `model`: where to load the model
    from (default: run.json's)."""
    from tip_decode.harness.preflight import InputError
    from tip_decode.harness.records import read_records

    check_settings(keep, window, topk)
    folder = Path(run_dir)
    run_path = folder / "run.json"
    if not run_path.is_file():
        raise InputError(f"{folder} is no run folder of tip-decode compare/demo (it has no run.json)")
    try:
        run = json.loads(run_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise InputError(f"{run_path} is damaged (not JSON)") from None
    names = [c.get("name") for c in run.get("configs", [])]
    if config not in names:
        raise InputError(f"the run has no configuration {config!r} (it has {', '.join(map(str, names)) or 'none'})")
    settings = next(c for c in run["configs"] if c.get("name") == config).get("interventions") or {}
    if any(key.startswith("deepconf_") for key in settings):
        raise InputError(f"configuration {config!r} ran with DeepConf itself: warm-up traces have to run without a stop")
    records_path = folder / f"{config}.jsonl"
    if not records_path.is_file():
        raise InputError(f"{records_path} is missing: the run has no records of {config!r}")
    records = read_records(records_path)
    source = model or run.get("model")
    if not source:
        raise InputError(f"{run_path} names no model: give one with --model")
    lowest, skipped = _lowest_per_trace(records, str(source), run.get("tokenizer"), window, topk, device)
    result = Calibration(threshold_from(lowest, keep), float(keep), window, topk, config, len(lowest), skipped, tuple(lowest))
    _record(folder, run_path, result)
    return result


def _lowest_per_trace(records: Sequence[Mapping[str, Any]], model: str, tokenizer: str | None, window: int, topk: int, device: str) -> tuple[list[float], int]:
    import torch

    from tip_decode.harness.backend_base import load_hf_causal_lm, load_hf_tokenizer

    tok = load_hf_tokenizer(tokenizer or model)
    lm = load_hf_causal_lm(model, dtype=torch.float32).to(device).eval()
    lowest: list[float] = []
    skipped = 0
    with torch.inference_mode():
        for record in records:
            generated = [int(t) for t in record.get("token_ids") or []]
            if not generated:
                skipped += 1
                continue
            # The prompt as the harness encoded it (run.py: no special tokens added).
            prompt = tok(record["prompt"], add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + generated], device=device)
            logits = lm(input_ids=ids).logits[0, len(prompt) - 1 : len(prompt) - 1 + len(generated)]
            value = lowest_group_confidence(step_confidences(logits, topk), window)
            if value is None:
                skipped += 1
            else:
                lowest.append(value)
    return lowest, skipped


def _record(folder: Path, run_path: Path, result: Calibration) -> None:
    entry = {**asdict(result), "lowest": list(result.lowest), "spec": result.spec()}
    (folder / "calibration.json").write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
    run = json.loads(run_path.read_text(encoding="utf-8"))
    # The run's own record of what was derived from its traces (one entry per configuration
    # and settings; a rerun with the same ones replaces it).
    kept = [
        c
        for c in run.get("calibration", [])
        if (c.get("config"), c.get("keep"), c.get("window"), c.get("topk")) != (result.config, result.keep, result.window, result.topk)
    ]
    summary = {key: value for key, value in entry.items() if key != "lowest"}
    run["calibration"] = kept + [summary]
    run_path.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
