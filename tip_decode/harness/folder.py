"""A run folder belongs to one run: what identifies a run, the lock held while one writes, and the
health of its record files.

- **Identity.** run.json records everything that determines a record: the data (source and content
  hash), the prompt (system message, user template, the tokenizer's chat template), the model and
  the tokenizer's vocabulary, the backend, the sampling settings, the seed, and how switches are
  counted and thoughts judged. A rerun into the folder resumes only when every one of them matches
  (`check_identity`); otherwise it stops, before anything loads, with one line that names what
  differs and how to proceed. What may change between reruns: `--limit` and `--samples` (problems
  and samples are added, or fewer are reported), and new configurations. Each configuration keeps
  its settings under its name (`check_configs_unchanged`). Every record already in the folder must
  also have been made from the problem and the prompt the rerun would use (`check_records`).
- **Lock.** `RunLock` holds an exclusive lock on `.lock` in the folder while a run writes (compare,
  grid, demo, score): a second writer gets a one-line error instead of appending the same records.
- **Health.** `record_file_notes` says which record files are missing, empty or end in a torn line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tip_decode.harness.preflight import InputError, same_source

logger = logging.getLogger(__name__)

#: run.json fields that determine the records of a run, with how an error names each and the option
#: that sets it. A rerun resumes only when every one matches ("model" compared as a folder).
IDENTITY_KEYS: dict[str, tuple[str, str]] = {
    "data": ("data", "--data (and its --*-field / --answer-kind options)"),
    "system": ("system message", "--system"),
    "template": ("user-message template", "--template"),
    "model": ("model", "--model"),
    "tokenizer_fingerprint": ("tokenizer vocabulary", "--tokenizer"),
    "chat_template": ("tokenizer's chat template", "--tokenizer"),
    "backend": ("backend", "--backend"),
    "temperature": ("temperature", "--temperature"),
    "top_p": ("top-p", "--top-p"),
    "max_new_tokens": ("token limit", "--max-new-tokens"),
    "seed": ("seed", "--seed"),
    "switch_triggers": ("switch-trigger list", "--switch-triggers"),
    "switch_scope": ("switch scope", "--switch-scope"),
    "premature_threshold": ("premature threshold", "--premature-threshold"),
    "judge": ("thought judge", "the judge"),
}


class FolderBusy(RuntimeError):
    """Another process is writing into the run folder."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def data_identity(source: str, fields: Mapping[str, Any] | None = None, named: bool = False) -> dict[str, Any]:
    """What identifies a data set in run.json: a named one by its name, a file by its content
    (sha256; the path is kept for people, not compared), and the options that turn rows into problems."""
    if named:
        return {"name": source, **dict(fields or {})}
    return {"file": os.path.abspath(source), "sha256": file_sha256(source), **dict(fields or {})}


def _same_data(before: Any, now: Any) -> bool:
    if isinstance(before, dict) and isinstance(now, dict):
        ignore = {"file"}  # the same content under another path is the same data
        return {k: v for k, v in before.items() if k not in ignore} == {k: v for k, v in now.items() if k not in ignore}
    return before == now


#: data identity key -> the command-line option that sets it
_DATA_OPTIONS = {
    "question_field": "--question-field",
    "answer_field": "--answer-field",
    "id_field": "--id-field",
    "choices_field": "--choices-field",
    "answer_kind": "--answer-kind",
}


def _same_content(before: Any, now: Any) -> bool:
    """Both identities name the same data set or the same file content."""
    if not (isinstance(before, dict) and isinstance(now, dict)):
        return False
    if "name" in before or "name" in now:
        return before.get("name") == now.get("name")
    return before.get("sha256") == now.get("sha256")


def _show_option(value: Any) -> str:
    return "unset" if value is None else repr(value)


def _first_option_difference(before: Mapping[str, Any], now: Mapping[str, Any]) -> tuple[str, Any, Any]:
    for field in sorted(set(before) | set(now)):
        if field not in ("file", "sha256", "name") and before.get(field) != now.get(field):
            return field, before.get(field), now.get(field)
    return "options", None, None  # unreachable when _same_data said they differ


def _show(key: str, value: Any) -> str:
    if key == "data" and isinstance(value, dict):
        if "name" in value:
            return repr(value["name"])
        return f"{value.get('file')!r} (sha256 {str(value.get('sha256'))[:12]})"
    if key == "chat_template" and isinstance(value, str):
        return f"sha256 {value[:12]}"
    if value is None:
        return "the default" if key in ("template", "system") else "none"
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:57] + "...")
    return "none" if value is None else repr(value)


