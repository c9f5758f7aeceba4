"""Options and helpers shared by several commands: errors, exit codes, quiet mode, JSON output.

Exit codes (every command):

- 0: success.
- 1: a runtime error: the command was well formed but something failed while running (a line of a
  file that is not JSON, a model that does not load, a server that does not answer, every judge
  request failed).
- 2: a usage error: the command line asks for something that cannot work (a bad option value or
  combination, a path that does not exist, an output folder that cannot be written, a response
  budget longer than the model's context). These are found before any model loads.
- 130: interrupted (Ctrl-C); `compare`, `grid` and `demo` resume when the same command is rerun.

Every error is one line on stderr starting with "Error:" (click's own option-parsing errors add
its usage line above it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from tip_decode.core.config import PAPER_BETA, SCOPES, TRIGGER_PRESETS, parse_alpha, parse_triggers
from tip_decode.harness.configs import MAX_SPEC_BETA

#: Largest --beta accepted on the command line (a longer window is a typo; see MAX_SPEC_BETA).
MAX_BETA = MAX_SPEC_BETA


class UsageFailure(click.ClickException):
    """A usage error reported in one line ("Error: ..."), exit status 2."""

    exit_code = 2


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Turn the library's errors into one-line CLI errors with the right exit status.

    `InputError` (what the user asked for cannot work) exits 2; other `ValueError`s, `TypeError`,
    `RuntimeError`, `OSError` and `ImportError` exit 1. A missing optional package is left to the
    command group, which names the extra to install.
    """
    from tip_decode.harness.preflight import InputError

    try:
        yield
    except (click.ClickException, click.exceptions.Exit, ModuleNotFoundError):
        raise
    except InputError as err:
        raise UsageFailure(prefix + one_line(err)) from None
    except (ValueError, TypeError, RuntimeError, OSError, ImportError, KeyError) as err:
        message = one_line(err) if not isinstance(err, KeyError) else f"missing field {err}"
        raise click.ClickException(prefix + message) from None


def require_eval_extra(plots: bool = True) -> None:
    """Import what the harness needs from the `eval` extra now, so that a missing package is named
    (by the command group) before a model loads, not after the generation it would waste."""
    import math_verify  # noqa: F401
    import scipy.stats  # noqa: F401
    import tqdm  # noqa: F401

    if plots:
        import matplotlib  # noqa: F401


