"""An independent reading of section 2 of the contract (the switch vocabulary), for tests only.

Everything is derived from a `tokenizers.Tokenizer` built from the tokenizer's own file, by brute
force over every id, straight from the contract's words. Nothing here reads a `SwitchVocabulary`
field or calls tip_decode's piece code, so the library's vocabulary can be compared with it:

- a token's text "as it reads in the middle of a sequence" is worked out from its piece here, and
  `check_texts` holds that reading to the tokenizer's own decoder (a token decoded after a context
  token, minus the context);
- single-token hits: every id whose text, leading whitespace removed and lowercased, is a trigger
  followed by nothing or a non-letter; special tokens and think markers never;
- multi-token triggers: each variant (`word`, ` word`, `Word`, ` Word` of the lowercased trigger)
  encoded alone and after a newline (its mid-sequence spelling, docs/penalty.md), when that takes
  two or more tokens;
- a prefix starts a word when its first token's text starts with whitespace, or the token before
  it ends in a non-letter, or it is the first generated token.

Documented decisions it follows (docs/penalty.md): a character a token holds only part of is
unknown and counts as a letter, so such a token ends no word, and a trigger followed by one is no hit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property

THINK_PAIRS = (("<think>", "</think>"), ("<thinking>", "</thinking>"), ("<|begin_of_thought|>", "<|end_of_thought|>"))


def _byte_table() -> dict[str, int]:
    """GPT-2's byte <-> character table, written out from its definition, inverted."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(0x100 + shift)
            shift += 1
    return {c: b for b, c in chars.items()}


BYTE_OF = _byte_table()


def _types(node) -> list[dict]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [t for part in node.get("decoders", node.get("pretokenizers", [])) for t in _types(part)]
    return [node]


def _cut_characters(data: bytes) -> tuple[str, bool, bool]:
    """Complete characters of `data`, and whether bytes of a character were cut at the start / end."""
    head = 0
    while head < len(data) and data[head] & 0xC0 == 0x80:
        head += 1
    tail = len(data)
    # Walk back over an incomplete sequence at the end: a lead byte whose continuation is missing.
    for back in range(1, min(4, tail - head) + 1):
        byte = data[tail - back]
        if byte & 0xC0 == 0x80:
            continue
        # Lead bytes of UTF-8 (C0, C1 and F5-FF never start a character: they are errors, U+FFFD).
        need = 2 if 0xC2 <= byte <= 0xDF else 3 if 0xE0 <= byte <= 0xEF else 4 if 0xF0 <= byte <= 0xF4 else 1
        if need > back:
            tail -= back
        break
    return data[head:tail].decode("utf-8", errors="replace"), head > 0, tail < len(data)


@dataclass(frozen=True)
class Pattern:
    trigger: str
    prefix: tuple[int, ...]
    completion: int
    starts_with_space: bool


@dataclass
class Rules:
    """What the contract says is penalised, for one trigger list (the reference's input)."""

    token_ids: frozenset[int]
    hit_trigger: dict[int, str]
    patterns: list[Pattern]
    ends_word: list[bool]
    think_start: int | None
    think_end: int | None

    def ends_word_at(self, token_id: int) -> bool:
        # Ids past the vocabulary (padding columns of an output layer) decode to nothing.
        return self.ends_word[token_id] if 0 <= token_id < len(self.ends_word) else True


