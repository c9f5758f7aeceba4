"""Regenerate docs/view-demo.png: the viewer's page of a demo run, one problem, in headless Chromium.

    tip-decode demo --out /tmp/demo-run
    python benchmarks/view_screenshot.py /tmp/demo-run docs/view-demo.png

Opens RUN/view.html at a laptop's size (1280 x 800), picks the first problem that TIP got right and
the baseline wrong where the baseline abandoned an on-track thought, and saves the window as a PNG
with a 256-colour palette (small enough to commit).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import Browser, find_browser
    from PIL import Image

    from tip_decode.viewer import read_page_data

    page = args.run / "view.html"
    index, details = read_page_data(page)
    chosen = None
    for number, detail in enumerate(details):
        base, tip = detail["samples"][0]["traces"][:2]
        if base["ok"] is False and tip["ok"] is True and base["ota"] and 4 <= len(base["th"]) <= 6:
            chosen = number
            break
    if chosen is None:
        raise SystemExit("no problem fixed by TIP with an abandoned on-track thought at baseline")
    executable = find_browser()
    if executable is None:
        raise SystemExit("no Chromium found (apt-get install chromium, or set TIP_DECODE_CHROMIUM)")
    with Browser(executable) as browser, browser.page(args.width, args.height) as tab:
        tab.goto(page.resolve().as_uri())
        tab.wait_for("document.body.dataset.state === 'ready'")
        tab.click(f'#problems tbody tr[data-i="{chosen}"]')
        tab.wait_for(f"document.getElementById('problem-view').dataset.loaded === '{chosen}'")
        if tab.problems():
            raise SystemExit(f"console errors: {tab.problems()}")
        shot = args.out.with_suffix(".full.png")
        tab.screenshot(shot)
    image = Image.open(shot).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    args.out.write_bytes(buffer.getvalue())
    shot.unlink()
    print(f"{args.out}: problem {index['problems'][chosen]['id']}, {len(buffer.getvalue()) / 1000:.0f} kB")


if __name__ == "__main__":
    main()
