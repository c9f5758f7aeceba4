"""Answer extraction and grading against the real MATH-500 and GSM8K reference files."""

from __future__ import annotations

import json
import threading

import pytest

from tip_decode import grading
from tip_decode.grading import answers_equal, extract_answer, extract_boxed, grade, parse_number


def _rows(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def math500(data_dir):
    return _rows(data_dir / "math500.jsonl")


@pytest.fixture(scope="module")
def gsm8k(data_dir):
    return _rows(data_dir / "gsm8k_test.jsonl")


def test_every_math500_solution_grades_equal_to_its_answer(math500):
    assert len(math500) == 500
    failures = []
    for row in math500:
        pred = extract_answer(row["solution"], "math")
        if not answers_equal(pred, row["answer"], "math"):
            failures.append((row["unique_id"], pred, row["answer"]))
    assert failures == []


def test_math_verify_path_alone_accepts_every_math500_answer(math500):
    # answers_equal short-cuts on equal normalised strings; this checks the math-verify path itself.
    failures = [r["unique_id"] for r in math500 if not grading._math_verify_equal(extract_boxed(r["solution"]), r["answer"])]
    assert failures == []


def test_math500_answers_differ_from_other_rows_answers(math500):
    # A grader that says "equal" to everything would pass the test above; neighbours must differ.
    # math-verify deliberately reads "x=5" as the value 5, so such a pair counts as equal.
    equal_pairs = []
    for row, other in zip(math500[:80], math500[1:81]):
        if answers_equal(other["answer"], row["answer"], "math") and other["answer"] != row["answer"]:
            equal_pairs.append((other["answer"], row["answer"]))
    assert equal_pairs == [("x=5", "5")]
    assert not answers_equal("3", "\\left( 3, \\frac{\\pi}{2} \\right)", "math")


def test_math500_integer_answers_differ_from_n_plus_one(math500):
    integers = [r["answer"] for r in math500 if r["answer"].isdigit()]
    assert len(integers) > 200
    assert not [a for a in integers if answers_equal(str(int(a) + 1), a, "math")]


def test_every_gsm8k_reference_equals_itself_and_not_n_plus_one(gsm8k):
    assert len(gsm8k) == 1319
    for row in gsm8k:
        reference = row["answer"].split("####")[-1].strip()
        pred = extract_answer(row["answer"], "number")
        assert answers_equal(pred, reference, "number"), (pred, reference)
        plus_one = parse_number(reference) + 1
        assert not answers_equal(pred, str(plus_one), "number"), (pred, reference)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $x=\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{1} then \boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{a^{2^{3}}} end", r"a^{2^{3}}"),
        (r"answer \boxed 5$", "5"),
        (r"\fbox{7}", "7"),
        (r"cut off \boxed{\frac{1}{", None),
        ("no box here", None),
        (r"\boxedfoo{3}", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        (r"Thus \boxed{42}.", "math", "42"),
        ("So the answer is $\\frac{3}{4}$.", "math", "\\frac{3}{4}"),
        ("Final answer: 12", "math", "12"),
        ("nothing", "math", None),
        ("She pays $1,200.\n#### 1,200", "number", "1200"),
        (r"so \boxed{\$18.00}", "number", "18.00"),
        ("The answer is 7 apples.", "number", "7"),
        ("It costs 3 then 5 dollars", "number", "5"),
        ("no digits", "number", None),
        ("The answer is (C).", "choice", "C"),
        (r"\boxed{B}", "choice", "B"),
        (r"\boxed{\text{(D)}}", "choice", "D"),
        ("Answer: a", "choice", "A"),
        ("I think it is option\n(B)\n", "choice", "B"),
        ("no letter here", "choice", None),
    ],
)
def test_extract_answer(text, kind, expected):
    assert extract_answer(text, kind) == expected


@pytest.mark.parametrize(
    ("pred", "reference", "kind", "expected"),
    [
        ("\\frac12", "0.5", "math", True),
        ("\\dfrac{1}{2}", "\\frac{1}{2}", "math", True),
        ("x^2+2x+1", "(x+1)^2", "math", True),
        ("3", "4", "math", False),
        (None, "4", "math", False),
        ("18.00", "18", "number", True),
        ("1/2", "0.5", "number", True),
        ("19", "18", "number", False),
        ("abc", "18", "number", False),
        ("c", "C", "choice", True),
        ("(B)", "B", "choice", True),
        ("A", "B", "choice", False),
    ],
)
def test_answers_equal(pred, reference, kind, expected):
    assert answers_equal(pred, reference, kind) is expected


def test_math_verify_works_off_the_main_thread():
    # signal.alarm cannot be installed in a thread; grading there must still work.
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("ok", answers_equal("\\frac{2}{4}", "0.5", "math")))
    thread.start()
    thread.join(60)
    assert result == {"ok": True}


def test_grade_returns_pred_and_correct():
    assert grade("Work... \\boxed{10}", "10") == ("10", True)
    assert grade("Work... no answer", "10") == (None, False)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="`kind`.*'words'"):
        extract_answer("x", "words")
    with pytest.raises(TypeError, match="`text`"):
        extract_boxed(None)
    with pytest.raises(TypeError, match="`pred`"):
        answers_equal(3, "3", "number")
