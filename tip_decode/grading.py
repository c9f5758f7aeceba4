"""Answer extraction and grading for the harness and the analysis.

Three answer kinds cover the benchmarks the harness knows:

- ``"math"``: a LaTeX answer (MATH-500, AIME). The answer is the last ``\\boxed{}`` of the response
  (nested braces allowed), else a "the answer is ..." phrase; equality is decided by math-verify.
- ``"number"``: a single number (GSM8K). The answer is the ``#### N`` line, a boxed number, an
  "answer is N" phrase or, failing those, the last number in the text; equality is exact
  (rational arithmetic, so ``0.5`` equals ``1/2`` and ``18.00`` equals ``18``).
- ``"choice"``: a multiple-choice letter (GPQA). Equality is a case-insensitive letter match.

math-verify bounds its parsing and comparison time with ``signal.alarm``, which only works in the
main thread of the main interpreter. Elsewhere (threads, e.g. a server) it is called without a
timeout, because the alarm cannot be installed there.
"""

from __future__ import annotations

import logging
import re
import threading
from fractions import Fraction

logger = logging.getLogger(__name__)

ANSWER_KINDS = ("math", "number", "choice")
#: Seconds math-verify may spend parsing one answer and comparing two (main thread only).
MATH_VERIFY_TIMEOUT = 5
#: Letters accepted for multiple choice (GPQA has 4 options; up to 10 leaves room for MMLU-Pro-style sets).
CHOICE_LETTERS = "ABCDEFGHIJ"

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+"
_ANSWER_PHRASE = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*(?:\$\s*)?(?P<ans>.+?)(?:\$|\n|$)", re.IGNORECASE)


