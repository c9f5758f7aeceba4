"""A GGUF file's vocabulary as a `tokenizers.Tokenizer`, read from the file's metadata (no Hub access).

llama.cpp models ship as one `.gguf` file whose metadata holds the tokenizer: the model type
(`tokenizer.ggml.model`: "gpt2" for byte-level BPE), its pre-tokenizer's name (`tokenizer.ggml.pre`),
every token's piece and type, the merges and the special ids. `gguf_tokenizer(path)` turns them into
a `tokenizers.Tokenizer` (what the core reads pieces and trigger spellings from) with the file's
end-of-sequence ids, so the intervention plans of a GGUF model need neither its original
`tokenizer.json` nor llama-cpp-python.

The metadata is read by a small parser of the GGUF key-value section: the `gguf` package's
`GGUFReader` takes about 7 s for a 150k-token vocabulary on a 2-core machine (it also maps every
tensor), this parser 0.1-0.3 s. Token types follow llama.cpp: control and unused tokens (Qwen's
`[PAD...]` rows) become special added tokens, user-defined ones (`<think>`, `<tool_call>`) ordinary
added tokens, as in the model's `tokenizer.json`.

Supported: byte-level BPE vocabularies (`tokenizer.ggml.model` "gpt2": Qwen2/2.5/3, QwQ, DeepSeek-R1
and its distills, Llama 3, ...). SentencePiece GGUFs ("llama": Mistral v0.1, Llama 2, Gemma) are
refused with a message that says to pass the model's Hugging Face tokenizer instead.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
# GGUF value types (the file format's numbering) and their little-endian struct codes.
_STRING, _ARRAY = 8, 9
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
# llama.cpp's token types.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The pre-tokenizer split patterns of the byte-level families, by `tokenizer.ggml.pre` (the
# patterns of the families' own tokenizer.json files; llama.cpp maps the same names to them).
_QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN35 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_DEEPSEEK_V3 = (
    r"\p{N}{1,3}",
    r"[一-龥぀-ゟ゠-ヿ]+",
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
SPLIT_PATTERNS: dict[str, tuple[str, ...]] = {
    **{name: (_QWEN2,) for name in ("qwen2", "deepseek-r1-qwen", "megrez", "stablelm2", "hunyuan", "kormo")},
    "qwen35": (_QWEN35,),
    **{name: (_LLAMA3,) for name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "smaug-bpe")},
    **{name: _DEEPSEEK_V3 for name in ("deepseek-v3", "deepseek-llm")},
    **{name: (_GPT2,) for name in ("default", "gpt-2", "phi-2")},
}


class GGUFError(ValueError):
    """The file is not a GGUF file, or its vocabulary is one this module cannot read."""


def read_metadata(path: str | os.PathLike[str], prefix: str = "") -> dict[str, Any]:
    """The key-value metadata of a GGUF file (only the keys starting with `prefix` are decoded).

    Arrays of numbers come back as lists, strings as `str` (invalid UTF-8 replaced). Raises
    GGUFError for a file that is not GGUF (version 2 or 3, little-endian).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise GGUFError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            buffer = memoryview(mapped)
            try:
                return _parse(buffer, prefix, path)
            finally:
                buffer.release()


def _parse(buffer: memoryview, prefix: str, path: Path) -> dict[str, Any]:
    version, _tensors, count = struct.unpack_from("<IQQ", buffer, 4)
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version} is not supported (2 or 3, little-endian)")
    offset = 24
    out: dict[str, Any] = {}
    unpack = struct.unpack_from
    try:
        for _ in range(count):
            (length,) = unpack("<Q", buffer, offset)
            key = str(buffer[offset + 8 : offset + 8 + length], "utf-8")
            offset += 8 + length
            (kind,) = unpack("<I", buffer, offset)
            offset += 4
            wanted = key.startswith(prefix)
            value, offset = _value(buffer, kind, offset, wanted)
            if wanted:
                out[key] = value
    except (struct.error, UnicodeDecodeError, KeyError) as err:
        raise GGUFError(f"{path}: the GGUF metadata cannot be read ({type(err).__name__}: {err})") from err
    return out


def _value(buffer: memoryview, kind: int, offset: int, wanted: bool) -> tuple[Any, int]:
    unpack = struct.unpack_from
    if kind == _STRING:
        (length,) = unpack("<Q", buffer, offset)
        end = offset + 8 + length
        return (str(buffer[offset + 8 : end], "utf-8", "replace") if wanted else None), end
    if kind == _ARRAY:
        element, count = unpack("<IQ", buffer, offset)
        offset += 12
        if element == _STRING:
            values: list[str] = []
            append = values.append
            for _ in range(count):
                (length,) = unpack("<Q", buffer, offset)
                offset += 8
                if wanted:
                    append(str(buffer[offset : offset + length], "utf-8", "replace"))
                offset += length
            return (values if wanted else None), offset
        if element == _ARRAY:
            items = []
            for _ in range(count):
                item, offset = _value(buffer, _ARRAY, offset, wanted)
                items.append(item)
            return (items if wanted else None), offset
        code = _SCALARS[element]
        size = struct.calcsize(code)
        values_n = list(struct.unpack_from(f"<{count}{code[1]}", buffer, offset)) if wanted else None
        return values_n, offset + size * count
    code = _SCALARS[kind]
    return unpack(code, buffer, offset)[0], offset + struct.calcsize(code)


