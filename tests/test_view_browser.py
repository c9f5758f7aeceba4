"""The viewer's page in a real headless Chromium (the system's own, driven over the DevTools pipe).

It loads from a file with nothing from the network and no console error, lists every problem,
filters and sorts, shows every thought of a problem with the analysis's text, draws a thought's text
only when it is expanded, and prints every thought. Screenshots are written for review (to
$TIP_DECODE_SCREENSHOTS when set). A missing Chromium skips these tests locally and fails them under
CI (TIP_DECODE_REQUIRE_BROWSER=1, set by .ci/run, which installs Debian's chromium).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from browser import ENV_REQUIRE, Browser, find_browser
from view_support import DEMO_PROBLEMS, TRACES, demo_run, invoke, write_jsonl

from tip_decode.viewer import read_page_data

LAPTOP = (1440, 900)


def chromium() -> str:
    path = find_browser()
    if path is None:
        message = "no Chromium on this machine (Debian: apt-get install chromium; or set TIP_DECODE_CHROMIUM)"
        if os.environ.get(ENV_REQUIRE) == "1":
            pytest.fail(f"{ENV_REQUIRE}=1 but {message}", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser():
    with Browser(chromium()) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("TIP_DECODE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory):
    page = demo_run(tmp_path_factory.getbasetemp()) / "view.html"  # the demo writes its page
    return page, *read_page_data(page)


@pytest.fixture
def tab(browser):
    with browser.page(*LAPTOP) as page:
        yield page


def open_page(tab, path: Path) -> None:
    tab.goto(path.resolve().as_uri())
    tab.wait_for("document.body.dataset.state === 'ready'")


def rows(tab) -> list[str]:
    return tab.evaluate("Array.from(document.querySelectorAll('#problems tbody tr th.id')).map(e => e.textContent)")


def open_problem(tab, number: int) -> None:
    tab.click(f'#problems tbody tr[data-i="{number}"]')
    tab.wait_for(f"document.getElementById('problem-view').dataset.loaded === '{number}'")


def column_texts(tab, config: str) -> list[str]:
    return tab.evaluate(f"Array.from(document.querySelectorAll('article[data-config=\"{config}\"] .th-body pre')).map(e => e.textContent)")


def accuracy(cell):
    return cell["ok"] / cell["g"]


def test_the_demo_page_loads_offline_and_lists_every_problem(tab, demo_page, shots):
    path, index, _ = demo_page
    open_page(tab, path)
    assert tab.problems() == []
    assert len(rows(tab)) == DEMO_PROBLEMS == index["totals"]["problems"]
    assert rows(tab) == [p["id"] for p in index["problems"]]
    # Self-contained: the page fetched nothing besides itself.
    assert tab.evaluate("performance.getEntriesByType('resource').length") == 0
    assert tab.evaluate("document.getElementById('count').textContent") == f"{DEMO_PROBLEMS} problems"
    # The summary with its intervals is at the top.
    assert "Pass@1 [95% CI]" in tab.evaluate("document.getElementById('overview').textContent")
    tab.screenshot(shots / "view-list.png")


def test_filters_and_sorting(tab, demo_page, shots):
    path, index, _ = demo_page
    open_page(tab, path)
    problems = index["problems"]
    gained = [p["id"] for p in problems if accuracy(p["c"][1]) > accuracy(p["c"][0])]
    lost = [p["id"] for p in problems if accuracy(p["c"][1]) < accuracy(p["c"][0])]
    assert gained and lost, "the demo run should have problems that TIP fixed and that it broke"
    tab.choose("#outcome", "gained")  # wrong with baseline, right with tip
    assert rows(tab) == gained
    assert tab.evaluate("document.getElementById('count').textContent") == f"{len(gained)} of {DEMO_PROBLEMS} problems"
    tab.screenshot(shots / "view-filter-gained.png")
    tab.choose("#outcome", "lost")
    assert rows(tab) == lost
    # Swapping the comparison swaps the two lists.
    tab.choose("#compare-a", "1")
    tab.choose("#compare-b", "0")
    tab.choose("#outcome", "gained")
    assert rows(tab) == lost
    tab.choose("#outcome", "all")
    tab.type_text("#search", "demo-1")
    assert rows(tab) == [p["id"] for p in problems if "demo-1" in p["id"]]
    tab.type_text("#search", "")
    assert len(rows(tab)) == DEMO_PROBLEMS

    # Sorting by the baseline's tokens, then the other way; ties keep the run's order.
    tab.click('th[data-sort="tok:0"]')
    by_tokens = sorted(range(len(problems)), key=lambda i: (problems[i]["c"][0]["tok"], i))
    assert rows(tab) == [problems[i]["id"] for i in by_tokens]
    tab.click('th[data-sort="tok:0"]')
    assert rows(tab)[0] == problems[max(range(len(problems)), key=lambda i: (problems[i]["c"][0]["tok"], -i))]["id"]

    # Hiding a configuration removes its columns.
    tab.click('#chips input[value="0"]')
    headers = tab.evaluate("Array.from(document.querySelectorAll('#problems thead tr:nth-child(2) th')).map(e => e.textContent)")
    assert headers == ["tip"] * 4
    assert tab.problems() == []


def test_a_problem_shows_every_thought_with_the_analysis_text(tab, demo_page, shots):
    path, index, details = demo_page
    open_page(tab, path)
    names = [c["name"] for c in index["configs"]]
    # The first problem that TIP fixed, with the most thoughts at baseline.
    gained = [i for i, p in enumerate(index["problems"]) if accuracy(p["c"][1]) > accuracy(p["c"][0])]
    number = max(gained, key=lambda i: index["problems"][i]["c"][0]["th"])
    open_problem(tab, number)
    traces = details[number]["samples"][0]["traces"]
    for name, trace in zip(names, traces):
        assert tab.evaluate(f"document.querySelectorAll('article[data-config=\"{name}\"] li.thought').length") == len(trace["th"])
        # Small runs open with every thought expanded; the texts are the analysis's, character for character.
        assert column_texts(tab, name) == [t["t"] for t in trace["th"]]
        statuses = tab.evaluate(f"Array.from(document.querySelectorAll('article[data-config=\"{name}\"] li.thought .status')).map(e => e.textContent)")
        assert statuses == [{"correct": "on track", "incorrect": "not on track", "unjudged": "unjudged"}[t["s"]] for t in trace["th"]]
        marked = tab.evaluate(f"Array.from(document.querySelectorAll('article[data-config=\"{name}\"] mark.sw')).map(e => e.textContent.trim().toLowerCase())")
        assert marked == [t["tr"] for t in trace["th"] if t["tr"]]
    assert traces[0]["ok"] is False and traces[1]["ok"] is True
    assert tab.evaluate("document.querySelector('article[data-config=\"baseline\"] .verdict').textContent") == "✗ wrong"
    assert tab.evaluate("document.querySelector('article[data-config=\"tip\"] .verdict').textContent") == "✓ correct"
    # TIP's penalty window is shaded in the TIP column only.
    assert tab.evaluate("document.querySelectorAll('article[data-config=\"tip\"] .pen').length") > 0
    assert tab.evaluate("document.querySelectorAll('article[data-config=\"baseline\"] .pen').length") == 0
    assert index["problems"][number]["ref"] in tab.evaluate("document.querySelector('.ref').textContent")
    tab.screenshot(shots / "view-problem.png")

    # Next / previous follow the table's order; back returns to the table.
    tab.click("#next")
    tab.wait_for(f"document.getElementById('problem-view').dataset.loaded === '{number + 1}'")
    tab.press("k", "KeyK", 75)
    tab.wait_for(f"document.getElementById('problem-view').dataset.loaded === '{number}'")
    tab.press("Escape", "Escape", 27)
    tab.wait_for("document.body.dataset.view === 'list'")
    assert len(rows(tab)) == DEMO_PROBLEMS
    assert tab.problems() == []


def test_thoughts_are_drawn_only_when_expanded(tab, demo_page):
    path, index, details = demo_page
    open_page(tab, path)
    open_problem(tab, 0)
    tab.click("#expand-all")  # the small demo opened expanded: collapse every thought
    assert tab.evaluate("document.querySelectorAll('.th-body pre').length") == 0
    assert tab.evaluate("document.querySelectorAll('.th-preview:not([hidden])').length") == tab.evaluate("document.querySelectorAll('li.thought').length")
    tab.click('article[data-config="baseline"] li.thought[data-k="0"] .th-head')
    assert column_texts(tab, "baseline") == [details[0]["samples"][0]["traces"][0]["th"][0]["t"]]
    tab.click('article[data-config="baseline"] li.thought[data-k="0"] .th-head')
    assert tab.evaluate('document.querySelector(\'article[data-config="baseline"] li.thought[data-k="0"] .th-body\').hidden') is True


def test_printing_a_problem_prints_every_thought(tab, demo_page, shots):
    path, index, details = demo_page
    open_page(tab, path)
    open_problem(tab, 0)
    tab.click("#expand-all")  # collapsed on screen
    assert tab.evaluate("document.querySelectorAll('.th-body pre').length") == 0
    pdf = tab.send("Page.printToPDF", {"printBackground": True})["data"]  # fires beforeprint
    (shots / "view-problem.pdf").write_bytes(base64.b64decode(pdf))
    thoughts = sum(len(t["th"]) for t in details[0]["samples"][0]["traces"])
    assert tab.evaluate("document.querySelectorAll('.th-body pre').length") == thoughts
    tab.print_media(True)
    assert tab.evaluate("getComputedStyle(document.querySelector('.pv-nav')).display") == "none"
    assert tab.evaluate("Array.from(document.querySelectorAll('.th-body')).every(e => getComputedStyle(e).display !== 'none')")
    tab.screenshot(shots / "view-problem-print.png", full_page=True)
    tab.print_media(False)


def test_a_trace_file_page_shows_text_as_text(tab, tmp_path, tokenizers_dir, shots):
    path = write_jsonl(tmp_path / "traces.jsonl", TRACES)
    result = invoke(["view", str(path), "--tokenizer", str(tokenizers_dir / "qwen3"), "--triggers", "alternatively,wait", "-q"])
    assert result.exit_code == 0, result.output
    page = Path(result.stdout.strip())
    index, details = read_page_data(page)
    open_page(tab, page)
    assert rows(tab) == ["p1", "p2", "p3"]
    assert tab.evaluate("typeof window.injected") == "undefined"
    open_problem(tab, 2)
    assert tab.evaluate("document.querySelector('.prompt pre').textContent") == TRACES[3]["problem"]
    assert column_texts(tab, "traces") == [t["t"] for t in details[2]["samples"][0]["traces"][0]["th"]]
    assert "漢字 🙂" in "".join(column_texts(tab, "traces"))
    assert tab.evaluate("typeof window.injected") == "undefined"
    # Two samples of p1: a picker, and each sample's own thoughts.
    tab.press("Escape", "Escape", 27)
    tab.wait_for("document.body.dataset.view === 'list'")
    open_problem(tab, 0)
    for sample in (1, 0):
        tab.choose("#sample", str(sample))
        assert column_texts(tab, "traces") == [t["t"] for t in details[0]["samples"][sample]["traces"][0]["th"]]
    assert tab.problems() == []
    assert json.loads(json.dumps(index))["baseline"] is None
