"""The switch vocabulary against an independent oracle (tests/vocab_oracle.py), on every shared
tokenizer and on tokenizers trained in the tests, loaded both as `tokenizers.Tokenizer` and through
transformers; plus the facts the README and the contract name."""

import numpy as np
import pytest
import transformers
from conftest import TOKENIZER_NAMES, load_hf_tokenizer, load_raw_tokenizer, wrap_as_hf
from trained_tokenizers import TRAINED_NAMES
from vocab_oracle import oracle_for

from tip_decode import SwitchVocabulary, ThinkMarkers, TIPConfig, find_switches
from tip_decode.core.config import TRIGGER_PRESETS
from tip_decode.core.vocabulary import view_of

QWEN_FAMILY = ("qwen2.5", "qwen3", "deepseek-r1-distill-qwen")
LLAMA_FAMILY = ("deepseek-r1-distill-llama", "llama-3.1")
THINK_IDS = {
    "qwen2.5": (None, None),
    "qwen3": (151667, 151668),
    "deepseek-r1-distill-qwen": (151648, 151649),
    "deepseek-r1-distill-llama": (128013, 128014),
    "llama-3.1": (None, None),
    "mistral-7b-v0.1": (None, None),
}
#: Every preset word, in the cases users type them, and a phrase with a hyphen.
TRIGGERS = [*TRIGGER_PRESETS["reflection"], "HMM", "Wait", "ALTERNATIVELY", "No wait"]
ALL_NAMES = TOKENIZER_NAMES + TRAINED_NAMES


def load(name: str, loader: str):
    if loader == "tokenizers":
        return load_raw_tokenizer(name)
    if name in TRAINED_NAMES:
        return wrap_as_hf(load_raw_tokenizer(name))
    return load_hf_tokenizer(name)


def assert_equals_oracle(vocab: SwitchVocabulary, rules, special_ids: set[int]) -> None:
    # Every token that qualifies is listed, and only those, with the trigger it matched.
    assert set(vocab.token_ids) == rules.token_ids
    assert vocab.hit_trigger == rules.hit_trigger
    got = {(m.trigger, m.prefix, m.completion, m.prefix_starts_with_space) for m in vocab.multi_token}
    assert got == {(p.trigger, p.prefix, p.completion, p.starts_with_space) for p in rules.patterns}
    assert np.array_equal(vocab.ends_word, np.array(rules.ends_word, dtype=bool))
    assert (vocab.think.start_id, vocab.think.end_id) == (rules.think_start, rules.think_end)
    assert not special_ids & set(vocab.penalised_ids)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_oracle_reads_pieces_as_the_tokenizer_decodes_them(name):
    # The oracle's own reading of every piece equals the tokenizer's decoder in mid-sequence.
    assert oracle_for(load_raw_tokenizer(name)).check_texts() > 1000


@pytest.mark.parametrize("loader", ["tokenizers", "transformers"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_vocabulary_equals_the_oracle(name, loader):
    oracle = oracle_for(load_raw_tokenizer(name))
    tok = load(name, loader)
    vocab = SwitchVocabulary.from_tokenizer(tok, TRIGGERS)
    rules = oracle.rules(TRIGGERS)
    assert rules.token_ids and rules.patterns  # both rules have work to do on every tokenizer
    assert_equals_oracle(vocab, rules, oracle.special)


@pytest.mark.parametrize("name", QWEN_FAMILY)
def test_qwen_vocabulary_facts(name):
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer(name), ["alternatively"])
    # README facts: `Alternatively` 92014 and ` Alternatively` 38478 are hits; `altern` 40412 is not.
    assert {92014, 38478} <= set(vocab.token_ids)
    assert 40412 not in vocab.penalised_ids
    # lowercase `alternatively` is `altern` + `atively`: `atively` is penalised only after `altern`.
    assert any(m.prefix == (40412,) and m.completion == 7887 for m in vocab.multi_token)
    assert 7887 not in vocab.token_ids


@pytest.mark.parametrize("name", QWEN_FAMILY)
def test_qwen_wait_and_hmm(name):
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer(name), ["wait", "hmm"])
    assert {14190, 13824, 80022} <= set(vocab.token_ids)
    assert vocab.hit_trigger[14190] == "wait" and vocab.hit_trigger[80022] == "hmm"
    # "Waiting" is not a hit: a hit is the trigger followed by nothing or a non-letter.
    tok = load_hf_tokenizer(name)
    waiting = tok.convert_tokens_to_ids("Waiting")
    assert isinstance(waiting, int) and waiting not in vocab.penalised_ids


