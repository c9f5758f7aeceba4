"""What each token reads as in the middle of a sequence, from the tokenizer's own pieces.

The switch vocabulary asks of every token: does its text start with whitespace, does it end in a
letter, does it start with a trigger word? Decoding a token alone answers none of these reliably:
SentencePiece decoders drop a lone piece's leading `▁`, byte-level pieces hold parts of a UTF-8
character, and transformers 5 loads DeepSeek-V3/R1 tokenizers with a SentencePiece decoder on a
byte-level vocabulary (huggingface/transformers#45488), so their tokens decode as mojibake (`Ġ`, `Ċ`).
Mapping markers back after decoding (`Ġ` -> space) in turn mistakes real letters that share the
marker characters (`č` in `peč`, `Ġ`, `ĉ`) for whitespace.

So this module reads the pieces themselves (the strings in the tokenizer's vocabulary) and turns each
into the bytes it contributes to a decoded sequence, following the tokenizer's model, pre-tokenizer
and decoder as `tokenizer.json` declares them:

- byte-level BPE (GPT-2, Llama 3, Qwen, DeepSeek): every piece character stands for one byte
  (GPT-2's `bytes_to_unicode` table, inverted); a piece may hold part of a character;
- metaspace (SentencePiece BPE / Unigram): `▁` is a space; byte-fallback pieces `<0x0A>` are bytes;
- WordPiece: `##` marks a continuation; any other piece starts a new word (a space before it);
- BPE with an end-of-word suffix (`</w>`): the suffix is a space after the piece;
- no decoder: `tokenizers` joins pieces with spaces.

A vocabulary whose pieces are all in the byte-level alphabet and that spells spaces as `Ġ` is read as
byte-level whatever its decoder says (the transformers 5 case above). Tokenizers without a
`tokenizers` backend (slow, Python-only ones) expose only their pieces; their scheme is inferred from
the pieces (`Ġ` byte-level, `▁` metaspace, `##` WordPiece), and failing that each token is decoded
alone, which is right for most such vocabularies but cannot see a SentencePiece piece's leading space.

Imports neither transformers nor tokenizers at module level.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

BYTE_LEVEL, METASPACE, WORDPIECE, RULES, DECODED = "byte_level", "metaspace", "wordpiece", "rules", "decoded"

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SPACE_MARKER = "\u0120"  # GPT-2's `Ġ`: the byte-level spelling of a space
_METASPACE = "\u2581"  # SentencePiece's `▁`
#: The split pattern shared by the byte-level families we know (Llama 3, Qwen2/2.5/3, the
#: DeepSeek-R1 distills); used only to re-encode with a tokenizer whose loader dropped its own.
_BYTE_LEVEL_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
#: What WordPiece's `cleanup` glues to the word before it.
_WORDPIECE_CLEANUP = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


_TO_BYTE_CODE_POINT = {ord(c): b for c, b in unicode_to_bytes().items()}


@dataclass(frozen=True)
class PieceScheme:
    """How a tokenizer's pieces turn into text (see the module docstring).

    `kind` is one of "byte_level", "metaspace", "wordpiece", "rules" (pieces rewritten by the
    decoder's replace / strip / suffix rules) and "decoded" (each token decoded alone: the last
    resort for tokenizers that expose no scheme). `replacements` are (old, new) string rewrites in
    decoder order; `space_before` puts a space before every piece that is not a continuation.
    """

    kind: str
    replacements: tuple[tuple[str, str], ...] = ()
    byte_fallback: bool = False
    continuation_prefix: str | None = None
    space_before: bool = False
    end_of_word_suffix: str | None = None
    strip: tuple[str, int, int] | None = None
    cleanup: bool = False
    drop: frozenset[str] = field(default_factory=frozenset)
    #: The loaded tokenizer's decoder / pre-tokenizer contradict its byte-level vocabulary.
    repaired: bool = False


def _components(node: Any) -> list[dict[str, Any]]:
    """A decoder or pre-tokenizer config flattened into its parts, in order."""
    if not isinstance(node, Mapping):
        return []
    kind = node.get("type")
    if kind == "Sequence":
        parts = node.get("decoders") or node.get("pretokenizers") or []
        return [p for part in parts for p in _components(part)]
    return [dict(node)]


def looks_byte_level(pieces: Iterable[str | None]) -> bool:
    """Every piece uses only the byte-level alphabet, and some piece starts with the space marker."""
    alphabet = unicode_to_bytes()
    seen_marker = False
    count = 0
    for piece in pieces:
        if not piece:
            continue
        count += 1
        if piece[0] == _SPACE_MARKER:
            seen_marker = True
        for char in piece:
            if char not in alphabet:
                return False
    return seen_marker and count > 0


def scheme_from_config(config: Mapping[str, Any] | None, pieces: Sequence[str | None]) -> PieceScheme:
    """The piece scheme of a tokenizer from its `tokenizer.json` (or None) and its model pieces."""
    if config is None:
        return _scheme_from_pieces(pieces)
    model = config.get("model") or {}
    decoders = _components(config.get("decoder"))
    pre_tokenizers = _components(config.get("pre_tokenizer"))
    types = {c.get("type") for c in decoders + pre_tokenizers}
    if "ByteLevel" in types:
        return PieceScheme(BYTE_LEVEL)
    if looks_byte_level(pieces):
        return PieceScheme(BYTE_LEVEL, repaired=True)

    replacements: list[tuple[str, str]] = []
    byte_fallback = bool(model.get("byte_fallback"))
    prefix: str | None = None
    space_before = not decoders  # `tokenizers` joins pieces with spaces when there is no decoder
    suffix: str | None = None
    strip: tuple[str, int, int] | None = None
    cleanup = False
    drop: set[str] = set()
    fused = False
    for part in decoders:
        kind = part.get("type")
        if kind == "Replace":
            pattern = part.get("pattern") or {}
            old = pattern.get("String") if isinstance(pattern, Mapping) else None
            if old:
                replacements.append((old, str(part.get("content", ""))))
        elif kind == "Metaspace":
            replacements.append((str(part.get("replacement", _METASPACE)), " "))
        elif kind == "ByteFallback":
            byte_fallback = True
        elif kind == "Fuse":
            # Everything after Fuse sees the whole sequence as one string: a Strip there trims the
            # sequence's ends, not a token in the middle of it.
            fused = True
        elif kind == "Strip" and not fused:
            strip = (str(part.get("content", " ")), int(part.get("start", 0)), int(part.get("stop", 0)))
        elif kind == "WordPiece":
            prefix = str(part.get("prefix", "##"))
            space_before = True
            cleanup = bool(part.get("cleanup", False))
        elif kind == "BPEDecoder":
            suffix = str(part.get("suffix", "</w>"))
        elif kind == "CTC":
            drop.add(str(part.get("pad_token", "<pad>")))
            replacements.append((str(part.get("word_delimiter_token", "|")), " "))
            cleanup = cleanup or bool(part.get("cleanup", False))
    if model.get("type") == "WordPiece" and prefix is None:
        prefix = str(model.get("continuing_subword_prefix") or "##")
        space_before = True
    if suffix is None and model.get("end_of_word_suffix"):
        suffix = str(model["end_of_word_suffix"])
    for part in pre_tokenizers:
        if part.get("type") == "Metaspace":
            marker = str(part.get("replacement", _METASPACE))
            if (marker, " ") not in replacements:
                replacements.append((marker, " "))
    kind = METASPACE if any(old == _METASPACE for old, _ in replacements) else WORDPIECE if prefix else RULES
    return PieceScheme(
        kind,
        replacements=tuple(replacements),
        byte_fallback=byte_fallback,
        continuation_prefix=prefix,
        space_before=space_before,
        end_of_word_suffix=suffix,
        strip=strip,
        cleanup=cleanup,
        drop=frozenset(drop),
    )


def _scheme_from_pieces(pieces: Sequence[str | None]) -> PieceScheme:
    """Infer the scheme of a tokenizer that exposes only its pieces (no `tokenizer.json`)."""
    if looks_byte_level(pieces):
        return PieceScheme(BYTE_LEVEL)
    present = [p for p in pieces if p]
    if any(_METASPACE in p for p in present):
        return PieceScheme(METASPACE, replacements=((_METASPACE, " "),), byte_fallback=any(_BYTE_PIECE.fullmatch(p) for p in present))
    if sum(p.startswith("##") and len(p) > 2 for p in present) > len(present) // 20:
        return PieceScheme(WORDPIECE, continuation_prefix="##", space_before=True)
    return PieceScheme(DECODED)


def piece_bytes(piece: str, scheme: PieceScheme) -> bytes:
    """The bytes `piece` contributes to a decoded sequence when it is neither first nor last."""
    if scheme.kind == BYTE_LEVEL:
        try:
            # Each alphabet character becomes the code point of its byte; latin-1 writes those bytes.
            return piece.translate(_TO_BYTE_CODE_POINT).encode("latin-1")
        except UnicodeEncodeError:  # not a byte-level piece (should not happen outside added tokens)
            table = unicode_to_bytes()
            return b"".join(bytes([table[c]]) if c in table else c.encode("utf-8") for c in piece)
    if scheme.byte_fallback:
        match = _BYTE_PIECE.fullmatch(piece)
        if match:
            return bytes([int(match.group(1), 16)])
    if piece in scheme.drop:
        return b""
    text = piece
    if scheme.continuation_prefix is not None and text.startswith(scheme.continuation_prefix):
        text = text[len(scheme.continuation_prefix) :]
    elif scheme.space_before:
        text = " " + text
        if scheme.cleanup:
            for old, new in _WORDPIECE_CLEANUP:
                if text.startswith(old):
                    text = new + text[len(old) :]
                    break
    for old, new in scheme.replacements:
        text = text.replace(old, new)
    if scheme.end_of_word_suffix and text.endswith(scheme.end_of_word_suffix):
        text = text[: -len(scheme.end_of_word_suffix)] + " "
    if scheme.strip is not None:
        char, start, stop = scheme.strip
        for _ in range(start):
            if text.startswith(char):
                text = text[len(char) :]
        for _ in range(stop):
            if text.endswith(char):
                text = text[: -len(char)]
    return text.encode("utf-8")


def split_utf8(data: bytes) -> tuple[str, bool, bool]:
    """`(complete characters, starts inside a character, ends inside a character)` of a token's bytes.

    Leading continuation bytes finish a character an earlier token began; a trailing incomplete
    sequence begins one a later token finishes. Neither is a character of this token's text.
    """
    try:
        return data.decode("utf-8"), False, False
    except UnicodeDecodeError:
        pass
    start = 0
    while start < len(data) and 0x80 <= data[start] <= 0xBF:
        start += 1
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data[start:], final=False)
    pending = decoder.getstate()[0]
    return text, start > 0, bool(pending)


@dataclass
class TokenTexts:
    """Per token id: its text in the middle of a sequence, and where that text is cut mid-character.

    `text[i]` holds only the complete characters of token i (its leading whitespace included);
    `starts_inside[i]` / `ends_inside[i]` say that bytes of a character it shares with the token
    before / after it were cut off. `display(i)` shows the cut parts as U+FFFD, as decoders do.
    """

    scheme: PieceScheme
    text: list[str]
    starts_inside: np.ndarray
    ends_inside: np.ndarray

    def display(self, token_id: int) -> str:
        return ("\ufffd" if self.starts_inside[token_id] else "") + self.text[token_id] + ("\ufffd" if self.ends_inside[token_id] else "")

    def starts_with_space(self, token_id: int) -> bool:
        return not self.starts_inside[token_id] and self.text[token_id][:1].isspace()

    def ends_word(self) -> np.ndarray:
        """For every id: the next token starts a word after it.

        True when the token's last character is not a letter, or the token is empty. A character
        the token holds only part of counts as a letter: the token alone cannot tell which
        character it is, and counting it as a letter never penalises a completion wrongly.
        """
        out = np.empty(len(self.text), dtype=bool)
        for i, text in enumerate(self.text):
            if self.ends_inside[i] or (not text and self.starts_inside[i]):
                out[i] = False
            else:
                out[i] = not text or not text[-1].isalpha()
        return out


def token_texts(
    pieces: Sequence[str | None],
    scheme: PieceScheme,
    added: Mapping[int, str],
    decode_one: Any = None,
) -> TokenTexts:
    """Every token's mid-sequence text. `added` maps added-token ids to their literal content
    (they are not pieces of the model); `decode_one(id)` is used only for the "decoded" scheme."""
    size = len(pieces)
    texts: list[str] = [""] * size
    starts = np.zeros(size, dtype=bool)
    ends = np.zeros(size, dtype=bool)
    for token_id, piece in enumerate(pieces):
        if token_id in added:
            texts[token_id] = added[token_id]
            continue
        if piece is None:
            continue
        if scheme.kind == DECODED:
            decoded = decode_one(token_id) if decode_one is not None else piece
            decoded = decoded if isinstance(decoded, str) else ""
            # A token that holds part of a character decodes to U+FFFD (or to nothing, where the
            # decoder drops invalid bytes): the cut character is unknown, as for pieces above.
            if not decoded and piece:
                starts[token_id] = ends[token_id] = True
            starts[token_id] |= decoded.startswith("\ufffd")
            ends[token_id] |= decoded.endswith("\ufffd")
            texts[token_id] = decoded.strip("\ufffd")
            continue
        text, starts[token_id], ends[token_id] = split_utf8(piece_bytes(piece, scheme))
        texts[token_id] = text
    return TokenTexts(scheme, texts, starts, ends)


def backend_config(backend: Any) -> dict[str, Any] | None:
    """The parts of a `tokenizers.Tokenizer`'s `tokenizer.json` that decide its piece scheme: the
    model's type and flags, the decoder and the pre-tokenizer (None when none can be read).

    Read component by component: serialising the whole tokenizer (merges included) would take
    about a second for a 150k vocabulary.
    """
    try:
        model = backend.model
        info: dict[str, Any] = {"type": type(model).__name__}
        for name in ("byte_fallback", "continuing_subword_prefix", "end_of_word_suffix"):
            value = getattr(model, name, None)
            if value is not None:
                info[name] = value
        if info["type"] == "Unigram":  # its flags are not exposed as attributes
            info["byte_fallback"] = bool(json.loads(model.__getstate__()).get("byte_fallback"))
        parts = {
            name: json.loads(component.__getstate__()) if component is not None else None
            for name, component in (("decoder", backend.decoder), ("pre_tokenizer", backend.pre_tokenizer))
        }
        return {"model": info, **parts}
    except Exception:  # an older or unusual binding: serialise the whole tokenizer instead
        logger.debug("tokenizer components could not be read one by one", exc_info=True)
    return full_config(backend)


def full_config(backend: Any) -> dict[str, Any] | None:
    """The whole parsed `tokenizer.json` of a `tokenizers.Tokenizer` (None when it cannot be serialised)."""
    try:
        return json.loads(backend.to_str())
    except Exception:  # a backend that cannot serialise itself: fall back to its pieces
        logger.debug("tokenizer backend could not be serialised; inferring its piece scheme", exc_info=True)
        return None


def byte_level_encoder(config: Mapping[str, Any], source: str | None) -> Any:
    """A `tokenizers.Tokenizer` that encodes like `config` with a byte-level pre-tokenizer restored.

    Used when a loader replaced the pre-tokenizer of a byte-level vocabulary (transformers 5 and
    DeepSeek-V3/R1, see the module docstring): the switch vocabulary must encode trigger variants
    the way the model saw text in training. The pre-tokenizer and normalizer come from the
    original `tokenizer.json` when `source` (a local folder or a Hub id in the local cache) has one
    that is byte-level, else the split pattern of the Llama 3 / Qwen / DeepSeek families.
    """
    from tokenizers import Tokenizer

    repaired = dict(config)
    original = _original_config(source)
    if original is not None and "ByteLevel" in {c.get("type") for c in _components(original.get("pre_tokenizer"))}:
        repaired["pre_tokenizer"] = original["pre_tokenizer"]
        repaired["normalizer"] = original.get("normalizer")
    else:
        repaired["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": _BYTE_LEVEL_SPLIT}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            ],
        }
    repaired["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return Tokenizer.from_str(json.dumps(repaired))


def _original_config(source: str | None) -> dict[str, Any] | None:
    if not source:
        return None
    from pathlib import Path

    candidates = [Path(source) / "tokenizer.json", Path(source)]
    try:  # a Hub id already in the local cache (never downloads)
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "tokenizer.json")
        if isinstance(cached, str):
            candidates.append(Path(cached))
    except Exception:
        pass
    for path in candidates:
        try:
            if path.is_file() and path.name.endswith(".json"):
                return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None
