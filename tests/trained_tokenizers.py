"""Small tokenizers trained inside the tests with the `tokenizers` library, one per piece scheme.

The shared folder holds byte-level BPE (Qwen, Llama 3, DeepSeek) and one SentencePiece BPE
(Mistral). A user may bring any other kind, so the vocabulary is also checked on tokenizers we
train here: Unigram with metaspace, BPE with byte fallback (SentencePiece style, `<0x0A>` pieces),
WordPiece (`##` continuations), byte-level BPE, and BPE with an end-of-word suffix (`</w>`).
They train on MATH-500 text plus sentences that use the trigger words and multi-byte characters,
in about three seconds together.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

TRAINED_NAMES = ("unigram-metaspace", "bpe-byte-fallback", "wordpiece", "byte-level-bpe", "bpe-suffix")

_SENTENCES = [
    "Wait, let me check. Hmm, alternatively we could try another approach. Actually, no.",
    "peč oleč čaj žena Ġ Ċ ĉ naïve café 日本語のテキスト 😀 🤔 ≤ ∑ → 𝔽",
    "However, perhaps, maybe instead: hold on. On second thought, let me verify. But wait!",
    "Alternatively,\nHmm...\n\nWait\tok. HMM. ALTERNATIVELY. Let me double-check; let me reconsider.",
]

_CACHE: dict[str, Tokenizer] = {}


def _corpus(data_dir) -> list[str]:
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines() if line.strip()]
    return [r["problem"] for r in rows] + [r["solution"] for r in rows] + _SENTENCES * 30


def _with_byte_pieces(tokenizer: Tokenizer) -> Tokenizer:
    """Add SentencePiece byte-fallback pieces `<0x00>`…`<0xFF>` to a trained BPE model's vocabulary."""
    config = json.loads(tokenizer.to_str())
    vocab = config["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    config["model"]["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(config))


def load_trained(name: str, data_dir) -> Tokenizer:
    if name in _CACHE:
        return _CACHE[name]
    corpus = _corpus(data_dir)
    if name == "unigram-metaspace":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>"], unk_token="<unk>"))
    elif name == "bpe-byte-fallback":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=80))
        tok = _with_byte_pieces(tok)
    elif name == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=1500, special_tokens=["[UNK]", "[CLS]", "[SEP]"]))
    elif name == "byte-level-bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(
            corpus,
            trainers.BpeTrainer(vocab_size=1500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>", "<think>", "</think>"]),
        )
    elif name == "bpe-suffix":
        tok = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
        tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>"], end_of_word_suffix="</w>"))
    else:
        raise KeyError(name)
    _CACHE[name] = tok
    return tok
