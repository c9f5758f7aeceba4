"""The real tokenizers and data sets the tests use, shipped in the repository (tests/vendored/).

A clone has everything its tests need: six reasoning-model tokenizers (Qwen2.5, Qwen3, the two
DeepSeek-R1 distills, Llama 3.1, Mistral 7B) and two data sets (MATH-500, GSM8K test), compressed
with xz into four archives (about 4.3 MB; a family's tokenizers share one archive, so the vocabulary
they share is stored once). Each tokenizer folder and data file has its upstream licence or notice
beside it, and tests/vendored/SHA256SUMS lists the sha256 of every unpacked file (the same files as
the upstream copies; a test checks every one).

The archives are unpacked once, on first use, into tests/vendored/.unpacked/<digest of the archives>/
(ignored by git; a temporary folder when the checkout is read-only) and read from there.
`TIP_DECODE_TOKENIZERS` and `TIP_DECODE_DATA` override the two folders (a folder of tokenizer
folders, a folder of data files).

    python tests/vendored.py            # unpack, verify, print the two folders
    python tests/vendored.py pack DIR   # rebuild the archives from DIR/tokenizers and DIR/data
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "vendored"

#: archive -> the files it holds (paths relative to the unpacked root), grouped so that tokenizers
#: that share a vocabulary sit in one xz stream (xz's window then stores the shared part once).
ARCHIVES: dict[str, tuple[str, ...]] = {
    "tokenizers-qwen.tar.xz": tuple(
        f"tokenizers/{name}/{file}" for name in ("qwen2.5", "deepseek-r1-distill-qwen", "qwen3") for file in ("tokenizer.json", "tokenizer_config.json")
    ),
    "tokenizers-llama.tar.xz": tuple(
        f"tokenizers/{name}/{file}" for name in ("llama-3.1", "deepseek-r1-distill-llama") for file in ("tokenizer.json", "tokenizer_config.json")
    ),
    "tokenizers-mistral.tar.xz": ("tokenizers/mistral-7b-v0.1/tokenizer.json", "tokenizers/mistral-7b-v0.1/tokenizer_config.json"),
    "data.tar.xz": ("data/math500.jsonl", "data/gsm8k_test.jsonl"),
}

#: Licence and notice files kept as plain text beside what they cover (copied into the unpacked tree).
LICENCE_FILES = (
    "tokenizers/qwen2.5/LICENSE",
    "tokenizers/qwen3/LICENSE",
    "tokenizers/deepseek-r1-distill-qwen/LICENSE",
    "tokenizers/deepseek-r1-distill-qwen/NOTICE",
    "tokenizers/llama-3.1/LICENSE",
    "tokenizers/llama-3.1/NOTICE",
    "tokenizers/deepseek-r1-distill-llama/LICENSE",
    "tokenizers/deepseek-r1-distill-llama/NOTICE",
    "tokenizers/mistral-7b-v0.1/LICENSE",
    "data/math500.LICENSE",
    "data/gsm8k_test.LICENSE",
)

_UNPACKED: Path | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expected_hashes() -> dict[str, str]:
    """path -> sha256 of every unpacked file (tests/vendored/SHA256SUMS)."""
    hashes = {}
    for line in (HERE / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, path = line.split(maxsplit=1)
            hashes[path.strip()] = digest
    return hashes


def _digest() -> str:
    h = hashlib.sha256()
    for name in sorted(ARCHIVES):
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    return h.hexdigest()[:16]


def _unpack_into(target: Path) -> None:
    """Unpack every archive into a fresh folder beside `target`, verify every file, then rename it
    to `target` (atomic: concurrent test processes either see the whole tree or unpack their own)."""
    hashes = expected_hashes()
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the files from other users of a shared checkout
    try:
        for archive, members in ARCHIVES.items():
            with tarfile.open(HERE / archive, "r:xz") as tar:
                names = sorted(m.name for m in tar.getmembers() if m.isfile())
                if names != sorted(members):
                    raise RuntimeError(f"{HERE / archive} holds {names}, expected {sorted(members)}")
                for member in tar.getmembers():
                    if not member.isfile():
                        continue
                    data = tar.extractfile(member).read()
                    if _sha256(data) != hashes.get(member.name):
                        raise RuntimeError(f"{HERE / archive}: {member.name} does not match its sha256 in {HERE / 'SHA256SUMS'}")
                    path = staging / member.name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
        for name in LICENCE_FILES:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HERE / name, staging / name)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "data").is_dir():  # another process won the race with a whole tree
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unpacked() -> Path:
    """The folder holding `tokenizers/` and `data/`, unpacked from the archives on first use."""
    global _UNPACKED
    if _UNPACKED is not None:
        return _UNPACKED
    digest = _digest()
    candidates = [HERE / ".unpacked", Path(tempfile.gettempdir()) / f"tip-decode-vendored-{os.getuid() if hasattr(os, 'getuid') else 'user'}"]
    errors = []
    for parent in candidates:
        target = parent / digest
        if (target / "data").is_dir() and (target / "tokenizers").is_dir():
            _UNPACKED = target
            return target
        try:
            parent.mkdir(parents=True, exist_ok=True)
            _unpack_into(target)
        except OSError as err:
            errors.append(f"{parent}: {err}")
            continue
        for old in parent.iterdir():  # earlier versions of the archives
            if old.name != digest and not old.name.startswith("."):
                shutil.rmtree(old, ignore_errors=True)
        _UNPACKED = target
        return target
    raise RuntimeError(f"cannot unpack the vendored test files ({'; '.join(errors)})")


def tokenizers_dir() -> Path:
    """The folder of tokenizer folders: TIP_DECODE_TOKENIZERS when set, else the vendored copies."""
    override = os.environ.get("TIP_DECODE_TOKENIZERS")
    return Path(override) if override else unpacked() / "tokenizers"


def data_dir() -> Path:
    """The folder of data files: TIP_DECODE_DATA when set, else the vendored copies."""
    override = os.environ.get("TIP_DECODE_DATA")
    return Path(override) if override else unpacked() / "data"


def pack(source: Path) -> None:
    """Rebuild the archives from `source`/tokenizers and `source`/data (byte-for-byte reproducible:
    fixed order, times and owners), checking every file against SHA256SUMS first."""
    hashes = expected_hashes()
    for archive, members in ARCHIVES.items():
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in members:
                data = (source / name).read_bytes()
                if _sha256(data) != hashes[name]:
                    raise SystemExit(f"{source / name} does not match its sha256 in SHA256SUMS")
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
        compressed = lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME)
        (HERE / archive).write_bytes(compressed)
        print(f"{archive}: {len(compressed):,} bytes")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "pack":
        pack(Path(sys.argv[2]))
    elif len(sys.argv) == 1:
        print(f"tokenizers: {tokenizers_dir()}\ndata: {data_dir()}")
    else:
        raise SystemExit(__doc__)
