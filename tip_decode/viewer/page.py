"""One self-contained HTML page: the template, its style and script, and the data, all inlined.

The table's data (`index`) is one JSON script element, parsed when the page loads. Each problem's
responses in full (`details`) are a separate element holding zlib-compressed JSON in base64, which
the page decompresses (the browser's own `DecompressionStream`) only when the problem is opened:
a page of a large run loads as fast as its table, and its size is a third or less of the raw text.
The page loads nothing from the network.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from tip_decode.viewer.data import FORMAT

_INDEX_ID = "tip-index"
_DETAIL_PREFIX = "tip-p"
_STATIC = ("viewer.html", "viewer.css", "viewer.js")


def _static(name: str) -> str:
    return resources.files("tip_decode.viewer").joinpath("static").joinpath(name).read_text(encoding="utf-8")


def _json_for_script(value: Any) -> str:
    # "<" escaped as \u003c (valid JSON) so that no "</script>" or "<!--" can end the element early.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")


def pack(detail: Any) -> str:
    """A problem's details as the page stores them: zlib-compressed JSON, base64."""
    raw = json.dumps(detail, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def unpack(text: str) -> Any:
    return json.loads(zlib.decompress(base64.b64decode(text)).decode("utf-8"))


def render_page(index: dict[str, Any], details: Sequence[Any]) -> str:
    """The page's HTML (index: the table's data; details: one entry per problem, in index order)."""
    if len(details) != len(index["problems"]):
        raise ValueError(f"one detail per problem is needed ({len(index['problems'])}), but there are {len(details)}")
    template, style, script = (_static(name) for name in _STATIC)
    blobs = "\n".join(f'<script type="application/octet-stream" id="{_DETAIL_PREFIX}{i}">{pack(d)}</script>' for i, d in enumerate(details))
    data = f'<script type="application/json" id="{_INDEX_ID}">{_json_for_script(index)}</script>\n{blobs}'
    # The script and style come from the package, so they cannot contain a closing tag by accident;
    # checked anyway because a stray one would cut the page silently.
    for name, text in (("viewer.css", style), ("viewer.js", script)):
        if re.search(r"</(script|style)", text, re.IGNORECASE):
            raise ValueError(f"{name} contains a closing </script> or </style> tag")
    replacements = {"{{title}}": escape(index.get("title") or "tip-decode view"), "/*{{style}}*/": style, "/*{{script}}*/": script, "<!--{{data}}-->": data}
    page = template
    for marker, value in replacements.items():
        if marker not in page:
            raise ValueError(f"viewer.html has no {marker} marker")
        head, _, tail = page.partition(marker)
        page = head + value + tail
    return page


def write_page(path: str | Path, index: dict[str, Any], details: Sequence[Any]) -> int:
    """Write the page to `path` (atomically: a finished page or none); returns its size in bytes."""
    path = Path(path)
    data = render_page(index, details).encode("utf-8")
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return len(data)


def read_page_data(path: str | Path) -> tuple[dict[str, Any], list[Any]]:
    """(index, details) embedded in a page written by `write_page` (for tests and other tools)."""
    text = Path(path).read_text(encoding="utf-8")
    found = re.search(rf'<script type="application/json" id="{_INDEX_ID}">(.*?)</script>', text, re.DOTALL)
    if found is None:
        raise ValueError(f"{path}: not a tip-decode view page (no {_INDEX_ID} element)")
    index = json.loads(found.group(1))
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: page data format {index.get('format')!r}, this version reads {FORMAT}")
    blobs = dict(re.findall(rf'<script type="application/octet-stream" id="{_DETAIL_PREFIX}(\d+)">([A-Za-z0-9+/=]*)</script>', text))
    details = [unpack(blobs[str(i)]) for i in range(len(index["problems"]))]
    return index, details
