"""The switch vocabulary: which token ids TIP penalises for a given tokenizer and trigger list.

Owns the rules of section 2 of the behaviour contract (single-token hits, multi-token triggers that
are completed by a conditional penalty, special tokens excluded) and the discovery of think markers.
Works with any Hugging Face tokenizer or a bare `tokenizers.Tokenizer`; imports neither.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tip_decode.core.config import DEFAULT_TRIGGERS, parse_triggers
from tip_decode.core.pieces import TokenTexts, backend_config, byte_level_encoder, full_config, scheme_from_config, token_texts

logger = logging.getLogger(__name__)

#: Think-marker spellings of the reasoning model families we know, tried in order.
THINK_MARKER_PAIRS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
    ("<|thinking|>", "<|/thinking|>"),
)

#: The variants of a trigger are also encoded after this text and cut from it, which gives their
#: spelling in the middle of a sequence (SentencePiece encodes a text's first word with a `▁`
#: that the same word after a newline does not have). A newline never merges with a letter.
_CONTEXT = "\n"


class TokenizerView:
    """The handful of tokenizer operations the vocabulary needs, over either tokenizer library.

    Each token's mid-sequence text (`token_texts`) is read from the tokenizer's pieces through its
    `tokenizers` backend (see `tip_decode.core.pieces`), computed once per tokenizer object and
    shared by every vocabulary built from it.
    """

    def __init__(self, tokenizer: Any) -> None:
        if _is_hf_tokenizer(tokenizer):
            self.kind = "transformers"
            backend = getattr(tokenizer, "backend_tokenizer", None)
            self.backend = backend if _is_tokenizers_tokenizer(backend) else None
        elif _is_tokenizers_tokenizer(tokenizer):
            self.kind = "tokenizers"
            self.backend = tokenizer
        else:
            raise TypeError(
                "expected a Hugging Face tokenizer (transformers.PreTrainedTokenizerBase) or a "
                f"tokenizers.Tokenizer, but got {type(tokenizer).__module__}.{type(tokenizer).__qualname__}"
            )
        self.tokenizer = tokenizer
        self._texts: TokenTexts | None = None
        self._pieces: dict[str, int] | None = None
        self._text_encoder: Any = None

    @property
    def size(self) -> int:
        if self.kind == "transformers":
            return len(self.tokenizer)
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """`text` as ids (no special tokens added), as the tokenizer's own tokenizer.json encodes it.

        The one way user text becomes ids (trigger words, a budget's forced word, any text a rule
        forces, a response analysed from its text). transformers 5 loads DeepSeek-V3/R1 tokenizers
        with a pre-tokenizer that drops whitespace (" Wait" becomes "Wait"; huggingface/transformers#45488):
        there, text is encoded with the byte-level pre-tokenizer their file declares.
        """
        return self._encoder()(text)

    def _loaded_encode(self, text: str) -> list[int]:
        """`text` as the loaded tokenizer object encodes it (what `encode` repairs)."""
        if self.kind == "transformers":
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        if self.kind == "transformers":
            return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def piece(self, token_id: int) -> str:
        if self.kind == "transformers":
            return str(self.tokenizer.convert_ids_to_tokens(int(token_id)))
        return str(self.tokenizer.id_to_token(int(token_id)))

    def token_to_id(self, piece: str) -> int | None:
        if self.backend is not None:
            found = self.backend.token_to_id(piece)
            return None if found is None else int(found)
        if self._pieces is None:
            self._pieces = dict(self.tokenizer.get_vocab())
        return self._pieces.get(piece)

    def special_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        if self.kind == "transformers":
            ids.update(int(i) for i in self.tokenizer.all_special_ids if i is not None)
            decoder = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        else:
            decoder = self.tokenizer.get_added_tokens_decoder()
        ids.update(int(i) for i, tok in decoder.items() if getattr(tok, "special", False))
        return frozenset(ids)

    # ----- pieces -----

    def _added_contents(self) -> dict[int, str]:
        source = self.backend if self.backend is not None else self.tokenizer
        getter = getattr(source, "get_added_tokens_decoder", None)
        decoder = getter() if callable(getter) else getattr(source, "added_tokens_decoder", {}) or {}
        return {int(i): str(getattr(tok, "content", tok)) for i, tok in decoder.items()}

    def _piece_list(self) -> list[str | None]:
        size = self.size
        pieces: list[str | None] = [None] * size
        if self.backend is not None:
            for piece, index in self.backend.get_vocab(with_added_tokens=True).items():
                if 0 <= index < size:
                    pieces[index] = piece
        else:
            for index, piece in enumerate(self.tokenizer.convert_ids_to_tokens(list(range(size)))):
                pieces[index] = piece if isinstance(piece, str) else None
        return pieces

    def token_texts(self) -> TokenTexts:
        """Every token's text as it reads in the middle of a sequence (see `tip_decode.core.pieces`)."""
        if self._texts is None:
            pieces = self._piece_list()
            added = self._added_contents()
            config = backend_config(self.backend) if self.backend is not None else None
            scheme = scheme_from_config(config, [None if i in added else p for i, p in enumerate(pieces)])
            if scheme.repaired:
                logger.warning(
                    "the tokenizer's decoder and pre-tokenizer are not byte-level, but its vocabulary is "
                    "(transformers 5 loads DeepSeek-V3/R1 tokenizers like this, huggingface/transformers#45488): "
                    "reading its pieces as byte-level and encoding trigger words with a byte-level pre-tokenizer"
                )
            self._texts = token_texts(pieces, scheme, added, decode_one=lambda i: self.decode([i]))
        return self._texts

    def variant_encodings(self, text: str) -> list[list[int]]:
        """How the tokenizer spells `text` alone and in the middle of a sequence (after a newline)."""
        encode = self.encode
        out = [encode(text)]
        context = encode(_CONTEXT)
        after = encode(_CONTEXT + text)
        if after[: len(context)] == context and after[len(context) :] and after[len(context) :] not in out:
            out.append(after[len(context) :])
        return out

    def _encoder(self) -> Any:
        """The function `encode` runs: the loaded tokenizer's, or the repaired byte-level one."""
        if self._text_encoder is None:
            encode = self._loaded_encode
            # Only a `tokenizers` backend can be mis-loaded that way; reading its pieces is cached.
            if self.backend is not None and self.token_texts().scheme.repaired:
                config = full_config(self.backend)
                if config is not None:
                    encoder = byte_level_encoder(config, getattr(self.tokenizer, "name_or_path", None))
                    encode = lambda text: list(encoder.encode(text, add_special_tokens=False).ids)  # noqa: E731
            self._text_encoder = encode
        return self._text_encoder


def _is_hf_tokenizer(obj: Any) -> bool:
    return all(hasattr(obj, name) for name in ("batch_decode", "convert_ids_to_tokens", "all_special_ids", "get_vocab"))


def _is_tokenizers_tokenizer(obj: Any) -> bool:
    return all(hasattr(obj, name) for name in ("decode_batch", "get_vocab_size", "id_to_token", "get_added_tokens_decoder"))


@dataclass(frozen=True)
class ThinkMarkers:
    """Single-token delimiters of the reasoning block, or None where the tokenizer has none."""

    start_id: int | None = None
    end_id: int | None = None
    start_text: str | None = None
    end_text: str | None = None

    @property
    def available(self) -> bool:
        return self.start_id is not None and self.end_id is not None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> ThinkMarkers:
        view = tokenizer if isinstance(tokenizer, TokenizerView) else TokenizerView(tokenizer)
        for start, end in THINK_MARKER_PAIRS:
            start_id, end_id = view.token_to_id(start), view.token_to_id(end)
            if start_id is not None and end_id is not None:
                return cls(int(start_id), int(end_id), start, end)
        return cls()

    @classmethod
    def from_ids(cls, start_id: int | None, end_id: int | None) -> ThinkMarkers:
        return cls(start_id=start_id, end_id=end_id)


@dataclass(frozen=True)
class MultiTokenTrigger:
    """A trigger spelling that the tokenizer splits into several tokens.

    Only `completion` is penalised, and only while the generated tail equals `prefix` with
    `prefix[0]` starting a word. `prefix_starts_with_space` records whether `prefix[0]`'s own text
    starts with whitespace (then it starts a word whatever precedes it).
    """

    trigger: str
    variant: str
    prefix: tuple[int, ...]
    completion: int
    prefix_starts_with_space: bool

    @property
    def length(self) -> int:
        return len(self.prefix) + 1


@dataclass(frozen=True, eq=False)
class SwitchVocabulary:
    """Token ids that open a new thought, for one tokenizer and one trigger list.

    Build it with `SwitchVocabulary.from_tokenizer(tokenizer, triggers)`. `token_ids` is the sorted
    tuple of single-token hits; `multi_token` the multi-token trigger spellings; `think` the think
    markers found in the tokenizer.

    Example:
        The demo model's word-level tokenizer (shipped with the package); any `tokenizers.Tokenizer`
        or transformers tokenizer works the same way:

        >>> from tokenizers import Tokenizer
        >>> from tip_decode.demo import MODEL_DIR
        >>> tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
        >>> vocab = SwitchVocabulary.from_tokenizer(tok, ["alternatively", "WAIT"])
        >>> vocab.triggers, [tok.id_to_token(i) for i in vocab.token_ids]
        (('alternatively', 'wait'), ['Alternatively', 'Wait'])
    """

    triggers: tuple[str, ...]
    token_ids: tuple[int, ...]
    multi_token: tuple[MultiTokenTrigger, ...]
    think: ThinkMarkers
    vocab_size: int
    special_ids: frozenset[int]
    #: For every id: True when the token's text ends in a non-letter (or is empty), so that the next
    #: token starts a word. Used by the multi-token rule.
    ends_word: np.ndarray = field(repr=False)
    #: id -> the trigger a single-token hit matched, and its decoded text (for tables and analysis).
    hit_trigger: dict[int, str] = field(repr=False, default_factory=dict)
    token_text: dict[int, str] = field(repr=False, default_factory=dict)

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        triggers: Iterable[str] | str = DEFAULT_TRIGGERS,
        think_markers: ThinkMarkers | None = None,
    ) -> SwitchVocabulary:
        """Build the switch vocabulary of `tokenizer` for `triggers` (a list, or a preset name).

        Raises:
            TypeError: `tokenizer` is neither a Hugging Face tokenizer nor a `tokenizers.Tokenizer`.
            ValueError: the trigger list is empty, or a trigger yields no penalisable token.
        """
        trigger_tuple = parse_triggers(triggers)
        view = view_of(tokenizer)
        key = (trigger_tuple, think_markers)
        cached = _cache_get(tokenizer, key)
        if cached is not None:
            return cached
        vocab = _build(view, trigger_tuple, think_markers)
        _cache_put(tokenizer, key, vocab)
        return vocab

    @property
    def completion_ids(self) -> tuple[int, ...]:
        return tuple(sorted({m.completion for m in self.multi_token}))

    @property
    def penalised_ids(self) -> tuple[int, ...]:
        """Every id that can receive the penalty (single-token hits and multi-token completions)."""
        return tuple(sorted(set(self.token_ids) | set(self.completion_ids)))

    @property
    def max_prefix_length(self) -> int:
        return max((len(m.prefix) for m in self.multi_token), default=0)

    def default_scope(self) -> str:
        """What scope "auto" resolves to for this tokenizer."""
        return "think" if self.think.available else "all"

    def resolve_scope(self, scope: str) -> str:
        if scope == "auto":
            return self.default_scope()
        if scope == "think" and not self.think.available:
            raise ValueError(
                "`scope` is 'think', but the tokenizer has no single-token think markers "
                "(tried " + ", ".join(f"{a}/{b}" for a, b in THINK_MARKER_PAIRS) + "); use scope='all'"
            )
        return scope

    def with_think_markers(self, think: ThinkMarkers) -> SwitchVocabulary:
        """The same vocabulary with think markers from elsewhere (e.g. vLLM's reasoning parser)."""
        from dataclasses import replace

        return replace(self, think=think)

    def ends_word_at(self, token_id: int) -> bool:
        return bool(self.ends_word[token_id]) if 0 <= token_id < len(self.ends_word) else True


