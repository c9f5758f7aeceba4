"""Checks made before any model loads, and where a run's model and tokenizer came from.

Loading a model takes seconds to minutes; a mistake found after that (a folder that cannot be
written, a device that is not there, a response budget longer than the model's context) wastes the
wait. These checks need only the command's arguments, the model's `config.json` and its tokenizer.

`InputError` marks a problem with what the user asked for (the CLI exits with status 2 for it, as
for any usage error); everything else that goes wrong during a run is a runtime error (status 1).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

#: A Hugging Face Hub repository id: "name" or "namespace/name".
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


class InputError(ValueError):
    """The command's inputs are wrong (an option value, a path, a combination): a usage error."""


def looks_like_path(name: str) -> bool:
    """True when `name` can only be a local path (it cannot be a Hub repository id)."""
    return name.startswith(("/", "./", "../", "~", ".")) or "\\" in name or name.endswith("/") or os.path.isabs(name) or not _REPO_ID.fullmatch(name)


def resolve_source(name: str, what: str = "model") -> str:
    """The absolute path of a local model/tokenizer folder, or a Hub id unchanged.

    Raises `InputError` ("no such folder") for a name that can only be a path and does not exist,
    instead of letting transformers report it as an invalid Hub repository id.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"the {what} has to be a folder or a Hugging Face Hub id, but is {name!r}")
    expanded = os.path.expanduser(name)
    if os.path.exists(expanded):
        return os.path.abspath(expanded)
    if looks_like_path(name):
        raise InputError(f"no such folder: {name!r} (the {what} path does not exist)")
    return name


def same_source(first: str | None, second: str | None) -> bool:
    """Whether two recorded model/tokenizer names denote the same thing (same folder, or same Hub id)."""
    if first is None or second is None:
        return first == second
    if first == second:
        return True
    a, b = os.path.expanduser(first), os.path.expanduser(second)
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return False


def check_device(device: str | None) -> str:
    """The torch device to use: `device` validated (`cuda` without CUDA is an `InputError`), or the default."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device has to be a torch device such as 'cpu', 'cuda' or 'cuda:1', but is {device!r}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif parsed.type != "cpu":
        available = getattr(getattr(torch, parsed.type, None), "is_available", None)
        if not (callable(available) and available()):
            raise InputError(f"--device {device}: no {parsed.type} device is available on this machine; use --device cpu")
    return device


def check_output_dir(path: str | Path, create: bool = True) -> Path:
    """Check that files can be written in the output folder `path` (`InputError` otherwise).

    With `create` the folder is made (parents included) and a file is written and removed in it.
    Without, nothing is created: a folder that exists gets the same write test, and for one that does
    not, its nearest existing parent must be a writable folder (a mistake found later then leaves no
    empty folder behind).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} exists and is not a folder")
    if not create and not folder.exists():
        parent = folder.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"cannot write to the output folder {str(folder)!r}: {str(parent)!r} is not a writable folder")
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise InputError(f"cannot write to the output folder {str(folder)!r}: {err.strerror or err}") from None
    return folder


#: config.json keys that give a model's context length, most specific first.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def context_length(config: Any) -> int | None:
    """The longest sequence (prompt + response) a model's config allows, or None when it does not say."""
    for holder in (config, getattr(config, "text_config", None)):
        if holder is None:
            continue
        for key in _CONTEXT_KEYS:
            value = getattr(holder, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def check_context(max_new_tokens: int, longest_prompt: int, context: int | None, where: str) -> None:
    """`InputError` when the longest prompt plus `max_new_tokens` exceeds the model's context."""
    if context is None:
        return
    if longest_prompt + max_new_tokens > context:
        raise InputError(
            f"--max-new-tokens {max_new_tokens} plus the longest prompt ({longest_prompt} tokens) exceeds the "
            f"model's context of {context} tokens ({where}); use --max-new-tokens {max(1, context - longest_prompt)} or less"
        )


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """A short hash of a tokenizer's vocabulary (every piece and its id, added tokens included).

    Two tokenizers with the same fingerprint map every id to the same piece, so token ids written by
    one read the same with the other. None when the tokenizer does not expose its vocabulary.
    """
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if not callable(get_vocab):
        return None
    try:
        vocab = get_vocab()
    except Exception:  # a tokenizer that cannot list its vocabulary: no fingerprint
        return None
    digest = hashlib.sha256()
    for piece, index in sorted(vocab.items(), key=lambda item: item[1]):
        digest.update(f"{index}\t{piece}\n".encode("utf-8", "surrogatepass"))
    return f"sha256:{digest.hexdigest()[:16]}:{len(vocab)}"


def vocabulary_size(tokenizer: Any) -> int | None:
    """Number of ids a tokenizer can decode (added tokens included)."""
    if hasattr(tokenizer, "get_vocab_size"):
        return int(tokenizer.get_vocab_size(with_added_tokens=True))
    try:
        return len(tokenizer)
    except TypeError:
        return None


def model_vocabulary_size(config: Any) -> int | None:
    """Rows of a model's token embedding as its config.json gives them (`vocab_size`), or None."""
    for holder in (config, getattr(config, "text_config", None)):
        value = getattr(holder, "vocab_size", None) if holder is not None else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_vocabulary_fits(tokenizer: Any, config: Any, model: str) -> None:
    """`InputError` when the tokenizer has more tokens than the model has embedding rows: its ids from
    the model's size up would index past the embedding (a crash deep inside the first forward pass),
    and the model could never produce them. A model with more rows than the tokenizer has tokens
    (padded vocabularies, as Qwen's) is fine."""
    tokens, rows = vocabulary_size(tokenizer), model_vocabulary_size(config)
    if tokens is None or rows is None or tokens <= rows:
        return
    name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
    raise InputError(
        f"tokenizer {name!r} has {tokens} tokens, but model {model!r} has {rows} (vocab_size in its config.json): "
        f"the ids from {rows} up do not exist in the model; use the model's own tokenizer (leave --tokenizer out)"
    )


def check_configs(configs: Any, tokenizer: Any) -> None:
    """`InputError` when a configuration cannot run with this tokenizer, naming the configuration and key.

    What only the vocabulary can tell (a NoWait keyword or CyclicReflex word with no token, a budget
    for a tokenizer without think markers, a forced word that is a special token, TIP triggers with
    no token, scope "think" without markers) is found here, with the tokenizer, before any model
    loads. The plans are cached per tokenizer, so the engines reuse them.
    """
    from tip_decode.core.interventions import plan_for
    from tip_decode.harness.configs import spec_terms

    for config in configs:
        if not config.interventions:
            continue
        try:
            plan_for(tokenizer, config.interventions)
        except ValueError as err:
            raise InputError(f"configuration {config.name!r}: {spec_terms(str(err))}") from None