def library_progress(quiet: bool) -> None:
    """Progress bars of transformers and the Hub: off with `--quiet`, and off when stderr is not a
    terminal (a redrawn bar writes a carriage return per update into logs); `quiet` also lowers
    the libraries' logging."""
    import sys

    if quiet:
        quiet_libraries()
        return
    isatty = getattr(sys.stderr, "isatty", None)
    if callable(isatty) and isatty():
        return
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def quiet_libraries() -> None:
    """`--quiet`: no progress bars from transformers, huggingface_hub or datasets, and fewer logs."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass


def emit_json(data: Any) -> None:
    """One JSON object on stdout (NaN as null: strict JSON for other programs)."""
    from tip_decode.harness.metrics import json_safe

    click.echo(json.dumps(json_safe(data), ensure_ascii=False, allow_nan=False))


def _parse_triggers_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    try:
        return parse_triggers(value, "--triggers")
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _parse_alpha_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_alpha(value, "--alpha")  # "1e400" is refused there: only 'inf' means a ban
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    return value


#: Every word of every preset: curated, never questioned (Mistral spells "alternatively" in pieces).
_PRESET_WORDS = frozenset(word for words in TRIGGER_PRESETS.values() for word in words)


def trigger_problems(triggers: Iterable[str], tokenizer: Any = None, spelling: bool = True) -> list[str]:
    """What looks wrong about trigger words, one line each (none for the presets' own words).

    - a word close to a preset's name ("refletion") is a misspelled preset, not a word;
    - a word with fewer than two letters or digits ("a", ",") is no word: every token spelled that
      way would count as a switch;
    - with `tokenizer`: a word (or a phrase's first word) that no token of the vocabulary spells
      whole at the start of a word is matched only as a run of pieces ("ref"+"letion"): almost
      always a misspelling.

    `spelling=False` leaves out the first two checks (a command that made them before the tokenizer
    loaded asks only for the third).
    """
    import difflib

    problems = []
    for word in triggers:
        if word in _PRESET_WORDS:
            continue
        close = difflib.get_close_matches(word, list(TRIGGER_PRESETS), n=1, cutoff=0.8)
        short = sum(ch.isalnum() for ch in word) < 2
        if (close or short) and not spelling:
            continue
        if close:
            problems.append(f"trigger {word!r} is not a preset; did you mean the preset {close[0]!r}?")
        elif short:
            what = "has no letters" if not any(ch.isalnum() for ch in word) else "is too short to be a word"
            problems.append(f"trigger {word!r} {what}: every token spelled {word!r} would count as a thought switch")
        elif tokenizer is not None:
            from tip_decode.core.vocabulary import SwitchVocabulary

            first = word.split()[0]
            try:
                vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, [first])
            except ValueError:
                continue  # no token at all: SwitchVocabulary itself refuses the word, with its reason
            if vocabulary.token_ids:
                continue
            pieces = ""
            if vocabulary.multi_token:
                m = vocabulary.multi_token[0]
                pieces = " (only as pieces: " + "+".join(repr(vocabulary.token_text[i].strip()) for i in (*m.prefix, m.completion)) + ")"
            problems.append(
                f"trigger {word!r} is no word of this tokenizer: no token spells {first!r} whole at the start of a word{pieces}; check the spelling"
            )
    return problems


def vet_triggers(triggers: Iterable[str], tokenizer: Any = None, force: bool = False, option: str = "--triggers", spelling: bool = True) -> None:
    """A usage error for the first of `trigger_problems`, unless `force` (then each is a note on stderr)."""
    for problem in trigger_problems(triggers, tokenizer, spelling):
        if not force:
            raise UsageFailure(f"{option}: {problem} (add --force-triggers to use it as it is)")
        click.echo(f"note: {option}: {problem} (used as it is: --force-triggers)", err=True)


def force_triggers_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--force-triggers",
        is_flag=True,
        help="Use trigger words as given even when one looks wrong (close to a preset name, shorter than a word, or no whole word of the tokenizer).",
    )(func)


def triggers_option(func: Callable[..., Any]) -> Callable[..., Any]:
    presets = ", ".join(f"'{name}'" for name in TRIGGER_PRESETS)
    return click.option(
        "--triggers",
        default="paper",
        show_default=True,
        callback=_parse_triggers_option,
        help=f"Trigger words, comma-separated, or a preset ({presets}).",
    )(func)


def reading_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--prompt-open, --premature-threshold and --kind: how saved responses are read, declared once
    for the commands that read them (analyze, view)."""
    func = click.option(
        "--kind",
        "answer_kind",
        type=click.Choice(["math", "number", "choice"]),
        default=None,
        help="Answer kind for grading (default: a record's answer_kind field, else math).",
    )(func)
    func = click.option(
        "--premature-threshold",
        type=click.IntRange(min=0),
        default=PAPER_BETA,
        show_default=True,
        help="A switch is premature when the thought it ends is shorter (tokens). Default for a run's records: the run's.",
    )(func)
    return click.option(
        "--prompt-open",
        type=click.Choice(["auto", "yes", "no"]),
        default="auto",
        show_default=True,
        help="Responses start inside an open think block ('auto': a record's prompt_open field, else when a response closes a block it never opened).",
    )(func)


def tip_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--alpha, --beta, --triggers, --scope, declared once for every command that decodes."""
    func = click.option("--scope", type=click.Choice(SCOPES), default="auto", show_default=True, help="Where the penalty acts.")(func)
    func = triggers_option(func)
    func = click.option("--beta", type=click.IntRange(min=0, max=MAX_BETA), default=600, show_default=True, help="Penalty duration in tokens.")(func)
    func = click.option(
        "--alpha", type=str, default="3.0", show_default=True, callback=_parse_alpha_option, help="Penalty strength (a number >= 0, or 'inf')."
    )(func)
    return func


def load_tokenizer(name_or_path: str) -> Any:
    """Load a tokenizer from a local folder, a tokenizer.json file, or the Hugging Face Hub.

    A missing path is a usage error ("no such folder"), not the Hub's repository-id rule.
    """
    from tip_decode.harness.backends import load_hf_tokenizer

    path = os.path.expanduser(name_or_path)
    if path.endswith(".json") and os.path.isfile(path):
        from tokenizers import Tokenizer

        try:
            return Tokenizer.from_file(path)
        except Exception as err:  # tokenizers raises its own Exception type
            raise click.ClickException(f"cannot load tokenizer {name_or_path!r}: {one_line(err)}") from None
    if path.endswith(".json") and not os.path.exists(path):
        raise UsageFailure(f"no such file: {name_or_path!r} (the tokenizer path does not exist)")
    with user_errors():
        return load_hf_tokenizer(name_or_path)
