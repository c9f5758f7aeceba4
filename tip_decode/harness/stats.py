"""Statistics of the comparison: Pass@1 with a confidence interval, unbiased Pass@k, paired bootstrap.

The problem is the statistical unit: samples of one problem are not independent draws of the
benchmark, so intervals are computed over per-problem accuracies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: z for a two-sided 95% normal interval.
Z95 = 1.959963984540054
#: Bootstrap resamples of the paired difference.
BOOTSTRAP_RESAMPLES = 10_000


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


def mean_ci(values: Sequence[float]) -> tuple[float, list[float]]:
    """Mean and normal-approximation 95% interval (sample standard deviation, clipped to [0, 1]
    when all values lie in [0, 1]). One value gives a zero-width interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return math.nan, [math.nan, math.nan]
    mean = float(data.mean())
    if data.size == 1:
        return mean, [mean, mean]
    half = Z95 * float(data.std(ddof=1)) / math.sqrt(data.size)
    low, high = mean - half, mean + half
    if data.min() >= 0 and data.max() <= 1:
        low, high = max(0.0, low), min(1.0, high)
    return mean, [low, high]


def paired_bootstrap(
    treatment: Mapping[str, float],
    baseline: Mapping[str, float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, float | list[float] | int]:
    """Difference of means (treatment - baseline) over the problems both hold, with a percentile
    bootstrap 95% interval from resampling problems with replacement (seeded: reruns agree)."""
    if resamples < 1:
        raise ValueError(f"`resamples` has to be a positive integer, but is {resamples!r}")
    shared = sorted(set(treatment) & set(baseline))
    if not shared:
        return {"delta": math.nan, "ci95": [math.nan, math.nan], "n_problems": 0}
    diffs = np.array([treatment[p] - baseline[p] for p in shared], dtype=float)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(diffs), size=(resamples, len(diffs)))
    means = diffs[index].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"delta": float(diffs.mean()), "ci95": [float(low), float(high)], "n_problems": len(shared)}
