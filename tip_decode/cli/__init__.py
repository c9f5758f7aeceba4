"""The `tip-decode` command line: one click group, one module per command.

Each command is a thin function over library code and imports heavy modules (torch, transformers,
vLLM) inside its body, so that `tip-decode --help` stays fast.
"""

from __future__ import annotations

import click

from tip_decode import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tip-decode")
def main() -> None:
    """Thought-switching penalty (TIP) decoding and underthinking analysis for reasoning models."""


from tip_decode.cli.vocab import vocab  # noqa: E402

main.add_command(vocab)

from tip_decode.cli.serve import serve  # noqa: E402
main.add_command(serve)

from tip_decode.cli.compare import compare, grid, score  # noqa: E402
for _command in (compare, grid, score): main.add_command(_command)

from tip_decode.cli.analyze import analyze  # noqa: E402
main.add_command(analyze)

from tip_decode.cli.demo import demo  # noqa: E402
main.add_command(demo)
