"""Statistics of the comparison: Pass@1 with a confidence interval, unbiased Pass@k, paired differences.

The problem is the statistical unit: samples of one problem are not independent draws of the
benchmark, so intervals are computed over problems. The intervals come from `scipy.stats` and stay
valid at small n (a normal approximation collapses to `[0, 0]` at 0/4 correct):

- one sample per problem: Pass@1 is a binomial proportion, and its interval is the Wilson score
  interval (`scipy.stats.binomtest(...).proportion_ci(method="wilson")`);
- several samples per problem: a BCa bootstrap interval of the mean of per-problem accuracies
  (`scipy.stats.bootstrap(..., method="BCa")`);
- differences between configurations: a paired BCa bootstrap over problems
  (`scipy.stats.bootstrap(..., paired=True, method="BCa")`);
- means of lengths and counts (tokens, thinking tokens, switches per response, thought length):
  a BCa bootstrap over problems of the pooled mean (`pooled_mean_interval`).

Degenerate data are handled explicitly, never by a silent zero-width interval: when every problem
has the same accuracy the bootstrap has nothing to resample, and Pass@1 falls back to the Wilson
interval of that accuracy over the number of problems; when every problem has the same paired
difference, the difference's interval is unknown (None) and `ci_method` says why. Every result
names its method, and `summary.md` prints it.

Bootstrap resamples are drawn from a generator seeded by the run seed, so reruns agree exactly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Confidence level of every interval.
CONFIDENCE = 0.95
#: Bootstrap resamples (intervals and paired differences).
BOOTSTRAP_RESAMPLES = 10_000

#: `ci_method` values, with the sentence summary.md prints for each.
WILSON = "wilson"
BCA = "bca"
PERCENTILE = "percentile"
WILSON_EQUAL = "wilson-equal"
UNDEFINED_EQUAL = "undefined-equal"
UNDEFINED_CONSTANT = "undefined-constant"
NO_DATA = "no-data"
METHOD_TEXT = {
    WILSON: "Wilson score interval (one sample per problem: Pass@1 is a binomial proportion over problems)",
    BCA: "BCa bootstrap over problems (10,000 resamples of per-problem values, seeded by the run seed)",
    PERCENTILE: "percentile bootstrap over problems (BCa could not be computed for these values)",
    WILSON_EQUAL: "every problem has the same accuracy, so the bootstrap has nothing to resample: Wilson interval of that accuracy over the number of problems",
    UNDEFINED_EQUAL: "every problem has the same difference, so no interval can be estimated from these problems (n/a)",
    UNDEFINED_CONSTANT: "every problem has the same mean (or there is one problem), so no interval can be estimated from these problems (n/a)",
    NO_DATA: "no data",
}


def _scipy_stats() -> Any:
    from scipy import stats  # the `eval` extra; imported here so `import tip_decode.harness` needs no scipy

    return stats


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k for one problem: n samples of which c are correct (Chen et al., 2021).

    `1 - C(n - c, k) / C(n, k)`: the chance that at least one of k samples drawn without replacement
    from the n is correct.
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` has to be a non-negative integer, but is {value!r}")
    if c > n:
        raise ValueError(f"`c` has to be at most n={n}, but is {c}")
    if not 1 <= k <= n:
        raise ValueError(f"`k` has to be between 1 and n={n}, but is {k}")
    if n - c < k:
        return 1.0
    # Product form avoids huge binomials: C(n-c, k)/C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i).
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def ks_for(samples: int) -> list[int]:
    """The k reported for `samples` samples per problem: powers of two up to it, and itself."""
    ks = [k for k in (2**i for i in range(0, 20)) if k <= samples]
    if samples not in ks:
        ks.append(samples)
    return ks


def wilson_interval(successes: int, trials: int) -> list[float]:
    """The Wilson score 95% interval of `successes` out of `trials` (scipy's `binomtest`)."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"`trials` has to be a positive integer, but is {trials!r}")
    if isinstance(successes, bool) or not isinstance(successes, int) or not 0 <= successes <= trials:
        raise ValueError(f"`successes` has to be an integer in [0, {trials}], but is {successes!r}")
    interval = _scipy_stats().binomtest(successes, trials).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return [float(interval.low), float(interval.high)]


def _bootstrap(samples: tuple[np.ndarray, ...], statistic: Any, seed: int, paired: bool) -> tuple[list[float], str]:
    """BCa interval, falling back to the percentile interval where BCa is undefined (NaN)."""
    stats = _scipy_stats()
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # scipy warns (DegenerateDataWarning, divide) and returns NaN when BCa is undefined; we
            # detect that below and say which interval was used instead.
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                samples,
                statistic,
                paired=paired,
                vectorized=True,
                confidence_level=CONFIDENCE,
                n_resamples=BOOTSTRAP_RESAMPLES,
                method=method,
                rng=np.random.default_rng(seed),
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return [low, high], BCA if method == "BCa" else PERCENTILE
    return [math.nan, math.nan], NO_DATA


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def pass1_interval(outcomes: Mapping[Any, Sequence[bool]], seed: int = 0) -> dict[str, Any]:
    """Pass@1 over problems with its 95% interval and the interval's method.

    Args:
        outcomes: per problem, the correctness of each of its samples.
        seed: seeds the bootstrap (several samples per problem).

    Returns:
        `{"mean", "ci95", "ci_method"}`: the mean of per-problem accuracies; the Wilson interval when
        every problem has one sample; else the BCa bootstrap interval over problems; when every
        problem has the same accuracy, the Wilson interval of that accuracy over the problems (one
        problem: over its samples). `ci_method` is a key of `METHOD_TEXT`.
    """
    groups = [list(v) for v in outcomes.values() if len(v)]
    if not groups:
        return {"mean": math.nan, "ci95": [math.nan, math.nan], "ci_method": NO_DATA}
    accuracy = np.array([sum(map(bool, g)) / len(g) for g in groups], dtype=float)
    mean = float(accuracy.mean())
    if all(len(g) == 1 for g in groups):
        return {"mean": mean, "ci95": wilson_interval(int(accuracy.sum()), len(groups)), "ci_method": WILSON}
    if np.all(accuracy == accuracy[0]):
        if len(groups) == 1:
            return {"mean": mean, "ci95": wilson_interval(sum(map(bool, groups[0])), len(groups[0])), "ci_method": WILSON_EQUAL}
        return {"mean": mean, "ci95": wilson_interval(round(mean * len(groups)), len(groups)), "ci_method": WILSON_EQUAL}
    ci, method = _bootstrap((accuracy,), _mean, seed, paired=False)
    return {"mean": mean, "ci95": ci, "ci_method": method}


def paired_bootstrap(
    treatment: Mapping[str, float],
    baseline: Mapping[str, float],
    seed: int = 0,
) -> dict[str, Any]:
    """Difference of means (treatment - baseline) over the problems both hold, with a paired BCa
    bootstrap 95% interval (problems resampled with replacement; seeded, so reruns agree).

    Returns `{"delta", "ci95", "ci_method", "n_problems"}`. When every shared problem has the same
    difference the bootstrap is undefined: `ci95` is `[None, None]`-like (NaN) and `ci_method` is
    `"undefined-equal"`.
    """
    shared = sorted(set(treatment) & set(baseline))
    if not shared:
        return {"delta": math.nan, "ci95": [math.nan, math.nan], "ci_method": NO_DATA, "n_problems": 0}
    x = np.array([treatment[p] for p in shared], dtype=float)
    y = np.array([baseline[p] for p in shared], dtype=float)
    diffs = x - y
    delta = float(diffs.mean())
    if np.all(diffs == diffs[0]):
        return {"delta": delta, "ci95": [math.nan, math.nan], "ci_method": UNDEFINED_EQUAL, "n_problems": len(shared)}
    ci, method = _bootstrap((x, y), _mean_difference, seed, paired=True)
    return {"delta": delta, "ci95": ci, "ci_method": method, "n_problems": len(shared)}


def mean_interval(values: Sequence[float]) -> tuple[float, list[float]]:
    """Mean and Student-t 95% interval of `values` (for counts such as switches per response).

    One value, or values that are all equal, give no spread: the interval is NaN (unknown).
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return math.nan, [math.nan, math.nan]
    mean = float(data.mean())
    if data.size < 2 or np.all(data == data[0]):
        return mean, [math.nan, math.nan]
    stats = _scipy_stats()
    low, high = stats.t.interval(CONFIDENCE, data.size - 1, loc=mean, scale=stats.sem(data))
    return mean, [float(low), float(high)]


def _ratio_of_sums(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(x, axis=axis) / np.sum(y, axis=axis)


def pooled_mean_interval(totals: Mapping[Any, float], counts: Mapping[Any, float], seed: int = 0) -> dict[str, Any]:
    """A pooled mean (sum of `totals` / sum of `counts`) with a 95% interval over problems.

    For per-response means (tokens, switches: `counts` = responses per problem) and per-thought
    means (thought length: `totals` = thought tokens, `counts` = thoughts per problem). The problem
    is the unit, as for Pass@1: problems are resampled with their totals and counts together (a
    paired BCa bootstrap of the ratio, seeded), so several samples of one problem are not taken as
    independent. When every problem has the same mean (all responses without a switch) or there is
    a single problem, nothing varies to estimate an interval from: `ci95` is NaN and `ci_method`
    says why (`"undefined-constant"`), never a zero-width interval.

    Returns `{"mean", "ci95", "ci_method"}`.
    """
    problems = [p for p in totals if counts.get(p, 0) > 0]
    if not problems:
        return {"mean": math.nan, "ci95": [math.nan, math.nan], "ci_method": NO_DATA}
    x = np.array([totals[p] for p in problems], dtype=float)
    y = np.array([counts[p] for p in problems], dtype=float)
    mean = float(x.sum() / y.sum())
    per_problem = x / y
    if len(problems) < 2 or np.all(per_problem == per_problem[0]):
        return {"mean": mean, "ci95": [math.nan, math.nan], "ci_method": UNDEFINED_CONSTANT}
    ci, method = _bootstrap((x, y), _ratio_of_sums, seed, paired=True)
    return {"mean": mean, "ci95": ci, "ci_method": method}
