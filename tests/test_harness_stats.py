"""Statistics of the harness against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from tip_decode.harness.metrics import config_metrics, paired_differences
from tip_decode.harness.stats import Z95, ks_for, mean_ci, paired_bootstrap, pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 1, 2 / 5),  # Pass@1 is the fraction correct
        (4, 1, 2, 1 - 3 / 6),  # 1 - C(3,2)/C(4,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (3, 0, 2, 0.0),
        (3, 2, 2, 1.0),  # n - c < k: every draw of 2 holds a correct one
        (16, 16, 16, 1.0),
        (32, 1, 32, 1.0),
        (32, 1, 16, 0.5),  # one correct among 32, half of them drawn
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, 1, 0), (3, 1, 4), (-1, 0, 1), (3, True, 1)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_ks_for():
    assert ks_for(1) == [1]
    assert ks_for(32) == [1, 2, 4, 8, 16, 32]
    assert ks_for(6) == [1, 2, 4, 6]


def test_mean_ci_hand_computed():
    mean, (low, high) = mean_ci([0.2, 0.4, 0.6])
    half = Z95 * 0.2 / math.sqrt(3)  # sample sd of (0.2, 0.4, 0.6) is 0.2
    assert mean == pytest.approx(0.4)
    assert (low, high) == (pytest.approx(0.4 - half), pytest.approx(0.4 + half))
    # Proportions are clipped to [0, 1].
    assert mean_ci([1.0, 1.0, 0.5]) == (pytest.approx(2.5 / 3), [pytest.approx(2.5 / 3 - Z95 * math.sqrt(1 / 12) / math.sqrt(3)), 1.0])
    assert mean_ci([0.7]) == (0.7, [0.7, 0.7])
    assert math.isnan(mean_ci([])[0])


def test_paired_bootstrap_constant_difference_has_zero_width():
    result = paired_bootstrap({"a": 1.0, "b": 0.5}, {"a": 0.5, "b": 0.0, "c": 1.0}, resamples=500)
    assert result["delta"] == pytest.approx(0.5)
    assert result["ci95"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert result["n_problems"] == 2  # only problems both hold


def test_paired_bootstrap_two_problems_hand_computed():
    # Differences (1, 0): a resample's mean is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles are 0 and 1.
    result = paired_bootstrap({"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 0.0}, resamples=4000, seed=3)
    assert result["delta"] == pytest.approx(0.5)
    assert result["ci95"] == [0.0, 1.0]
    again = paired_bootstrap({"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 0.0}, resamples=4000, seed=3)
    assert again == result  # seeded: reruns agree


def test_paired_bootstrap_interval_covers_the_normal_interval():
    # 200 problems, difference +1 on 60 of them, 0 elsewhere: delta 0.3, sd ~0.4594.
    treatment = {str(i): 1.0 if i < 60 else 0.0 for i in range(200)}
    baseline = {str(i): 0.0 for i in range(200)}
    result = paired_bootstrap(treatment, baseline, resamples=20000, seed=0)
    half = Z95 * math.sqrt(0.3 * 0.7 * 200 / 199) / math.sqrt(200)
    assert result["ci95"][0] == pytest.approx(0.3 - half, abs=0.01)
    assert result["ci95"][1] == pytest.approx(0.3 + half, abs=0.01)


def _record(pid, sample, correct, n_tokens=10, switches=()):
    return {"id": pid, "sample": sample, "correct": correct, "n_tokens": n_tokens, "switch_positions": list(switches), "finish_reason": "stop"}


def test_config_metrics_hand_computed():
    records = [
        _record("p1", 0, True, 10, [4]),
        _record("p1", 1, False, 20),
        _record("p2", 0, False, 30, [5, 9]),
        _record("p2", 1, False, 40),
    ]
    m = config_metrics(records, aggregate=None)
    assert m["n"] == 4 and m["n_problems"] == 2 and m["samples"] == 2
    assert m["pass@1"]["mean"] == pytest.approx(0.25)  # mean of per-problem 0.5 and 0.0
    assert m["pass@k"] == {"1": pytest.approx(0.25), "2": pytest.approx(0.5)}
    assert m["mean_tokens"] == pytest.approx(25.0)
    assert m["switches_per_response"] == pytest.approx(0.75)
    # The analysis' aggregate, when given, provides switch metrics and UT.
    agg = {"switches_per_response": 0.75, "mean_tokens_between_switches": 100 / 7, "ut": 0.2, "weighted_ut": 0.1}
    assert config_metrics(records, agg)["weighted_ut"] == 0.1


def test_paired_differences_against_named_baseline():
    base = [_record("p1", 0, False), _record("p2", 0, True)]
    tip = [_record("p1", 0, True), _record("p2", 0, True)]
    paired = paired_differences({"baseline": base, "tip": tip}, "baseline")
    assert list(paired) == ["tip"]
    assert paired["tip"]["delta_pass@1"] == pytest.approx(0.5)
    assert paired["tip"]["baseline"] == "baseline"
