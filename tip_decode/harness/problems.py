"""Problems and data sets: the `Problem` record, named Hub data sets, and local files.

Named data sets are loaded with `datasets` from the Hugging Face Hub; any JSONL / JSON / CSV file
goes through `load_file` with the field names the user gives. Both produce `Problem` records, which
is all the rest of the harness sees, so callers (the demo, tests) can also build problems directly.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tip_decode.grading import ANSWER_KINDS, CHOICE_LETTERS, extract_answer
from tip_decode.harness.jsonl import iter_jsonl
from tip_decode.harness.preflight import InputError

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
        raise InputError(f"unknown data set {name!r} (known: {', '.join(DATASETS)}; or pass a .jsonl/.json/.csv file)")
    spec = DATASETS[name]
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - a core dependency
        raise ImportError('loading named data sets needs `datasets`: pip install "tip-decode"') from err
    from tip_decode.harness.hub import HubUnavailable, check_hub_source

    try:
        check_hub_source(spec.path, "data set", "dataset", label="it")  # seconds, not a minute of retries
    except HubUnavailable as err:
        raise RuntimeError(f"cannot load data set {name!r} ({spec.path}): {err}") from None
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


def _read_rows(path: Path) -> list[tuple[str, Any]]:
    """(where, row) for every row of a data file; `where` names the row the way an editor finds it."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [(f"line {number}", row) for number, row in iter_jsonl(path)]
    if suffix not in (".json", ".csv"):
        raise ValueError(f"`path` has to end in .jsonl, .json or .csv, but is {str(path)!r}")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            if suffix == ".csv":
                # Line numbers of a CSV file: the header is line 1 (quoted newlines aside).
                return [(f"line {index + 2}", row) for index, row in enumerate(csv.DictReader(handle))]
            data = json.load(handle)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if isinstance(data, dict):
        # {"data": [...]} or {"rows": [...]} style wrappers.
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ValueError(f"{path}: expected a list of rows or an object holding one list")
        data = lists[0]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of rows, got {type(data).__name__}")
    return [(f"item {index}", row) for index, row in enumerate(data)]


def _text_field(path: Path, where: str, row: dict[str, Any], name: str) -> str:
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{path} {where}: field {name!r} has to be text or a number, but is {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} {where}: field {name!r} is {value}, not text (a missing value written as NaN?); write it as text, or leave the row out")
    text = str(value)
    if not text.strip():
        raise ValueError(f"{path} {where}: field {name!r} is empty")
    return text


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _choices(path: Path, where: str, raw: Any, name: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"{path} {where}: field {name!r} has to be a list of options (a JSON list in a text field), but is {raw[:60]!r}") from None
    if not isinstance(raw, list) or not all(isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in raw):
        raise ValueError(f"{path} {where}: field {name!r} has to be a list of options, but is {_kind(raw)}")
    if any(isinstance(c, float) and not math.isfinite(c) for c in raw):
        raise ValueError(
            f"{path} {where}: field {name!r} lists {next(c for c in raw if isinstance(c, float) and not math.isfinite(c))}, not an option (a missing value?)"
        )
    if not 2 <= len(raw) <= len(CHOICE_LETTERS):
        raise ValueError(f"{path} {where}: field {name!r} has to hold 2 to {len(CHOICE_LETTERS)} options, but holds {len(raw)}")
    return tuple(str(c).strip() for c in raw)


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
    reduced to N. For "choice", `choices_field` names a list of options (shown in file order; required)
    and the answer is either the correct letter or the text of the correct option. Rows without an id
    field get their 0-based row number as id. Errors name the file and the line (or item).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"data file {str(path)!r} is a folder")
    if not path.is_file():
        raise InputError(f"no such file: {str(path)!r} (the data file does not exist)")
    if answer_kind not in ANSWER_KINDS:
        raise ValueError(f"`answer_kind` has to be one of {ANSWER_KINDS}, but is {answer_kind!r}")
    if answer_kind == "choice" and choices_field is None:
        raise InputError("answer kind 'choice' needs the field holding each problem's options (`choices_field`, --choices-field)")
    problems = []
    seen: dict[str, str] = {}
    for index, (where, row) in enumerate(_read_rows(path)):
        if not isinstance(row, dict):
            raise ValueError(f"{path} {where}: expected an object with named fields, got {_kind(row)}")
        for field_name in (question_field, answer_field, id_field, choices_field):
            if field_name is not None and field_name not in row:
                known = ", ".join(sorted(row)) or "none"
                raise ValueError(f"{path} {where}: no field {field_name!r} (fields: {known})")
        question = _text_field(path, where, row, question_field)
        answer = _text_field(path, where, row, answer_field).strip()
        if answer_kind == "number" and "####" in answer:
            try:
                answer = gsm8k_reference(answer)
            except ValueError as err:
                raise ValueError(f"{path} {where}: {err}") from None
        choices = None
        if choices_field is not None:
            choices = _choices(path, where, row[choices_field], choices_field)
            if answer in choices:
                answer = CHOICE_LETTERS[choices.index(answer)]
            elif answer_kind == "choice" and answer.upper() not in CHOICE_LETTERS[: len(choices)]:
                raise ValueError(
                    f"{path} {where}: answer {answer!r} is neither one of the {len(choices)} options nor a letter "
                    f"{CHOICE_LETTERS[0]}-{CHOICE_LETTERS[len(choices) - 1]}"
                )
            elif answer_kind == "choice":
                answer = answer.upper()
        problem_id = _text_field(path, where, row, id_field).strip() if id_field is not None else str(index)
        if problem_id in seen:
            raise ValueError(f"{path} {where}: duplicate problem id {problem_id!r} (also at {seen[problem_id]}); ids key records and resume")
        seen[problem_id] = where
        problems.append(Problem(id=problem_id, question=question, answer=answer, answer_kind=answer_kind, choices=choices))
        if limit is not None and len(problems) >= limit:
            break
    return problems


def load_problems(source: str, limit: int | None = None, **file_options: Any) -> list[Problem]:
    """A named data set (`DATASETS`) or a file path; `file_options` go to `load_file`."""
    if source in DATASETS:
        return load_named(source, limit)
    if Path(source).suffix.lower() in (".jsonl", ".json", ".csv"):
        return load_file(source, limit=limit, **file_options)
    raise InputError(f"unknown data set {source!r} (known: {', '.join(DATASETS)}; or pass a .jsonl/.json/.csv file)")
