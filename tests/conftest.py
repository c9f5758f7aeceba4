"""Shared fixtures: the real tokenizers and data shipped in tests/vendored/, and tiny random-weight models.

The tokenizers and data sets are unpacked from tests/vendored/ on first use (tests/vendored.py);
TIP_DECODE_TOKENIZERS and TIP_DECODE_DATA point elsewhere when set. A missing folder fails the tests
that need it instead of skipping them, so a run can never pass without exercising real tokenizers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest_plugins = ["vllm_fixtures"]

TOKENIZER_NAMES = ("qwen2.5", "qwen3", "deepseek-r1-distill-qwen", "deepseek-r1-distill-llama", "llama-3.1", "mistral-7b-v0.1")


def shared_dir(env: str, sub: str) -> Path:
    """The tokenizers or data folder: `env` when set, else the vendored copies (tests/vendored.py)."""
    import vendored

    path = vendored.tokenizers_dir() if sub == "tokenizers" else vendored.data_dir()
    if not path.is_dir():
        pytest.fail(f"{sub} folder not found at {path} ({env} is set to a folder that does not exist)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def tokenizers_dir() -> Path:
    return shared_dir("TIP_DECODE_TOKENIZERS", "tokenizers")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared_dir("TIP_DECODE_DATA", "data")


_TOKENIZERS: dict[str, object] = {}


def load_hf_tokenizer(name: str):
    """A real tokenizer of the tokenizers folder (`shared_dir`), loaded once per test session."""
    if name not in _TOKENIZERS:
        from transformers import AutoTokenizer

        path = shared_dir("TIP_DECODE_TOKENIZERS", "tokenizers") / name
        _TOKENIZERS[name] = _transformers4_fallback(path) or AutoTokenizer.from_pretrained(str(path))
    return _TOKENIZERS[name]


def _transformers4_fallback(path: Path):
    """The same fast tokenizer class built from tokenizer.json, when transformers 4.x cannot read the
    folder's tokenizer_config.json: a config saved by transformers 5 lists `extra_special_tokens`
    as a list, which 4.x reads as a dict (AttributeError). Hub checkpoints saved by 4.x load as usual;
    this keeps the floor environment (transformers 4.51) on the same shared files."""
    import transformers

    config = json.loads((path / "tokenizer_config.json").read_text())
    if int(transformers.__version__.split(".")[0]) >= 5 or not isinstance(config.get("extra_special_tokens"), list):
        return None
    fast_class = getattr(transformers, config["tokenizer_class"].removesuffix("Fast") + "Fast")
    special = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if isinstance(config.get(k), str)}
    return fast_class(tokenizer_file=str(path / "tokenizer.json"), **special)


_RAW: dict[str, object] = {}


def load_raw_tokenizer(name: str):
    """A `tokenizers.Tokenizer`: a shared tokenizer straight from its tokenizer.json, or one of the
    tokenizers trained inside the tests (tests/trained_tokenizers.py), loaded once per session."""
    if name not in _RAW:
        from tokenizers import Tokenizer
        from trained_tokenizers import TRAINED_NAMES, load_trained

        if name in TRAINED_NAMES:
            _RAW[name] = load_trained(name, shared_dir("TIP_DECODE_DATA", "data"))
        else:
            _RAW[name] = Tokenizer.from_file(str(shared_dir("TIP_DECODE_TOKENIZERS", "tokenizers") / name / "tokenizer.json"))
    return _RAW[name]


def wrap_as_hf(raw):
    """A trained `tokenizers.Tokenizer` as a transformers tokenizer (`PreTrainedTokenizerFast`)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=raw)


@pytest.fixture(scope="session")
def qwen3_tokenizer(tokenizers_dir):
    return load_hf_tokenizer("qwen3")


def build_tiny_qwen2(path: Path, tokenizer_name: str = "qwen3", seed: int = 0, logit_scale: float = 1.0) -> Path:
    """Save a tiny random-weight Qwen2 model (and the real tokenizer) to `path`; returns `path`.

    hidden 128 with 2 heads gives head_dim 64, which vLLM's CPU attention accepts. `logit_scale`
    multiplies the output layer so raw logits are well separated (for cross-backend greedy parity).
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = load_hf_tokenizer(tokenizer_name)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer) + (-len(tokenizer)) % 64,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        torch_dtype="float32",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory) -> Path:
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


ALTERNATIVELY = 38478  # " Alternatively" in the Qwen vocabulary


def build_switchy_model(path: Path) -> Path:
    """A tiny Qwen2 whose every token embedding is the same vector, so its final hidden state is one
    fixed vector H whatever the context; its output layer gets a large logit for " Alternatively" and
    a smaller one for end-of-text. Without TIP it says " Alternatively" at every step (a switch per
    token); with alpha=inf the word is banned and it ends at once: exact, not statistical, effects."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    build_tiny_qwen2(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        embed = model.model.embed_tokens.weight
        embed.copy_(embed[0].expand_as(embed))
        hidden = model.model(torch.tensor([[1, 2, 3]])).last_hidden_state[0, -1]
        unit = hidden / hidden.norm() ** 2  # lm_head row r = s * unit gives logit s
        model.lm_head.weight.mul_(0.0)
        model.lm_head.weight[ALTERNATIVELY] = 40.0 * unit
        model.lm_head.weight[tokenizer.eos_token_id] = 25.0 * unit
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def switchy_model_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2 that says " Alternatively" at every step (see `build_switchy_model`)."""
    return build_switchy_model(tmp_path_factory.mktemp("switchy"))


def pytest_collection_modifyitems(config, items):
    """Under CI (TIP_DECODE_REQUIRE_VLLM=1) a missing vLLM is a failure, never a silent skip."""
    if os.environ.get("TIP_DECODE_REQUIRE_VLLM") != "1":
        return
    try:
        import vllm  # noqa: F401
    except ImportError as err:
        raise pytest.UsageError(f"TIP_DECODE_REQUIRE_VLLM=1 but vllm cannot be imported: {err}") from None


@pytest.fixture(autouse=True)
def _restore_vllm_validation_tokenizer():
    """vLLM calls `validate_params` on the processor class, which validates vocabulary-dependent
    keys against the tokenizer of the last processor built in the process (a class attribute). A
    test that builds processors with its own tokenizer (the fuzz tests use the demo model's 62
    tokens) must not leave it behind for a later test's real engine: restore it after each test."""
    module = sys.modules.get("tip_decode.adapters.vllm.processor")
    saved = module.ReasoningInterventions.__dict__.get("_validation_tokenizer") if module is not None else None
    yield
    module = sys.modules.get("tip_decode.adapters.vllm.processor")
    if module is not None:
        module.ReasoningInterventions._validation_tokenizer = saved
