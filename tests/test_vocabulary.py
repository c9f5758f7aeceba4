"""The switch vocabulary on every real tokenizer in ../shared/tokenizers."""

import pytest
from conftest import TOKENIZER_NAMES, load_hf_tokenizer

from tip_decode import SwitchVocabulary, ThinkMarkers

QWEN_FAMILY = ("qwen2.5", "qwen3", "deepseek-r1-distill-qwen")
LLAMA_FAMILY = ("deepseek-r1-distill-llama", "llama-3.1")
THINK_IDS = {
    "qwen2.5": (None, None),
    "qwen3": (151667, 151668),
    "deepseek-r1-distill-qwen": (151648, 151649),
    "deepseek-r1-distill-llama": (128013, 128014),
    "llama-3.1": (None, None),
}


@pytest.mark.parametrize("name", QWEN_FAMILY)
def test_qwen_vocabulary_facts(name):
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer(name), ["alternatively"])
    # README facts: `Alternatively` 92014 and ` Alternatively` 38478 are hits; `altern` 40412 is not.
    assert {92014, 38478} <= set(vocab.token_ids)
    assert 40412 not in vocab.penalised_ids or 40412 in vocab.completion_ids
    assert 40412 not in vocab.token_ids
    # lowercase `alternatively` is `altern` + `atively`: `atively` is penalised only after `altern`.
    assert any(m.prefix == (40412,) and m.completion == 7887 for m in vocab.multi_token)
    assert 7887 not in vocab.token_ids


@pytest.mark.parametrize("name", QWEN_FAMILY)
def test_qwen_wait_and_hmm(name):
    vocab = SwitchVocabulary.from_tokenizer(load_hf_tokenizer(name), ["wait", "hmm"])
    assert {14190, 13824, 80022} <= set(vocab.token_ids)
    assert vocab.hit_trigger[14190] == "wait" and vocab.hit_trigger[80022] == "hmm"
    texts = {i: vocab.token_text[i].strip().lower() for i in vocab.token_ids}
    # "Waiting" and friends are not hits: a hit is the trigger followed by nothing or a non-letter.
    assert all(not t.startswith("waiti") and not t.startswith("waits") for t in texts.values())


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_every_hit_obeys_the_rule_and_no_special_token_is_penalised(name):
    tok = load_hf_tokenizer(name)
    vocab = SwitchVocabulary.from_tokenizer(tok, "reflection")
    specials = set(tok.all_special_ids)
    assert not specials & set(vocab.penalised_ids)
    think = vocab.think
    assert think.start_id not in vocab.penalised_ids and think.end_id not in vocab.penalised_ids
    for token_id in vocab.token_ids:
        text = vocab.token_text[token_id]
        for marker, space in (("\u0120", " "), ("\u010a", "\n"), ("\u0109", "\t"), ("\u010d", "\r"), ("\u2581", " ")):
            text = text.replace(marker, space)
        text = text.lstrip().lower()
        trigger = vocab.hit_trigger[token_id].lower()
        assert text.startswith(trigger)
        assert len(text) == len(trigger) or not text[len(trigger)].isalpha(), (token_id, text)
    # the multi-token prefixes never get the unconditional penalty
    for m in vocab.multi_token:
        assert m.prefix[0] not in vocab.token_ids or vocab.hit_trigger.get(m.prefix[0]) is not None


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
    tok = load_hf_tokenizer(name)
    vocab = SwitchVocabulary.from_tokenizer(tok, ["alternatively"])
    assert tok.convert_tokens_to_ids("\u0120Alternatively") in vocab.token_ids
    assert tok.convert_tokens_to_ids("Alternatively") in vocab.token_ids


def test_bare_tokenizers_tokenizer_gives_the_same_vocabulary(tokenizers_dir):
    from tokenizers import Tokenizer

    bare = Tokenizer.from_file(str(tokenizers_dir / "qwen3" / "tokenizer.json"))
    hf = load_hf_tokenizer("qwen3")
    a = SwitchVocabulary.from_tokenizer(bare, "reflection")
    b = SwitchVocabulary.from_tokenizer(hf, "reflection")
    assert a.token_ids == b.token_ids
    assert [(m.prefix, m.completion) for m in a.multi_token] == [(m.prefix, m.completion) for m in b.multi_token]
    assert (a.think.start_id, a.think.end_id) == (151667, 151668)


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