def test_mistral_sentencepiece_facts():
    """`Alternatively` = `▁Altern` + `atively` and `Hmm` = `▁H` + `mm`; the `▁` starts a word."""
    tok = load_raw_tokenizer("mistral-7b-v0.1")
    vocab = SwitchVocabulary.from_tokenizer(tok, ["alternatively", "hmm"])
    altern, atively = tok.token_to_id("\u2581Altern"), tok.token_to_id("atively")
    h, mm = tok.token_to_id("\u2581H"), tok.token_to_id("mm")
    patterns = {(m.prefix, m.completion): m for m in vocab.multi_token}
    assert patterns[((altern,), atively)].prefix_starts_with_space
    assert patterns[((h,), mm)].prefix_starts_with_space
    # Mid-sequence, without a space before it ("\nHmm"), the word is `H` + `mm`: also a pattern,
    # which starts a word only after a non-letter.
    bare_h = tok.token_to_id("H")
    assert not patterns[((bare_h,), mm)].prefix_starts_with_space
    assert vocab.token_text[h] == " H"
    for text, expected in ((" So x. Alternatively, y", 1), (" So x. Hmm, y", 1), (" word Hmm", 1), (" xHmm", 0), ("\nHmm", 1)):
        ids = tok.encode(text, add_special_tokens=False).ids
        assert len(find_switches(vocab, ids, "all")) == expected, (text, tok.encode(text, add_special_tokens=False).tokens)


@pytest.mark.parametrize("name", ["qwen3", "llama-3.1", "deepseek-r1-distill-llama", "mistral-7b-v0.1"])
def test_letters_that_look_like_markers_end_no_word(name):
    """`č`, `Ġ`, `ĉ` inside a word are letters: `peč` + `altern` + `atively` is one word, no switch."""
    tok = load_raw_tokenizer(name)
    vocab = SwitchVocabulary.from_tokenizer(tok, ["alternatively"])
    for word in ("peč", "oleč", "aĠ", "aĉ", "aĊ"):
        ids = tok.encode(f" {word}alternatively", add_special_tokens=False).ids
        assert find_switches(vocab, ids, "all") == [], (word, tok.encode(f" {word}alternatively", add_special_tokens=False).tokens)
        spaced = tok.encode(f" {word} alternatively", add_special_tokens=False).ids
        assert len(find_switches(vocab, spaced, "all")) == 1
    cz = tok.encode(" peč", add_special_tokens=False).ids[-1]
    assert not vocab.ends_word_at(cz)


@pytest.mark.parametrize("name", ["deepseek-r1-distill-qwen", "deepseek-r1-distill-llama"])
def test_transformers_byte_level_bug_does_not_reach_the_vocabulary(name):
    """Some transformers 5 releases load these with a SentencePiece decoder and pre-tokenizer on a
    byte-level vocabulary (huggingface/transformers#45488): tokens decode as `ĠAlternatively`, and
    " another approach" encodes without its spaces; 4.x and later 5.x releases load them right.
    Whichever transformers is installed, the vocabulary reads the right texts and spellings, and
    repairs the pieces exactly when the loaded tokenizer has the defect."""
    hf = load_hf_tokenizer(name)
    raw = load_raw_tokenizer(name)
    hit = raw.token_to_id("\u0120Alternatively")
    defective = hf.decode([hit]) != " Alternatively"
    vocab = SwitchVocabulary.from_tokenizer(hf, ["alternatively", "another approach"])
    assert view_of(hf).token_texts().scheme.repaired is defective, f"transformers {transformers.__version__}: defect {defective}"
    assert vocab.token_text[hit] == " Alternatively"
    spelled = raw.encode(" another approach", add_special_tokens=False).ids
    assert any(m.prefix == tuple(spelled[:-1]) and m.completion == spelled[-1] for m in vocab.multi_token)
    # The same answer as straight from tokenizer.json (which never had the defect).
    assert vocab.token_ids == SwitchVocabulary.from_tokenizer(raw, ["alternatively", "another approach"]).token_ids


