"""The demo model's tokenizer: one token per word of the step-search task.

Built with the `tokenizers` library (a word-level vocabulary split on whitespace) and wrapped as a
`transformers.PreTrainedTokenizerFast`, so that `AutoTokenizer.from_pretrained` loads it from the
shipped folder. "Alternatively" and "Wait" are ordinary vocabulary words, so the switch vocabulary
of the core finds them exactly as it finds them in a real reasoning model's tokenizer; `<think>` and
`</think>` are ordinary words too (not special), so decoded responses keep them, as Qwen3's do.
"""

from __future__ import annotations

from typing import Any

from tip_decode.demo.task import (
    ASSISTANT,
    BOX_CLOSE,
    BOX_OPEN,
    EOS,
    MODULUS,
    PAD,
    STEP_SIZES,
    SWITCH_WORDS,
    THINK_END,
    THINK_START,
    UNK,
    USER,
    step_token,
)

SPECIAL_TOKENS = (PAD, UNK, EOS, USER, ASSISTANT)

#: Renders a conversation the way the traces were trained: the prompt ends inside an open think
#: block, so TIP's "think" scope starts at the first generated token.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "<|user|> {{ message['content'] }} {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> <think> {% endif %}"
)


def vocabulary_words() -> list[str]:
    words = [*SPECIAL_TOKENS, THINK_START, THINK_END, "start", "goal", "steps", *SWITCH_WORDS, BOX_OPEN, BOX_CLOSE]
    words += [str(n) for n in range(MODULUS)]
    words += [step_token(d) for d in STEP_SIZES]
    return words


def build_tokenizer() -> Any:
    """A `PreTrainedTokenizerFast` over the task's word-level vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(vocabulary_words())}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Word pieces decode joined by single spaces, so a response reads like the training text.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=EOS,
        bos_token=None,
        model_max_length=512,
        # transformers 4.x fast tokenizers return token_type_ids by default, which `generate` rejects.
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
