"""Problems and data sets: the `Problem` record, named Hub data sets, and local files.

Named data sets are loaded with `datasets` from the Hugging Face Hub; any JSONL / JSON / CSV file
goes through `load_file` with the field names the user gives. Both produce `Problem` records, which
is all the rest of the harness sees, so callers (the demo, tests) can also build problems directly.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tip_decode.grading import ANSWER_KINDS, CHOICE_LETTERS, extract_answer

logger = logging.getLogger(__name__)

#: Seed of the GPQA option shuffle: fixed so that every run (and every user) sees the same order.
GPQA_SHUFFLE_SEED = 0


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    Args:
        id: unique identifier within the data set (records and resume are keyed by it).
        question: the problem text shown to the model.
        answer: the reference answer (for "choice", the correct letter).
        answer_kind: "math", "number" or "choice" (see `tip_decode.grading`).
        choices: the options of a multiple-choice problem, in the order they are shown (A, B, ...).
    """

    id: str
    question: str
    answer: str
    answer_kind: str = "math"
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("id", "question", "answer"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"`{name}` has to be a string, but is {type(value).__name__} ({value!r})")
        if not self.id:
            raise ValueError("`id` has to be a non-empty string, but is ''")
        if self.answer_kind not in ANSWER_KINDS:
            raise ValueError(f"`answer_kind` has to be one of {ANSWER_KINDS}, but is {self.answer_kind!r}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(str(c) for c in self.choices))
            if not 2 <= len(self.choices) <= len(CHOICE_LETTERS):
                raise ValueError(f"`choices` has to hold 2 to {len(CHOICE_LETTERS)} options, but has {len(self.choices)}")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named data set lives on the Hub and how its rows become problems."""

    name: str
    path: str
    config: str | None
    split: str
    convert: Callable[[Mapping[str, Any], int], Problem | None]


def _math_row(row: Mapping[str, Any], index: int) -> Problem:
    return Problem(id=str(row.get("unique_id") or row.get("id") or index), question=row["problem"], answer=str(row["answer"]))


def _math_hard_row(row: Mapping[str, Any], index: int) -> Problem | None:
    return _math_row(row, index) if int(row.get("level", 0)) == 5 else None


def _aime_row(row: Mapping[str, Any], index: int) -> Problem:
    question = row.get("problem") or row.get("question") or row.get("Problem")
    answer = row.get("answer") if row.get("answer") is not None else row.get("Answer")
    return Problem(id=str(row.get("id", row.get("ID", index))), question=str(question), answer=str(answer))


def gsm8k_reference(answer: str) -> str:
    """The final number of a GSM8K worked solution (the text after `####`)."""
    number = extract_answer(answer, "number")
    if number is None:
        raise ValueError(f"`answer` has no final number: {answer[-80:]!r}")
    return number


def _gsm8k_row(row: Mapping[str, Any], index: int) -> Problem:
    return Problem(id=str(index), question=row["question"], answer=gsm8k_reference(row["answer"]), answer_kind="number")


def shuffle_choices(correct: str, incorrect: Sequence[str], key: str, seed: int = GPQA_SHUFFLE_SEED) -> tuple[tuple[str, ...], str]:
    """Options in a fixed pseudo-random order (seeded by `seed` and the problem `key`), and the correct letter."""
    options = [correct, *incorrect]
    order = list(range(len(options)))
    random.Random(f"{seed}:{key}").shuffle(order)
    shuffled = tuple(options[i].strip() for i in order)
    return shuffled, CHOICE_LETTERS[order.index(0)]


def _gpqa_row(row: Mapping[str, Any], index: int) -> Problem:
    key = str(row.get("Record ID") or index)
    incorrect = [row[f"Incorrect Answer {i}"] for i in (1, 2, 3)]
    choices, letter = shuffle_choices(row["Correct Answer"], incorrect, key)
    return Problem(id=key, question=row["Question"].strip(), answer=letter, answer_kind="choice", choices=choices)


DATASETS: dict[str, DatasetSpec] = {
    "math500": DatasetSpec("math500", "HuggingFaceH4/MATH-500", None, "test", _math_row),
    "math500-hard": DatasetSpec("math500-hard", "HuggingFaceH4/MATH-500", None, "test", _math_hard_row),
    "aime24": DatasetSpec("aime24", "HuggingFaceH4/aime_2024", None, "train", _aime_row),
    "aime25": DatasetSpec("aime25", "math-ai/aime25", None, "test", _aime_row),
    "gpqa-diamond": DatasetSpec("gpqa-diamond", "Idavidrein/gpqa", "gpqa_diamond", "train", _gpqa_row),
    "gsm8k": DatasetSpec("gsm8k", "openai/gsm8k", "main", "test", _gsm8k_row),
}


def _limit(problems: Iterable[Problem], limit: int | None) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    for problem in problems:
        if problem.id in seen:
            raise ValueError(f"duplicate problem id {problem.id!r}")
        seen.add(problem.id)
        out.append(problem)
        if limit is not None and len(out) >= limit:
            break
    return out


def load_named(name: str, limit: int | None = None) -> list[Problem]:
    """Load a named data set from the Hugging Face Hub (see `DATASETS`).

    Raises `ValueError` for an unknown name and `RuntimeError` (one line, naming the Hub path) when
    the Hub cannot be reached or the data set is gated.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r} (known: {', '.join(DATASETS)}; or pass a .jsonl/.json/.csv file)")
    spec = DATASETS[name]
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - a core dependency
        raise ImportError('loading named data sets needs `datasets`: pip install "tip-decode"') from err
    try:
        rows = datasets.load_dataset(spec.path, spec.config, split=spec.split)
    except Exception as err:  # connection errors, gated repos, missing configs all end here
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RuntimeError(
            f"cannot load data set {name!r} ({spec.path}) from the Hugging Face Hub: {first} "
            "(check the network / `huggingface-cli login`, or pass a local file)"
        ) from None
    converted = (spec.convert(row, index) for index, row in enumerate(rows))
    return _limit((p for p in converted if p is not None), limit)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix == ".jsonl":
            rows = []
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from None
            return rows
        if suffix == ".json":
            data = json.load(handle)
            if isinstance(data, dict):
                # {"data": [...]} or {"rows": [...]} style wrappers.
                lists = [v for v in data.values() if isinstance(v, list)]
                if len(lists) != 1:
                    raise ValueError(f"{path}: expected a list of rows or an object holding one list")
                data = lists[0]
            return list(data)
        if suffix == ".csv":
            return list(csv.DictReader(handle))
    raise ValueError(f"`path` has to end in .jsonl, .json or .csv, but is {str(path)!r}")