def check_identity(out_dir: Path, previous: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """`InputError` naming the first identity key (`IDENTITY_KEYS`) whose value in the folder's
    run.json (`previous`) differs from the new run's (`now`). Keys `now` lacks are not compared (the
    CLI checks before the tokenizer loads, then again with everything); a key the folder's run.json
    lacks was not recorded by the version that wrote it, so that run cannot be resumed safely."""
    for key, (what, option) in IDENTITY_KEYS.items():
        if key not in now:
            continue
        if key not in previous:
            raise InputError(
                f"{out_dir} holds a run written by tip-decode {previous.get('tip_decode', '(unknown version)')}, which did not record its {what}: "
                "it cannot be resumed safely; use another output folder (-o)"
            )
        before, value = previous[key], now[key]
        if key == "model":
            same = same_source(before, value)
        elif key == "data":
            same = _same_data(before, value)
        else:
            same = before == value
        if not same and key == "data" and _same_content(before, value):
            # Same file, other options that turn its rows into problems: name the option, not the file twice.
            field, was, now_value = _first_option_difference(before, value)
            raise InputError(
                f"{out_dir} holds another run of the same data with {_DATA_OPTIONS.get(field, field)} {_show_option(was)}, not {_show_option(now_value)}; "
                f"rerun with the run's {_DATA_OPTIONS.get(field, field)} to resume it, or use another output folder (-o)"
            )
        if not same:
            raise InputError(
                f"{out_dir} holds another run: its {what} is {_show(key, before)}, not {_show(key, value)}; "
                f"rerun with the run's {option} to resume it, or use another output folder (-o)"
            )


def check_records(out_dir: Path, names: Iterable[str], expected: Mapping[str, tuple[str, str, str]]) -> None:
    """`InputError` when a record in the folder was made from another prompt or reference than the
    rerun would use for its problem id (`expected`: id -> (prompt, reference, answer kind)).

    Identity keys make this rare (same data, prompt settings and tokenizer give the same prompts);
    it is what guards runs built in Python, whose problems run.json cannot describe.
    """
    from tip_decode.harness.jsonl import iter_jsonl

    for name in names:
        path = out_dir / f"{name}.jsonl"
        if not path.is_file():
            continue
        for _, record in iter_jsonl(path, torn_tail=True, log_torn=False):  # the writer drops a torn line, and says so
            want = expected.get(record.get("id"))
            if want is None:
                continue
            prompt, reference, kind = want
            for field, value in (("prompt", prompt), ("reference", reference), ("answer_kind", kind)):
                if record.get(field) != value:
                    raise InputError(
                        f"{path} holds a record of problem {record.get('id')!r} made with another {field.replace('_', ' ')} than this run's: "
                        "the folder holds another run; use another output folder (-o)"
                    )


def check_configs_unchanged(out_dir: Path, previous: Mapping[str, Any], configs: Sequence[Any]) -> None:
    """`InputError` when a configuration name in the folder stands for other settings now."""
    from tip_decode.harness.configs import RunConfig, settings_text

    earlier: dict[str, Any] = {}
    for entry in previous.get("configs", []):
        if isinstance(entry, dict) and "name" in entry:
            try:
                earlier[entry["name"]] = RunConfig.from_dict(entry)
            except (TypeError, ValueError):
                earlier[entry["name"]] = None  # unreadable: never equal to a new configuration
    for config in configs:
        if config.name not in earlier:
            continue
        before = earlier[config.name]
        if before is None or before.interventions != config.interventions:
            was = settings_text(before.interventions.to_mapping()) if before is not None else "settings this version cannot read"
            raise InputError(
                f"{out_dir} holds configuration {config.name!r} with other settings ({was}; now {settings_text(config.interventions.to_mapping())}): "
                "give this configuration another name (NAME=...) or use another output folder"
            )


def record_file_notes(out_dir: Path, names: Iterable[str]) -> list[str]:
    """One line per record file that is missing, empty, or ends in a torn line (a write cut short)."""
    notes = []
    for name in names:
        path = out_dir / f"{name}.jsonl"
        if not path.exists():
            notes.append(f"{path.name} is missing: configuration {name!r} has no records")
            continue
        size = path.stat().st_size
        if size == 0 or not path.read_bytes().strip():
            notes.append(f"{path.name} is empty: configuration {name!r} has no records")
            continue
        with path.open("rb") as handle:
            handle.seek(max(0, size - (1 << 16)))
            tail = handle.read()
        if not tail.endswith(b"\n"):
            cut = len(tail) - (tail.rfind(b"\n") + 1)
            notes.append(f"{path.name} ends in a torn line ({cut} bytes, a write cut short): that record was left out")
    return notes


# ----------------------------------------------------------------------------- lock

# Locks this process holds, by folder: the CLI takes the lock before the model loads and
# `run_compare` takes it again inside; the second take is the same lock, not a second writer.
_HELD: dict[str, list[Any]] = {}


class RunLock:
    """An exclusive lock on a run folder while a run writes into it (`with RunLock(out): ...`).

    The lock is `fcntl.flock` on `<folder>/.lock`, released by the kernel when the process ends
    however it ends (no stale lock after a kill). Taking it again in the same process nests. A folder
    locked by another process is a `FolderBusy` error naming that process. Where `fcntl` does not
    exist (Windows) the folder is not locked.
    """

    def __init__(self, out_dir: str | Path, what: str = "a run") -> None:
        self.out = Path(out_dir)
        self.what = what
        self._key: str | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on Linux or macOS
            return
        self.out.mkdir(parents=True, exist_ok=True)
        key = str(self.out.resolve())
        held = _HELD.get(key)
        if held is not None:
            held[1] += 1
            self._key = key
            return
        path = self.out / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            try:
                info = json.loads(holder)
                who = f" (process {info['pid']}, {info['what']}, since {info['since']})"
            except (ValueError, KeyError, TypeError):
                who = ""
            raise FolderBusy(f"{self.out} is in use by another run{who}: wait for it to finish, or use another output folder (-o)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": self.what, "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        _HELD[key] = [fd, 1]
        self._key = key

    def release(self) -> None:
        key, self._key = self._key, None
        held = _HELD.get(key) if key is not None else None
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[key]
            os.close(held[0])  # closing the descriptor releases the flock
