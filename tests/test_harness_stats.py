"""Statistics of the harness against hand-computed cases."""

from __future__ import annotations

import math
import statistics

import pytest

from tip_decode.harness.metrics import config_metrics, paired_differences
from tip_decode.harness.stats import METHOD_TEXT, ks_for, paired_bootstrap, pass1_interval, pass_at_k, wilson_interval

Z95 = 1.959963984540054  # two-sided 95% normal quantile


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


def wilson_by_hand(c, n, z=Z95):
    # Wilson (1927): (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), written out here so the
    # test does not trust the library it checks.
    p = c / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [(centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)]


@pytest.mark.parametrize(("c", "n"), [(0, 4), (4, 4), (1, 3), (7, 10), (150, 300)])
def test_wilson_interval_hand_computed(c, n):
    low, high = wilson_interval(c, n)
    expected = wilson_by_hand(c, n)
    assert low == pytest.approx(expected[0], abs=1e-9) and high == pytest.approx(expected[1], abs=1e-9)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_pass1_at_zero_of_four_has_a_real_interval():
    # One sample per problem, 0/4 correct: a normal approximation gives [0, 0]; Wilson gives [0, 0.49].
    m = config_metrics([_record(f"p{i}", 0, False) for i in range(4)], aggregate=None)
    assert m["pass@1"]["mean"] == 0.0
    assert m["pass@1"]["ci95"] == [pytest.approx(0.0, abs=1e-12), pytest.approx(wilson_by_hand(0, 4)[1])]
    assert m["pass@1"]["ci_method"] == "wilson"
    m = config_metrics([_record(f"p{i}", 0, True) for i in range(4)], aggregate=None)
    assert m["pass@1"]["ci95"][0] == pytest.approx(wilson_by_hand(4, 4)[0]) and m["pass@1"]["ci95"][1] == pytest.approx(1.0)


def test_pass1_with_several_samples_is_a_seeded_bca_bootstrap_over_problems():
    outcomes = {f"p{i}": [j < i % 4 for j in range(4)] for i in range(40)}  # accuracies 0, .25, .5, .75 repeating
    result = pass1_interval(outcomes, seed=1)
    assert result["ci_method"] == "bca" and result["mean"] == pytest.approx(0.375)
    low, high = result["ci95"]
    assert 0.0 <= low < 0.375 < high <= 1.0
    # The normal interval over problems is close to the bootstrap's at n = 40.
    sd = statistics.stdev([i % 4 / 4 for i in range(40)])
    assert low == pytest.approx(0.375 - Z95 * sd / math.sqrt(40), abs=0.02)
    assert pass1_interval(outcomes, seed=1) == result  # seeded: reruns agree


def test_pass1_when_every_problem_has_the_same_accuracy():
    # BCa is undefined (nothing varies); the interval falls back to Wilson over problems, and says so.
    result = pass1_interval({f"p{i}": [False, False] for i in range(5)})
    assert result["ci_method"] == "wilson-equal"
    assert result["ci95"] == [pytest.approx(0.0, abs=1e-12), pytest.approx(wilson_by_hand(0, 5)[1])]
    one = pass1_interval({"only": [True, False, True, True]})  # one problem: its own samples
    assert one["ci_method"] == "wilson-equal" and one["ci95"] == [pytest.approx(x) for x in wilson_by_hand(3, 4)]
    assert "same accuracy" in METHOD_TEXT["wilson-equal"]


def test_paired_bootstrap_constant_difference_has_no_interval():
    result = paired_bootstrap({"a": 1.0, "b": 0.5}, {"a": 0.5, "b": 0.0, "c": 1.0})
    assert result["delta"] == pytest.approx(0.5)
    assert all(math.isnan(x) for x in result["ci95"]) and result["ci_method"] == "undefined-equal"
    assert result["n_problems"] == 2  # only problems both hold


def test_paired_bootstrap_is_seeded_bca():
    treatment = {str(i): float(i % 3 == 0) for i in range(30)}
    baseline = {str(i): float(i % 5 == 0) for i in range(30)}
    result = paired_bootstrap(treatment, baseline, seed=3)
    assert result["ci_method"] == "bca" and result["ci95"][0] < result["delta"] < result["ci95"][1]
    assert paired_bootstrap(treatment, baseline, seed=3) == result


def test_paired_bootstrap_interval_covers_the_normal_interval():
    # 200 problems, difference +1 on 60 of them, 0 elsewhere: delta 0.3, sd ~0.4594.
    treatment = {str(i): 1.0 if i < 60 else 0.0 for i in range(200)}
    baseline = {str(i): 0.0 for i in range(200)}
    result = paired_bootstrap(treatment, baseline, seed=0)
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
    assert m["truncated"] == 0.0 and m["n_truncated"] == 0
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


def _grid_summary(means, lows):
    configs = {"baseline": {"pass@1": {"mean": 0.5}}}
    paired = {}
    for name, mean in means.items():
        configs[name] = {"pass@1": {"mean": mean}}
        paired[name] = {"delta_pass@1": mean - 0.5, "ci95": [lows[name], mean - 0.5 + 0.1]}
    return {"configs": configs, "paired": paired, "baseline": "baseline"}


def test_best_cell_only_when_the_data_can_tell():
    from tip_decode.harness.grid import best_cell

    cells = ["a", "b", "c"]
    # A unique top whose paired interval lies above zero is named.
    name, reason = best_cell(_grid_summary({"a": 0.6, "b": 0.7, "c": 0.55}, {"a": -0.1, "b": 0.02, "c": -0.2}), cells)
    assert name == "b" and "lies above zero" in reason
    # The top cell's interval includes zero: no best cell, even though its mean is highest.
    name, reason = best_cell(_grid_summary({"a": 0.6, "b": 0.7, "c": 0.55}, {"a": -0.1, "b": -0.01, "c": -0.2}), cells)
    assert name is None and "no cell is distinguishable from the baseline" in reason
    # ... and when a lower cell's interval lies above zero, that is said too.
    name, reason = best_cell(_grid_summary({"a": 0.6, "b": 0.7, "c": 0.55}, {"a": 0.01, "b": -0.01, "c": -0.2}), cells)
    assert name is None and "the intervals of a lie above zero" in reason
    # Ties.
    name, reason = best_cell(_grid_summary({"a": 0.7, "b": 0.7, "c": 0.55}, {"a": 0.1, "b": 0.1, "c": 0.0}), cells)
    assert name is None and "2 cells tie" in reason
    name, reason = best_cell(_grid_summary({"a": 0.5, "b": 0.5, "c": 0.5}, {"a": 0.0, "b": 0.0, "c": 0.0}), cells)
    assert name is None and "every cell has the same Pass@1" in reason