def view_of(tokenizer: Any) -> TokenizerView:
    """The shared `TokenizerView` of `tokenizer` (one per tokenizer object, so texts are read once)."""
    if isinstance(tokenizer, TokenizerView):
        return tokenizer
    view = _VIEWS.get(tokenizer) if _weakrefable(tokenizer) else None
    if view is None:
        view = TokenizerView(tokenizer)
        if _weakrefable(tokenizer):
            _VIEWS[tokenizer] = view
    return view


def trigger_variants(trigger: str) -> list[str]:
    """`word`, ` word`, `Word`, ` Word` of a (lowercased) trigger, in that order, without repeats."""
    lowered = trigger.lower()
    capitalised = lowered[:1].upper() + lowered[1:]
    out: list[str] = []
    for variant in (lowered, " " + lowered, capitalised, " " + capitalised):
        if variant not in out:
            out.append(variant)
    return out


def _hit(text: str, trigger: str, ends_inside: bool) -> bool:
    """Lowercased text (leading whitespace removed) is `trigger` followed by nothing or a non-letter.

    A token that ends inside a character right after the trigger is not a hit: the character a
    later token completes is unknown, and is a letter far more often than not (`Wait` + half of `é`).
    """
    if not text.startswith(trigger):
        return False
    if len(text) == len(trigger):
        return not ends_inside
    return not text[len(trigger)].isalpha()