@pytest.mark.parametrize("name", ["qwen3", "mistral-7b-v0.1", "wordpiece", "bpe-byte-fallback"])
def test_triggers_are_case_insensitive(name):
    """ "HMM", "Hmm" and "hmm" are one trigger, and its variants come from the lowercased word."""
    tok = load_raw_tokenizer(name)
    lower = SwitchVocabulary.from_tokenizer(tok, ["hmm", "alternatively"])
    for spelling in (["HMM", "ALTERNATIVELY"], ["Hmm", "Alternatively"], ["hMm", "aLTERNATIVELY"]):
        other = SwitchVocabulary.from_tokenizer(tok, spelling)
        assert other.triggers == ("hmm", "alternatively")
        assert other.token_ids == lower.token_ids
        assert [(m.prefix, m.completion) for m in other.multi_token] == [(m.prefix, m.completion) for m in lower.multi_token]
    assert TIPConfig(triggers=["HMM", "Hmm", "hmm"]).triggers == ("hmm",)


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_think_markers_and_auto_scope(name):
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer(name))
    start, end = THINK_IDS[name]
    assert (vocab.think.start_id, vocab.think.end_id) == (start, end)
    assert vocab.default_scope() == ("think" if start is not None else "all")
    if start is None:
        with pytest.raises(ValueError, match="no single-token think markers"):
            vocab.resolve_scope("think")


@pytest.mark.parametrize("name", LLAMA_FAMILY)
def test_llama_vocabulary_finds_both_spellings(name):
    tok = load_raw_tokenizer(name)
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer(name), ["alternatively"])
    assert tok.token_to_id("\u0120Alternatively") in vocab.token_ids
    assert tok.token_to_id("Alternatively") in vocab.token_ids


def test_slow_tokenizer_without_a_tokenizers_backend():
    """A Python-only tokenizer (ByT5: one token per byte) falls back to decoding each token alone;
    a byte that is part of a character ends no word."""
    from transformers import ByT5Tokenizer

    tok = ByT5Tokenizer()
    vocab = SwitchVocabulary.from_tokenizer(tok, ["wait", "hmm"])
    assert vocab.token_ids == () and len(vocab.multi_token) == 8
    for text, expected in ((" x. Wait, hmm", [4, 10]), (" éwait", []), (" é wait", [4]), ("xwait", [])):
        assert [e.position for e in find_switches(vocab, tok.encode(text, add_special_tokens=False), "all")] == expected, text


def test_multi_token_phrase():
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer("qwen3"), ["another approach"])
    tok = load_hf_tokenizer("qwen3")
    ids = tok.encode(" Another approach", add_special_tokens=False)
    assert len(ids) == 2
    assert any(m.prefix == tuple(ids[:-1]) and m.completion == ids[-1] for m in vocab.multi_token)
    assert ids[-1] not in vocab.token_ids


def test_vocabulary_is_cached_per_tokenizer():
    tok = load_hf_tokenizer("qwen3")
    assert SwitchVocabulary.from_tokenizer(tok, ["wait"]) is SwitchVocabulary.from_tokenizer(tok, "wait")


def test_trigger_with_no_token_is_an_error():
    tok = load_hf_tokenizer("qwen3")
    with pytest.raises(ValueError, match="trigger '<\\|im_end\\|>' yields no penalisable token"):
        SwitchVocabulary.from_tokenizer(tok, ["<|im_end|>"])


def test_empty_trigger_list_is_an_error():
    with pytest.raises(ValueError, match="`triggers` has to name at least one trigger word"):
        SwitchVocabulary.from_tokenizer(load_hf_tokenizer("qwen3"), [])


@pytest.mark.parametrize("thing", ["qwen3", 42, object(), {"vocab": 1}])
def test_wrong_tokenizer_kind_is_a_type_error(thing):
    with pytest.raises(TypeError, match="expected a Hugging Face tokenizer .* or a tokenizers.Tokenizer"):
        SwitchVocabulary.from_tokenizer(thing)


def test_explicit_think_markers_override_discovery():
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer("qwen2.5"), think_markers=ThinkMarkers(151644, 151645))
    assert vocab.think.available and vocab.default_scope() == "think"