class Oracle:
    def __init__(self, raw) -> None:
        self.raw = raw
        config = json.loads(raw.to_str())
        self.config = config
        model = config["model"]
        kinds = {t.get("type") for t in _types(config.get("decoder")) + _types(config.get("pre_tokenizer"))}
        self.byte_level = "ByteLevel" in kinds
        self.metaspace = "Metaspace" in kinds or any(
            t.get("type") == "Replace" and t.get("pattern", {}).get("String") == "\u2581" for t in _types(config.get("decoder"))
        )
        self.byte_fallback = bool(model.get("byte_fallback"))
        self.wordpiece = model["type"] == "WordPiece"
        self.suffix = model.get("end_of_word_suffix") or None
        self.size = raw.get_vocab_size(with_added_tokens=True)
        added = raw.get_added_tokens_decoder()
        self.added = {i: t.content for i, t in added.items()}
        self.special = {i for i, t in added.items() if t.special}
        vocab = raw.get_vocab(with_added_tokens=True)
        self.think_start = self.think_end = None
        for start, end in THINK_PAIRS:
            if start in vocab and end in vocab:
                self.think_start, self.think_end = vocab[start], vocab[end]
                break

    def piece_text(self, token_id: int) -> tuple[str, bool, bool]:
        """(text in the middle of a sequence, starts inside a character, ends inside a character)."""
        if token_id in self.added:
            return self.added[token_id], False, False
        piece = self.raw.id_to_token(token_id)
        if piece is None:
            return "", False, False
        if self.byte_level:
            return _cut_characters(bytes(BYTE_OF[c] for c in piece))
        if self.byte_fallback and re.fullmatch(r"<0x[0-9A-F]{2}>", piece):
            return _cut_characters(bytes([int(piece[3:5], 16)]))
        text = piece
        if self.wordpiece:
            text = text[2:] if text.startswith("##") else " " + text
            for glued in (".", "?", "!", ","):
                if text == " " + glued:  # the WordPiece decoder's cleanup glues these to the word before
                    text = glued
        if self.metaspace:
            text = text.replace("\u2581", " ")
        if self.suffix and text.endswith(self.suffix):
            text = text[: -len(self.suffix)] + " "
        return text, False, False

    @cached_property
    def texts(self) -> list[tuple[str, bool, bool]]:
        return [self.piece_text(i) for i in range(self.size)]

    def ends_word(self, token_id: int) -> bool:
        text, starts_inside, ends_inside = self.texts[token_id]
        if ends_inside or (starts_inside and not text):
            return False
        return not text or not text[-1].isalpha()

    def starts_with_space(self, token_id: int) -> bool:
        text, starts_inside, _ = self.texts[token_id]
        return not starts_inside and text[:1].isspace()

    def check_texts(self) -> int:
        """Hold every piece reading to the tokenizer's own decoder; returns how many were compared.

        Each token is decoded between a token that reads `x` at the start of a sequence and one
        that reads `x` in the middle and at the end (no space, no suffix, not a byte piece), so the
        token itself stands in the middle of a sequence: the decoded text must be `x` + its text + `x`.
        """
        plain = [
            i
            for i, (text, _, _) in enumerate(self.texts)
            if text.strip() == "x" and i not in self.added and not re.fullmatch(r"<0x..>", self.raw.id_to_token(i))
        ]
        last = next(i for i in plain if self.texts[i][0] == "x")
        first = next(i for i in plain if self.raw.decode([i, last]) == "xx")
        checked = 0
        mismatches = []
        for token_id in range(self.size):
            if token_id in self.added:
                continue
            text, starts_inside, ends_inside = self.texts[token_id]
            decoded = self.raw.decode([first, token_id, last], skip_special_tokens=False)
            if starts_inside or ends_inside:
                if "\ufffd" not in decoded:
                    mismatches.append((token_id, self.raw.id_to_token(token_id), text, decoded))
                continue
            checked += 1
            if decoded != "x" + text + "x":
                mismatches.append((token_id, self.raw.id_to_token(token_id), text, decoded))
        assert not mismatches, mismatches[:10]
        return checked

    def variants(self, trigger: str) -> list[str]:
        word = trigger.lower()
        title = word[:1].upper() + word[1:]
        return list(dict.fromkeys([word, " " + word, title, " " + title]))

    def spellings(self, variant: str) -> list[list[int]]:
        encode = lambda text: self.raw.encode(text, add_special_tokens=False).ids  # noqa: E731
        out = [encode(variant)]
        newline = encode("\n")
        after = encode("\n" + variant)
        if after[: len(newline)] == newline:
            out.append(after[len(newline) :])
        return out

    def rules(self, triggers) -> Rules:
        triggers = [t.lower() for t in triggers]
        excluded = self.special | {i for i in (self.think_start, self.think_end) if i is not None}
        hit_trigger: dict[int, str] = {}
        for token_id in range(self.size):
            text, starts_inside, ends_inside = self.texts[token_id]
            if token_id in excluded or starts_inside:
                continue
            stripped = text.lstrip().lower()
            for trigger in triggers:
                if not stripped.startswith(trigger):
                    continue
                rest = stripped[len(trigger) :]
                if (not rest and not ends_inside) or (rest and not rest[0].isalpha()):
                    hit_trigger[token_id] = trigger
                    break
        patterns: dict[tuple, Pattern] = {}
        for trigger in triggers:
            for variant in self.variants(trigger):
                for ids in self.spellings(variant):
                    if len(ids) < 2 or excluded & set(ids):
                        continue
                    # The spelling really is the variant, up to whitespace (a SentencePiece tokenizer
                    # puts a space before a text's first word; WordPiece pieces read as words).
                    spelled = "".join(self.texts[i][0] for i in ids)
                    assert re.sub(r"\s", "", spelled) == re.sub(r"\s", "", variant), (variant, ids, spelled)
                    key = (tuple(ids[:-1]), ids[-1])
                    patterns.setdefault(key, Pattern(trigger, key[0], key[1], self.starts_with_space(ids[0])))
        return Rules(
            token_ids=frozenset(hit_trigger),
            hit_trigger=hit_trigger,
            patterns=sorted(patterns.values(), key=lambda p: (p.prefix, p.completion)),
            ends_word=[self.ends_word(i) for i in range(self.size)],
            think_start=self.think_start,
            think_end=self.think_end,
        )


_ORACLES: dict[int, Oracle] = {}


def oracle_for(raw) -> Oracle:
    if id(raw) not in _ORACLES:
        _ORACLES[id(raw)] = Oracle(raw)
    return _ORACLES[id(raw)]