def load_file(
    path: str | Path,
    question_field: str = "question",
    answer_field: str = "answer",
    answer_kind: str = "math",
    id_field: str | None = None,
    choices_field: str | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """Load problems from a JSONL / JSON / CSV file.

    For answer kind "number" an answer that is a worked solution ending in `#### N` (GSM8K) is
    reduced to N. For "choice", `choices_field` names a list of options (shown in file order) and the
    answer is either the correct letter or the text of the correct option. Rows without an id field
    get their 0-based row number as id.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file not found: {str(path)!r}")
    if answer_kind not in ANSWER_KINDS:
        raise ValueError(f"`answer_kind` has to be one of {ANSWER_KINDS}, but is {answer_kind!r}")
    rows = _read_rows(path)
    problems = []
    for index, row in enumerate(rows):
        for field_name in (question_field, answer_field, id_field, choices_field):
            if field_name is not None and field_name not in row:
                known = ", ".join(sorted(row)) if isinstance(row, dict) else type(row).__name__
                raise ValueError(f"{path}: row {index} has no field {field_name!r} (fields: {known})")
        answer = str(row[answer_field])
        if answer_kind == "number" and "####" in answer:
            answer = gsm8k_reference(answer)
        choices = None
        if choices_field is not None:
            raw = row[choices_field]
            choices = tuple(json.loads(raw) if isinstance(raw, str) else raw)
            if answer.strip() in choices:
                answer = CHOICE_LETTERS[choices.index(answer.strip())]
        problem_id = str(row[id_field]) if id_field is not None else str(index)
        problems.append(Problem(id=problem_id, question=str(row[question_field]), answer=answer, answer_kind=answer_kind, choices=choices))
        if limit is not None and len(problems) >= limit:
            break
    return _limit(problems, None)


def load_problems(source: str, limit: int | None = None, **file_options: Any) -> list[Problem]:
    """A named data set (`DATASETS`) or a file path; `file_options` go to `load_file`."""
    if source in DATASETS:
        return load_named(source, limit)
    if Path(source).suffix.lower() in (".jsonl", ".json", ".csv"):
        return load_file(source, limit=limit, **file_options)
    raise ValueError(f"unknown data set {source!r} (known: {', '.join(DATASETS)}; or pass a .jsonl/.json/.csv file)")
