"""Before anything is loaded from the Hugging Face Hub: is the Hub there, or is the thing cached?

Without a network, `from_pretrained("Qwen/QwQ-32B")` and `datasets.load_dataset(...)` retry with
back-off for 30 to 67 seconds, printing each retry, before they fail. `check_hub_source` asks first,
in at most `TIP_DECODE_HUB_TIMEOUT` seconds (3 by default), whether the Hub's host can be reached:

- reachable, or the name is a local folder: nothing to do;
- unreachable, and the model / tokenizer / data set is in the local cache: this process switches to
  offline mode (`HF_HUB_OFFLINE=1`, as if the user had set it), so the libraries read the cache at once;
- unreachable and not cached, or `HF_HUB_OFFLINE` set and not cached: `HubUnavailable`, one line
  naming the Hub, the cache folder, `HF_HUB_OFFLINE` and the local-folder alternative.

The probe is one HTTP request to the endpoint (`HF_ENDPOINT`, default https://huggingface.co; any
answer counts), made once per process.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

#: Seconds the reachability probe may take (DNS and TCP connect together).
DEFAULT_TIMEOUT_S = 3.0
_REACHABLE: dict[str, bool] = {}


class HubUnavailable(RuntimeError):
    """A Hub name was asked for, the Hub cannot be reached (or offline mode is on), and nothing is cached."""


def _timeout() -> float:
    try:
        value = float(os.environ.get("TIP_DECODE_HUB_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_mode() -> bool:
    """Whether the Hub libraries are in offline mode (the user's HF_HUB_OFFLINE, or set here)."""
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - a dependency of transformers
        return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_reachable() -> bool:
    """Whether the endpoint answers one HTTP request within the timeout (any status counts: the
    Hub is there). Cached for the process."""
    url = endpoint()
    if url in _REACHABLE:
        return _REACHABLE[url]
    result = {"ok": False}

    def ask() -> None:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=_timeout()).close()
            result["ok"] = True
        except urllib.error.HTTPError:
            result["ok"] = True  # an answer, whatever its status
        except (OSError, ValueError):  # no route, no name, refused, timed out, a malformed endpoint
            pass

    # Name resolution has no timeout of its own: the probe runs in a thread we stop waiting for.
    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(_timeout())
    _REACHABLE[url] = result["ok"]
    return result["ok"]


def hub_cache() -> Path:
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return Path(os.path.expanduser("~/.cache/huggingface/hub"))


def is_cached(name: str, repo_type: str = "model") -> bool:
    """Whether the Hub cache holds a snapshot of `name` (a model or tokenizer repo, or a data set;
    data sets also count when `datasets` has prepared them in its own cache)."""
    folder = hub_cache() / f"{repo_type}s--{name.replace('/', '--')}" / "snapshots"
    if folder.is_dir() and any(folder.iterdir()):
        return True
    if repo_type == "dataset":
        try:
            from datasets import config

            prepared = Path(config.HF_DATASETS_CACHE) / name.replace("/", "___")
            return prepared.is_dir() and any(prepared.iterdir())
        except ImportError:  # pragma: no cover - datasets is in the eval extra
            return False
    return False


def go_offline() -> None:
    """Offline mode for this process: huggingface_hub, transformers and datasets read the cache only."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover
        pass
    try:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True
        datasets.config.HF_DATASETS_OFFLINE = True
    except ImportError:  # pragma: no cover - datasets is in the eval extra
        pass


def check_hub_source(name: str, what: str = "model", repo_type: str = "model", label: str | None = None) -> None:
    """Call before loading `name` (a Hub id, not a local folder) from the Hub; see the module docstring.
    `label` names it in the error (default: `what` and `name`).

    Raises:
        HubUnavailable: the Hub cannot be used and `name` is not cached; the message is one line.
    """
    if os.path.exists(os.path.expanduser(name)):
        return
    cached = is_cached(name, repo_type)
    label = label or f"{what} {name!r}"
    local = "pass a local .jsonl/.json/.csv file instead" if repo_type == "dataset" else "pass a local folder that holds it"
    if offline_mode():
        if cached:
            return
        raise HubUnavailable(
            f"{label} is not in the local cache ({hub_cache()}) and HF_HUB_OFFLINE is set, so it cannot be downloaded: "
            f"{local}, or unset HF_HUB_OFFLINE where the Hub can be reached"
        )
    if hub_reachable():
        return
    if cached:
        logger.warning("the Hugging Face Hub (%s) cannot be reached: using the cached %s %r (offline mode, HF_HUB_OFFLINE=1)", endpoint(), what, name)
        go_offline()
        return
    raise HubUnavailable(
        f"cannot reach the Hugging Face Hub ({endpoint()}) within {_timeout():g} s to download {label}, and it is not in the "
        f"local cache ({hub_cache()}): {local}, or download it where the Hub can be reached "
        "(HF_HUB_OFFLINE=1 skips this check and uses only cached files)"
    )
