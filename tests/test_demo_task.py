"""The step-search task: problems have exactly one answer, traces follow the rules, switches are blind."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tip_decode.demo.task import (
    MODULUS,
    SWITCH_WORDS,
    THINK_END,
    TaskSettings,
    check_trace,
    cycle_length,
    make_problems,
    parse_answer,
    split_of,
    steps_to_goal,
    write_trace,
)


def brute_force_answers(problem):
    """Every candidate whose walk meets the goal within MODULUS steps (independent of the generator)."""
    hits = []
    for step in problem.candidates:
        if any((problem.start + k * step) % MODULUS == problem.goal for k in range(1, MODULUS + 1)):
            hits.append(step)
    return hits


def test_every_problem_has_exactly_one_checkable_answer():
    settings = TaskSettings()
    for problem in make_problems(300):
        assert brute_force_answers(problem) == [problem.answer]
        needed = problem.steps_to_goal(problem.answer)
        assert settings.min_steps <= needed <= settings.max_steps
        assert len(set(problem.candidates)) == settings.candidates
        assert split_of(problem.start, problem.goal) == "test"


def test_splits_do_not_share_start_goal_pairs():
    train = {(p.start, p.goal) for p in make_problems(500, seed=1, split="train")}
    test = {(p.start, p.goal) for p in make_problems(500, seed=1, split="test")}
    assert train and test and not train & test


def test_problems_are_reproducible_from_the_seed():
    assert make_problems(20, seed=7) == make_problems(20, seed=7)
    assert make_problems(20, seed=7) != make_problems(20, seed=8)


def test_traces_are_valid_and_shaped_like_reasoning():
    rng = random.Random(0)
    switches = 0
    for problem in make_problems(300):
        words = write_trace(problem, rng)
        assert check_trace(problem, words) == []
        end = words.index(THINK_END)
        assert words[end + 1 :] == ["\\boxed{", str(problem.answer), "}", "<|end|>"]
        assert parse_answer(" ".join(words)) == problem.answer
        switches += sum(w in SWITCH_WORDS for w in words[:end])
    assert switches / 300 > 1.0  # the writer really switches, more than once per trace on average


def test_check_trace_catches_a_wrong_step_and_a_wrong_answer():
    problem = make_problems(1)[0]
    words = write_trace(problem, random.Random(3))
    broken = list(words)
    broken[2] = str((int(broken[2]) + 1) % MODULUS)
    assert check_trace(problem, broken)
    wrong = list(words)
    wrong[wrong.index(THINK_END) + 2] = str(next(d for d in problem.candidates if d != problem.answer))
    assert check_trace(problem, wrong)


def test_switch_hazard_does_not_depend_on_whether_the_walk_is_promising():
    """After a step that is neither the goal nor the start, the writer leaves at the same rate on
    the promising walk and on dead ends (the property that keeps the TIP comparison honest)."""
    settings = TaskSettings()
    rng = random.Random(11)
    left = Counter()
    stayed = Counter()
    for problem in make_problems(1500, seed=5):
        words = write_trace(problem, rng, settings)
        end = words.index(THINK_END)
        step = None
        for i in range(end):
            word = words[i]
            if word.startswith("+"):
                step = int(word[1:])
                continue
            if i == 0 or not words[i - 1].startswith("+") or word in (str(problem.start), str(problem.goal)):
                continue
            kind = "promising" if step == problem.answer else "dead end"
            nxt = words[i + 1]
            (left if nxt in SWITCH_WORDS else stayed)[kind] += 1
    rates = {k: left[k] / (left[k] + stayed[k]) for k in ("promising", "dead end")}
    for rate in rates.values():
        assert rate == pytest.approx(settings.hazard, abs=0.02)


def test_dead_ends_cycle_and_the_answer_does_not():
    problem = make_problems(1, seed=3)[0]
    for step in problem.candidates:
        if step == problem.answer:
            assert steps_to_goal(problem.start, problem.goal, step) is not None
        else:
            assert steps_to_goal(problem.start, problem.goal, step) is None
            assert cycle_length(step) < MODULUS


@pytest.mark.parametrize(
    "kwargs",
    [{"candidates": 1}, {"min_steps": 0}, {"min_steps": 9, "max_steps": 4}, {"hazard": 1.0}, {"notice": 0.0}],
)
def test_bad_settings_are_rejected_with_their_name(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        TaskSettings(**kwargs)


def test_bad_counts_and_splits_are_rejected():
    with pytest.raises(ValueError, match="count"):
        make_problems(-1)
    with pytest.raises(ValueError, match="split"):
        make_problems(1, split="dev")
