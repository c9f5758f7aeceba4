"""The tokenizers and data sets the tests use ship with the repository (tests/vendored/), whole and licensed."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import vendored
from conftest import ROOT, TOKENIZER_NAMES


def test_every_vendored_file_unpacks_to_its_upstream_bytes():
    root = vendored.unpacked()
    hashes = vendored.expected_hashes()
    assert sorted(hashes) == sorted(member for members in vendored.ARCHIVES.values() for member in members)
    for path, digest in hashes.items():
        assert hashlib.sha256((root / path).read_bytes()).hexdigest() == digest, path


def test_every_tokenizer_and_data_file_has_its_licence_beside_it():
    root = vendored.unpacked()
    for name in TOKENIZER_NAMES:
        folder = root / "tokenizers" / name
        assert (folder / "tokenizer.json").is_file() and (folder / "LICENSE").is_file(), name
    assert "Apache License" in (root / "tokenizers/qwen3/LICENSE").read_text()
    assert "Apache License" in (root / "tokenizers/mistral-7b-v0.1/LICENSE").read_text()
    assert "Copyright (c) 2023 DeepSeek" in (root / "tokenizers/deepseek-r1-distill-qwen/LICENSE").read_text()
    notice = "Llama 3.1 is licensed under the Llama 3.1 Community License, Copyright © Meta Platforms, Inc. All Rights Reserved."
    for name in ("llama-3.1", "deepseek-r1-distill-llama"):
        assert notice in (root / "tokenizers" / name / "NOTICE").read_text(encoding="utf-8")
    assert "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT" in (root / "tokenizers/llama-3.1/LICENSE").read_text(encoding="utf-8")
    for data in ("math500", "gsm8k_test"):
        assert (root / "data" / f"{data}.jsonl").is_file()
        assert "MIT License" in (root / "data" / f"{data}.LICENSE").read_text()


def test_the_archives_stay_small():
    sizes = {name: (vendored.HERE / name).stat().st_size for name in vendored.ARCHIVES}
    assert sum(sizes.values()) < 5 * 2**20, sizes


def test_environment_variables_override_the_vendored_folders(tmp_path):
    script = "import vendored; print(vendored.tokenizers_dir()); print(vendored.data_dir())"
    env = {"PATH": "/usr/bin:/bin", "TIP_DECODE_TOKENIZERS": str(tmp_path / "t"), "TIP_DECODE_DATA": str(tmp_path / "d")}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT / "tests", env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(tmp_path / "t"), str(tmp_path / "d")]


def test_nothing_outside_the_checkout_is_needed():
    """No test, example, benchmark or doc reads tokenizers or data from a sibling folder of the checkout."""
    offenders = []
    for folder in ("tests", "examples", "benchmarks", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md") and path.is_file() and path.name != "test_vendored.py":
                text = path.read_text(encoding="utf-8")
                if any(marker in text for marker in ("shared/tokenizers", "shared/data", '"shared" / "tokenizers"', '"shared" / "data"')):
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