def _build(view: TokenizerView, triggers: tuple[str, ...], think_markers: ThinkMarkers | None) -> SwitchVocabulary:
    think = think_markers if think_markers is not None else ThinkMarkers.from_tokenizer(view)
    texts = view.token_texts()
    size = len(texts.text)
    excluded = set(view.special_ids())
    excluded.update(i for i in (think.start_id, think.end_id) if i is not None)
    ends_word = texts.ends_word()

    hit_trigger: dict[int, str] = {}
    for token_id, text in enumerate(texts.text):
        if token_id in excluded or texts.starts_inside[token_id]:
            continue
        stripped = text.lstrip().lower()
        # One C-level startswith over all triggers filters almost every token before the exact check.
        if not stripped or not stripped.startswith(triggers):
            continue
        for trigger in triggers:
            if _hit(stripped, trigger, bool(texts.ends_inside[token_id])):
                hit_trigger[token_id] = trigger
                break

    multi: dict[tuple[tuple[int, ...], int], MultiTokenTrigger] = {}
    triggers_with_tokens = set(hit_trigger.values())
    for trigger in triggers:
        for variant in trigger_variants(trigger):
            for ids in view.variant_encodings(variant):
                if len(ids) < 2 or any(i in excluded or not 0 <= i < size for i in ids):
                    continue
                prefix, completion = tuple(ids[:-1]), ids[-1]
                if (prefix, completion) in multi:
                    continue
                multi[(prefix, completion)] = MultiTokenTrigger(
                    trigger=trigger,
                    variant=variant,
                    prefix=prefix,
                    completion=completion,
                    prefix_starts_with_space=texts.starts_with_space(prefix[0]),
                )
                triggers_with_tokens.add(trigger)

    missing = [t for t in triggers if t not in triggers_with_tokens]
    if missing:
        raise ValueError(f"trigger {missing[0]!r} yields no penalisable token for this tokenizer (it encodes only to special tokens, or to nothing)")
    ids = tuple(sorted(hit_trigger))
    token_text = {i: texts.display(i) for i in ids}
    for m in multi.values():
        for i in (*m.prefix, m.completion):
            token_text.setdefault(i, texts.display(i))
    return SwitchVocabulary(
        triggers=triggers,
        token_ids=ids,
        multi_token=tuple(sorted(multi.values(), key=lambda m: (m.prefix, m.completion))),
        think=think,
        vocab_size=size,
        special_ids=frozenset(excluded),
        ends_word=ends_word,
        hit_trigger=hit_trigger,
        token_text=token_text,
    )


# Vocabularies are cached per tokenizer object (weakly, so a dropped tokenizer frees its cache): vLLM
# builds one per distinct per-request trigger list, and reading 150k pieces costs a fraction of a second.
_VIEWS: weakref.WeakKeyDictionary[Any, TokenizerView] = weakref.WeakKeyDictionary()
_VOCABS: weakref.WeakKeyDictionary[Any, dict[Any, SwitchVocabulary]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _weakrefable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def _cache_get(tokenizer: Any, key: Any) -> SwitchVocabulary | None:
    if not _weakrefable(tokenizer):
        return None
    with _LOCK:
        return _VOCABS.get(tokenizer, {}).get(key)


def _cache_put(tokenizer: Any, key: Any, vocab: SwitchVocabulary) -> None:
    if _weakrefable(tokenizer):
        with _LOCK:
            _VOCABS.setdefault(tokenizer, {})[key] = vocab
