"""Crash-safe JSON-lines record files: one whole line per record, flushed and fsynced.

A writer appends each record as a single `os.write` of one complete line to a file opened with
O_APPEND, then fsyncs. A process killed at any moment therefore leaves complete lines plus, at
worst, one torn last line (a write cut short). Opening a file for resume drops such a torn tail
(it holds no finished record), so a rerun never sees half a record and never writes one twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tip_decode.harness.jsonl import iter_jsonl

logger = logging.getLogger(__name__)


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The complete records of `path` one at a time (none when it does not exist).

    A torn last line (a write cut short by a kill) is skipped; any other line that is not a JSON
    object is an error naming the file and line (`tip_decode.harness.jsonl.JSONLError`), because
    it can only come from a hand-edited or damaged file, and resuming over it would hide that.
    """
    path = Path(path)
    if not path.exists():
        return
    for _, record in iter_jsonl(path, torn_tail=True):
        yield record


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of `path` (see `iter_records`)."""
    return list(iter_records(path))


def repair_tail(path: Path) -> int:
    """Truncate `path` after its last newline (drop a torn last line); returns bytes dropped."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as handle:
        # Scan back in blocks for the last newline; records are small next to a block.
        position = size
        block = 1 << 16
        while position > 0:
            start = max(0, position - block)
            handle.seek(start)
            chunk = handle.read(position - start)
            found = chunk.rfind(b"\n")
            if found != -1:
                keep = start + found + 1
                break
            position = start
        else:
            keep = 0
        if keep < size:
            handle.truncate(keep)
            os.fsync(handle.fileno())
            logger.warning("%s: dropped a torn last line (%d bytes) before resuming", path, size - keep)
        return size - keep


class RecordWriter:
    """Append records to a JSON-lines file, one durable line per record.

    Args:
        path: the file; created if absent. A torn last line left by a killed run is removed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # short writes are rare (signals, full disks) but legal
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
