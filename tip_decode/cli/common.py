"""Options and helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from tip_decode.core.config import SCOPES, TRIGGER_PRESETS, parse_triggers


def _parse_triggers_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    try:
        return parse_triggers(value, "--triggers")
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def triggers_option(func: Callable[..., Any]) -> Callable[..., Any]:
    presets = ", ".join(f"'{name}'" for name in TRIGGER_PRESETS)
    return click.option(
        "--triggers",
        default="paper",
        show_default=True,
        callback=_parse_triggers_option,
        help=f"Trigger words, comma-separated, or a preset ({presets}).",
    )(func)


def tip_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--alpha, --beta, --triggers, --scope, declared once for every command that decodes."""
    func = click.option("--scope", type=click.Choice(SCOPES), default="auto", show_default=True, help="Where the penalty acts.")(func)
    func = triggers_option(func)
    func = click.option("--beta", type=click.IntRange(min=0), default=600, show_default=True, help="Penalty duration in tokens.")(func)
    func = click.option("--alpha", type=str, default="3.0", show_default=True, help="Penalty strength (a number >= 0, or 'inf').")(func)
    return func


def load_tokenizer(name_or_path: str) -> Any:
    """Load a tokenizer from a local folder, a tokenizer.json file, or the Hugging Face Hub."""
    import os

    if name_or_path.endswith(".json") and os.path.isfile(name_or_path):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(name_or_path)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except Exception as err:  # transformers raises OSError, ValueError, HTTP errors...
        raise click.ClickException(f"cannot load tokenizer {name_or_path!r}: {str(err).splitlines()[0]}") from None
