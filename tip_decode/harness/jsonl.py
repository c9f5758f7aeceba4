"""The one reader of JSON-lines files: data sets, harness records and `tip-decode analyze` input.

Every error names the file and the line (`responses.jsonl line 7: not valid JSON ...`), so a user can
open the file at the right place. Lines are read one at a time with a bound on their length: a line
longer than `max_line_bytes` is refused at once, before it is held in memory or parsed (a 50 MB line
once took 7.6 GB and minutes to analyse with no sign of progress). The bound is far above any real
record: a response of 100,000 tokens with its token ids is about 1 MB of JSON.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Longest line accepted (bytes, newline included). `TIP_DECODE_MAX_LINE_MB` raises it.
DEFAULT_MAX_LINE_BYTES = 8 * 2**20
_UTF8_BOM = b"\xef\xbb\xbf"


class JSONLError(ValueError):
    """A JSON-lines file that cannot be read as one JSON object per line; the message names file and line."""


def max_line_bytes() -> int:
    """The line-length bound: `TIP_DECODE_MAX_LINE_MB` (megabytes) when set, else 8 MiB."""
    text = os.environ.get("TIP_DECODE_MAX_LINE_MB")
    if not text:
        return DEFAULT_MAX_LINE_BYTES
    try:
        megabytes = float(text)
    except ValueError:
        raise JSONLError(f"TIP_DECODE_MAX_LINE_MB has to be a number of megabytes, but is {text!r}") from None
    if not megabytes > 0:
        raise JSONLError(f"TIP_DECODE_MAX_LINE_MB has to be positive, but is {text!r}")
    return int(megabytes * 2**20)


def iter_jsonl(path: str | Path, *, torn_tail: bool = False, limit: int | None = None, log_torn: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line number, object)` for every non-blank line of `path` (numbers count from 1).

    Args:
        path: the file.
        torn_tail: the file is a harness record file, written one whole line at a time: a last line
            without its newline is a write cut short by a kill and is skipped (with a warning) instead
            of parsed, exactly as `RecordWriter` drops it before resuming.
        limit: the line-length bound in bytes (default: `max_line_bytes()`).
        log_torn: log the skipped torn line (callers that report it themselves turn this off).

    Raises:
        JSONLError: the file cannot be opened, is not UTF-8, a line is not a JSON object, or a line is
            longer than the bound.
    """
    path = Path(path)
    bound = max_line_bytes() if limit is None else limit
    try:
        handle = path.open("rb")
    except IsADirectoryError:
        raise JSONLError(f"{path} is a folder, not a JSON-lines file") from None
    except OSError as err:
        raise JSONLError(f"cannot read {path}: {err.strerror or err}") from None
    with handle:
        number = 0
        while True:
            raw = handle.readline(bound + 1)
            if not raw:
                return
            number += 1
            if len(raw) > bound and not raw.endswith(b"\n"):
                raise JSONLError(
                    f"{path} line {number}: longer than {bound / 2**20:g} MiB; a record that long is refused "
                    "before it is read (set TIP_DECODE_MAX_LINE_MB to raise the bound)"
                )
            if number == 1 and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM) :]
            if not raw.strip():
                continue
            if torn_tail and not raw.endswith(b"\n"):
                if log_torn:
                    logger.warning("%s: ignoring a torn last line (%d bytes, a write cut short)", path, len(raw))
                return
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise JSONLError(f"{path} line {number}: not UTF-8 text; expected one JSON object per line") from None
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise JSONLError(f"{path} line {number}: not valid JSON ({err.msg} at column {err.colno}); expected one JSON object per line") from None
            if not isinstance(value, dict):
                raise JSONLError(f"{path} line {number}: expected a JSON object, got {_json_kind(value)}")
            yield number, value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(value), type(value).__name__)