def _check_kind(kind: str) -> str:
    if kind not in ANSWER_KINDS:
        raise ValueError(f"`kind` has to be one of {', '.join(repr(k) for k in ANSWER_KINDS)}, but is {kind!r}")
    return kind


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"`{name}` has to be a string, but is {type(value).__name__}")


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in `text`, or None.

    Braces nest: ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``. The brace-less form ``\\boxed 5``
    gives ``5``. An unclosed box (a response cut off by the token limit) counts as no answer.

    Example:
        >>> extract_boxed(r"so $x = \\boxed{\\frac{1}{2}}$.")
        '\\\\frac{1}{2}'
    """
    _check_text("text", text)
    best = -1
    command = ""
    for name in _BOX_COMMANDS:
        start = text.rfind(name)
        while start != -1:
            # "\boxed" must not be the prefix of a longer command name.
            after = text[start + len(name) : start + len(name) + 1]
            if not after.isalpha():
                break
            start = text.rfind(name, 0, start)
        if start > best:
            best, command = start, name
    if best < 0:
        return None
    i = best + len(command)
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        # "\boxed 5": the argument is the next run of non-space characters up to "$".
        match = re.match(r"[^\s$]+", text[i:])
        return match.group(0) if match else None
    depth = 0
    j = i
    while j < len(text):
        char = text[j]
        if char == "\\":
            j += 2  # an escaped brace (\{ in a set) does not open or close a group
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
        j += 1
    return None


def _strip_answer(answer: str) -> str:
    answer = answer.strip()
    answer = answer.strip("$ ").strip()
    answer = answer.rstrip(".").strip()
    return answer


def _phrase_answer(text: str) -> str | None:
    matches = list(_ANSWER_PHRASE.finditer(text))
    if not matches:
        return None
    answer = _strip_answer(matches[-1].group("ans"))
    return answer or None


def _last_number(text: str) -> str | None:
    numbers = re.findall(_NUMBER, text)
    return numbers[-1] if numbers else None


def _choice_letter(text: str) -> str | None:
    letters = CHOICE_LETTERS
    box = extract_boxed(text)
    if box is not None:
        found = re.findall(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", box.replace("\\text", " "))
        if found:
            return found[-1].upper()
    patterns = (
        rf"answer\s*(?:is|:)?\s*(?:option\s*)?[\(\[]?\s*([{letters}])\s*[\)\]]?(?![A-Za-z])",
        rf"\(([{letters}])\)",
        rf"^\s*([{letters}])[\.\)]?\s*$",
    )
    for pattern in patterns:
        found = re.findall(pattern, text, flags=re.IGNORECASE | re.MULTILINE)
        if found:
            return found[-1].upper()
    return None


def extract_answer(text: str, kind: str = "math") -> str | None:
    """The final answer stated in `text` for answer kind `kind`, or None when there is none.

    Args:
        text: a model response or a reference solution.
        kind: "math" (last ``\\boxed{}``, else "the answer is ..."), "number" (``#### N``, a boxed
            number, "answer is N", else the last number) or "choice" (a letter A-J).

    Example:
        >>> extract_answer("She makes 9 * 2 = 18 dollars.\\n#### 18", "number")
        '18'
        >>> extract_answer("The answer is (C).", "choice")
        'C'
    """
    _check_text("text", text)
    _check_kind(kind)
    if kind == "choice":
        return _choice_letter(text)
    if kind == "math":
        boxed = extract_boxed(text)
        return boxed if boxed is not None else _phrase_answer(text)
    # number
    hashes = re.findall(r"####\s*(" + _NUMBER + ")", text)
    if hashes:
        return _clean_number(hashes[-1])
    for candidate in (extract_boxed(text), _phrase_answer(text)):
        if candidate:
            number = _last_number(candidate.replace("\\!", "").replace("{,}", ","))
            if number is not None:
                return _clean_number(number)
    number = _last_number(text)
    return _clean_number(number) if number is not None else None


def _clean_number(number: str) -> str:
    return number.replace(",", "").rstrip(".")


def parse_number(text: str) -> Fraction | None:
    """`text` as an exact rational (commas, "$", "%" and LaTeX fractions tolerated), or None."""
    _check_text("text", text)
    cleaned = text.strip().strip("$").replace(",", "").replace("\\!", "").replace("{,}", "").strip()
    cleaned = re.sub(r"\\(?:text|mathrm)\{[^}]*\}", "", cleaned).strip().rstrip("%").strip()
    frac = re.fullmatch(r"(-?)\\d?frac\{(-?\d+)\}\{(-?\d+)\}", cleaned)
    try:
        if frac:
            value = Fraction(int(frac.group(2)), int(frac.group(3)))
            return -value if frac.group(1) else value
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def _math_verify_equal(pred: str, reference: str) -> bool:
    from math_verify import parse, verify

    # signal.alarm only works in the main thread; elsewhere run without a timeout rather than fail.
    in_main = threading.current_thread() is threading.main_thread()
    timeout = MATH_VERIFY_TIMEOUT if in_main else None
    # Wrapping in \boxed{} makes math-verify take the whole string as the answer instead of
    # searching for a sub-expression inside it.
    gold = parse(f"\\boxed{{{reference}}}", parsing_timeout=timeout)
    guess = parse(f"\\boxed{{{pred}}}", parsing_timeout=timeout)
    if not gold or not guess:
        return False
    return bool(verify(gold, guess, timeout_seconds=timeout))


def _normalise_text(answer: str) -> str:
    answer = re.sub(r"\\(?:left|right|displaystyle|,|;|!|\s)", "", answer)
    answer = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    answer = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", answer)
    return re.sub(r"\s+", "", answer).rstrip(".")


def answers_equal(pred: str | None, reference: str, kind: str = "math") -> bool:
    """Whether the extracted answer `pred` equals the reference answer `reference`.

    A missing prediction (None) is never equal. "math" first compares normalised strings (cheap,
    and catches text answers math-verify cannot parse), then asks math-verify; "number" compares
    exact rationals; "choice" compares letters case-insensitively.

    Example:
        >>> answers_equal("\\\\frac{1}{2}", "0.5", "math")
        True
        >>> answers_equal("18.00", "18", "number")
        True
    """
    _check_kind(kind)
    _check_text("reference", reference)
    if pred is None:
        return False
    _check_text("pred", pred)
    if kind == "choice":
        return pred.strip().strip("()").upper() == reference.strip().strip("()").upper()
    if kind == "number":
        a, b = parse_number(pred), parse_number(reference)
        return a is not None and b is not None and a == b
    if _normalise_text(pred) == _normalise_text(reference):
        return True
    try:
        return _math_verify_equal(pred, reference)
    except Exception as err:  # math-verify raises on some pathological input despite raise_on_error=False
        logger.debug("math-verify failed on %r vs %r: %s", pred, reference, err)
        return False


def grade(response: str, reference: str, kind: str = "math") -> tuple[str | None, bool]:
    """Extract the answer from `response` and grade it: returns ``(pred, correct)``."""
    pred = extract_answer(response, kind)
    return pred, answers_equal(pred, reference, kind)
