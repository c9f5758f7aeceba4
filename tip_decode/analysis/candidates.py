"""Candidate answers stated inside one thought (a `\\boxed{}`, "the answer is ...", a final number).

Extraction is ours; grading is `tip_decode.grading`'s, so that "correct" means the same here as in
the comparison harness.
"""

from __future__ import annotations

import re

from tip_decode.grading import ANSWER_KINDS, extract_answer, extract_boxed

#: Which kinds of candidate `extract_candidates` looks for, in the order they are reported.
CANDIDATE_SOURCES = ("boxed", "phrase", "final_number")

_PHRASE = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*(?:\$\s*)?(?P<ans>[^\n$]+?)\s*(?:\$|\n|\.\s|\.?$)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
# A final number counts only when the thought's last line states it as a result ("= 18", "is 18",
# "get 18"): the last number of an arbitrary line ("step 2") would make almost every thought
# "correct" against small integer answers.
_RESULT_NUMBER = re.compile(
    r"(?:=|\bis\b|\bget\b|\bgives\b|\bequals\b|\bbe\b)\s*\$?\s*(?P<num>-?\d[\d,]*(?:\.\d+)?(?:/\d+)?)\s*\$?\s*[.!]?\s*$",
    re.IGNORECASE,
)


def _all_boxed(text: str) -> list[str]:
    """Content of every `\\boxed{}` in order (extract_boxed reads the last one of each slice)."""
    starts = [m.start() for m in re.finditer(r"\\boxed(?![A-Za-z])|\\fbox(?![A-Za-z])", text)]
    out: list[str] = []
    for k, start in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(text)
        content = extract_boxed(text[start:stop])
        if content is None and stop != len(text):
            # A box whose braces nest past the next box start: read it against the whole tail.
            content = extract_boxed(text[start:]) if text[start:].count("\\boxed") == 1 else None
        if content:
            out.append(content)
    return out


def extract_candidates(text: str, kind: str = "math", sources: tuple[str, ...] = CANDIDATE_SOURCES) -> tuple[str, ...]:
    """Candidate answers stated in `text` (one thought), without duplicates, in order of `sources`.

    - "boxed": the content of every `\\boxed{...}`;
    - "phrase": every "the answer is X" / "answer: X" phrase;
    - "final_number": the number that the thought's last non-empty line states as a result
      ("= 18", "is 18", "get 18" at the end of the line). For kind "choice", the letter that
      `tip_decode.grading.extract_answer(text, "choice")` finds instead.
    """
    if kind not in ANSWER_KINDS:
        raise ValueError(f"`answer_kind` has to be one of {', '.join(map(repr, ANSWER_KINDS))}, but is {kind!r}")
    unknown = [s for s in sources if s not in CANDIDATE_SOURCES]
    if unknown:
        raise ValueError(f"`candidate_sources` has an unknown source {unknown[0]!r} (known: {', '.join(CANDIDATE_SOURCES)})")
    found: list[str] = []
    if "boxed" in sources:
        found.extend(_all_boxed(text))
    if "phrase" in sources:
        for match in _PHRASE.finditer(text):
            answer = match.group("ans").strip().strip("$").strip().rstrip(".").strip()
            if answer:
                found.append(answer)
    if "final_number" in sources:
        if kind == "choice":
            letter = extract_answer(text, "choice")
            if letter:
                found.append(letter)
        else:
            lines = [line for line in text.strip().splitlines() if line.strip()]
            if lines:
                match = _RESULT_NUMBER.search(lines[-1])
                if match:
                    found.append(match.group("num").replace(",", ""))
    unique: list[str] = []
    for item in found:
        if item not in unique:
            unique.append(item)
    return tuple(unique)