class GGUFTokenizer:
    """A GGUF file's vocabulary: a `tokenizers.Tokenizer` (every call is passed on to it) plus the
    file's special ids, which a bare `tokenizers.Tokenizer` cannot carry.

    `eos_token_id` lists the ids that end a sequence (`tokenizer.ggml.eos_token_id`, then the
    end-of-turn and end-of-message ids when the file names them), as the budget intervention reads
    them from a Hugging Face tokenizer.
    """

    def __init__(self, tokenizer: Any, path: Path, metadata: dict[str, Any]) -> None:
        self.backend = tokenizer
        self.path = path
        self.model_type = str(metadata.get("tokenizer.ggml.model", ""))
        self.pre = str(metadata.get("tokenizer.ggml.pre", "default"))
        eos = [metadata.get(f"tokenizer.ggml.{key}_token_id") for key in ("eos", "eot", "eom")]
        self.eos_token_id: list[int] = list(dict.fromkeys(int(i) for i in eos if i is not None))
        bos = metadata.get("tokenizer.ggml.bos_token_id")
        self.bos_token_id: int | None = None if bos is None else int(bos)
        self.chat_template: str | None = metadata.get("tokenizer.chat_template")
        self.name_or_path = str(path)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class does not define: the tokenizers.Tokenizer API.
        return getattr(self.__dict__["backend"], name)

    def __len__(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def __repr__(self) -> str:
        return f"GGUFTokenizer({str(self.path)!r}, model={self.model_type!r}, pre={self.pre!r}, size={len(self)})"


_CACHE: dict[tuple[str, int, int], GGUFTokenizer] = {}
_CACHE_LOCK = threading.Lock()


def gguf_tokenizer(path: str | os.PathLike[str]) -> GGUFTokenizer:
    """The vocabulary of the GGUF file at `path` (cached per file and modification time).

    Raises:
        FileNotFoundError: no such file.
        GGUFError: not a GGUF file, no vocabulary in it, or a vocabulary type other than
            byte-level BPE (the message says to pass the Hugging Face tokenizer instead).
    """
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    metadata = read_metadata(resolved, prefix="tokenizer.")
    tokenizer = GGUFTokenizer(build_tokenizer(metadata, resolved), resolved, metadata)
    with _CACHE_LOCK:
        _CACHE[key] = tokenizer
    return tokenizer


def build_tokenizer(metadata: dict[str, Any], path: Path | str = "the GGUF file") -> Any:
    """A `tokenizers.Tokenizer` from the `tokenizer.ggml.*` metadata of a GGUF file."""
    from tokenizers import AddedToken, Tokenizer

    model = metadata.get("tokenizer.ggml.model")
    tokens = metadata.get("tokenizer.ggml.tokens")
    if model is None or not tokens:
        raise GGUFError(f"{path} holds no vocabulary (no tokenizer.ggml.model / tokenizer.ggml.tokens)")
    if model != "gpt2":
        raise GGUFError(
            f"{path}: the vocabulary type {model!r} is not supported for reading from the GGUF file "
            "(byte-level BPE, 'gpt2', is); pass the model's Hugging Face tokenizer instead"
        )
    types = list(metadata.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    merges = metadata.get("tokenizer.ggml.merges") or []
    pre = str(metadata.get("tokenizer.ggml.pre", "default"))
    patterns = SPLIT_PATTERNS.get(pre)
    if patterns is None:
        logger.warning("%s: unknown pre-tokenizer %r; splitting text like GPT-2 to spell trigger words", path, pre)
        patterns = SPLIT_PATTERNS["default"]
    config = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                *({"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False} for p in patterns),
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": pre in ("llama3", "llama-v3", "llama-bpe"),
            "vocab": _vocab(tokens),
            "merges": [_merge(m) for m in merges],
        },
    }
    tokenizer = Tokenizer.from_str(json.dumps(config))
    special = [AddedToken(tokens[i], special=True, normalized=False) for i in _ids_of(types, (CONTROL, UNUSED, UNKNOWN))]
    plain = [AddedToken(tokens[i], special=False, normalized=False) for i in _ids_of(types, (USER_DEFINED,))]
    tokenizer.add_special_tokens(special)
    tokenizer.add_tokens(plain)
    return tokenizer


def _vocab(tokens: list[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for index, piece in enumerate(tokens):
        vocab.setdefault(piece, index)  # a repeated piece keeps its first id, as llama.cpp's lookup
    return vocab


def _merge(merge: str) -> list[str]:
    left, _, right = merge.partition(" ")
    return [left, right]


def _ids_of(types: Iterable[int], wanted: tuple[int, ...]) -> list[int]:
    return [i for i, kind in enumerate(types) if kind in wanted]


def gguf_hf_tokenizer(path: str | Path) -> Any:
    """A transformers tokenizer over a GGUF file's vocabulary, with the file's chat template and
    special tokens (what the harness builds prompts and decodes with)."""
    from transformers import PreTrainedTokenizerFast

    vocab = gguf_tokenizer(path)
    backend = vocab.backend

    def piece(token_id: int | None) -> str | None:
        return None if token_id is None else backend.id_to_token(int(token_id))

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=piece(vocab.eos_token_id[0] if vocab.eos_token_id else None),
        bos_token=piece(vocab.bos_token_id),
    )
    tokenizer.chat_template = vocab.chat_template
    tokenizer.name_or_path = str(vocab.path)
    return tokenizer
