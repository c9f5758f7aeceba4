"""Cost of `tip-decode view` on a large run, and how fast its page opens in a real headless Chromium.

1. Writes a synthetic run folder in the `tip-decode compare` layout (run.json and one records file
   per configuration; reused when it exists): PROBLEMS problems x 4 configurations (baseline, tip,
   nowait, tip+budget) x TOKENS-token responses, with the qwen3 tokenizer. Each response is R1-style
   reasoning built from MATH-500 reference solutions (real LaTeX-heavy text; the problems with
   integer answers, graded as numbers) joined by switch
   phrases ("Wait, ...", "Alternatively, ...") about every 400 tokens, with the problem's own
   solution (a correct thought) at a random place, then `</think>` and a boxed answer that is right
   for about half of the responses.
2. Runs `tip-decode view RUN -q` in a subprocess: wall time, peak memory, page size.
3. Opens the page REPEAT times in a fresh tab of headless Chromium (tests/browser.py): time to the
   load event, the page's own time from navigation start to its table being drawn (`tipView.readyMs`),
   JavaScript heap; then opens one problem (decompress, draw), expands all its thoughts, filters and
   sorts the table. Medians are printed, with every run's numbers.

    python benchmarks/bench_view.py [--problems 1000] [--tokens 8000] [--repeat 3] [--out /tmp/bench-view] [--json out.json]

Run it under `flock /work/heavy.lock` on the shared machine (docs/performance.md has the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import vendored  # noqa: E402  (the tokenizers and data the tests ship; TIP_DECODE_TOKENIZERS / TIP_DECODE_DATA override)

CONFIGS = {
    "baseline": {},
    "tip": {"tip_alpha": 3.0, "tip_beta": 600, "tip_triggers": ["alternatively", "wait"], "tip_scope": "auto"},
    "nowait": {"nowait": 1},
    "tip+budget": {"tip_alpha": 3.0, "tip_beta": 600, "tip_triggers": ["alternatively", "wait"], "tip_scope": "auto", "budget_max": 8000},
}
SWITCHES = ["\n\nWait, ", "\n\nAlternatively, ", "\n\nWait, let me check that again. ", "\n\nAlternatively, maybe "]
#: Characters per token of MATH-500 solutions under the qwen3 tokenizer, about (text is built a
#: little longer than needed, then cut at the token budget).
CHARS_PER_TOKEN = 3.2


def make_run(out: Path, problems: int, tokens: int, tokenizer_dir: Path, data_dir: Path, seed: int = 0) -> None:
    from tip_decode.cli.common import load_tokenizer
    from tip_decode.harness.preflight import tokenizer_fingerprint

    tokenizer = load_tokenizer(str(tokenizer_dir))
    rows = [json.loads(line) for line in (data_dir / "math500.jsonl").read_text().splitlines() if line.strip()]
    # Problems with integer answers, graded as numbers (exact rationals): grading thoughts with
    # math-verify ("math") costs about 20 ms a candidate and would make this a benchmark of math-verify.
    rows = [r for r in rows if re.fullmatch(r"-?\d+", r["answer"].strip())]
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, settings in CONFIGS.items():
        texts, tails, meta = [], [], []
        for p in range(problems):
            row = rows[p % len(rows)]
            own = rng.randrange(3, 12)  # where the problem's own solution (a correct thought) goes
            parts, length, k = [], 0, 0
            while length < tokens * CHARS_PER_TOKEN:
                solution = row["solution"] if k == own else rng.choice(rows)["solution"]
                piece = (rng.choice(SWITCHES) if k else "") + solution
                parts.append(piece)
                length += len(piece)
                k += 1
            right = rng.random() < 0.5
            answer = row["answer"] if right else str(int(row["answer"]) + 1)
            texts.append("".join(parts))
            tails.append(f"</think>\n\nThe answer is $\\boxed{{{answer}}}$.")
            meta.append((p, row, right, answer))
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        tail_ids = tokenizer(tails, add_special_tokens=False)["input_ids"]
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for (p, row, right, answer), body, tail in zip(meta, encoded, tail_ids):
                ids = body[: tokens - len(tail)] + tail
                record = {
                    "id": f"synthetic-{p}",
                    "sample": 0,
                    "config": name,
                    "interventions": settings,
                    "tip": {k: v for k, v in settings.items() if k.startswith("tip_")} or None,
                    "prompt": f"<|im_start|>user\n{row['problem']}<|im_end|>\n<|im_start|>assistant\n<think>\n",
                    "response": tokenizer.decode(ids),
                    "token_ids": ids,
                    "n_tokens": len(ids),
                    "finish_reason": "stop",
                    "reference": row["answer"],
                    "answer_kind": "number",
                    "pred": answer,
                    "correct": right,
                    "prompt_open": True,
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    info = {
        "dataset": f"synthetic: {problems} MATH-500 problems, {tokens}-token traces (benchmarks/bench_view.py)",
        "model": str(tokenizer_dir),
        "tokenizer": str(tokenizer_dir),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "samples": 1,
        "max_new_tokens": tokens,
        "switch_triggers": ["alternatively", "wait"],
        "switch_scope": "auto",
        "premature_threshold": 600,
        "configs": [
            {"name": name, "interventions": settings, "tip": {k: v for k, v in settings.items() if k.startswith("tip_")} or None}
            for name, settings in CONFIGS.items()
        ],
    }
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def run_view(run: Path) -> dict:
    page = run / "view.html"
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", "from tip_decode.cli import main; main()", "view", str(run), "-q"], capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"tip-decode view failed: {result.stderr[-2000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "view_s": round(seconds, 1),
        "view_peak_rss_mb": round(peak_kib / 1024),
        "page_mb": round(page.stat().st_size / 1e6, 1),
        "view_stderr": result.stderr.strip(),
    }


def in_page_ms(tab, script: str) -> float:
    """Milliseconds a synchronous action takes in the page, layout included."""
    return tab.evaluate(f"(() => {{ const t = performance.now(); {script}; document.body.offsetHeight; return performance.now() - t; }})()")


def open_in_browser(page: Path, repeat: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import Browser, find_browser

    executable = find_browser()
    if executable is None:
        raise SystemExit("no Chromium found (apt-get install chromium, or set TIP_DECODE_CHROMIUM)")
    runs = []
    with Browser(executable, timeout=300) as browser:
        for _ in range(repeat):
            with browser.page(1440, 900) as tab:
                load_s = tab.goto(page.resolve().as_uri(), timeout=300)
                tab.wait_for("document.body.dataset.state === 'ready'", timeout=300)
                ready_ms = tab.evaluate("window.tipView.readyMs")
                tab.send("Performance.enable")
                metrics = {m["name"]: m["value"] for m in tab.send("Performance.getMetrics").get("metrics", [])}
                began = time.perf_counter()
                tab.click('#problems tbody tr[data-i="0"]')
                tab.wait_for("document.getElementById('problem-view').dataset.loaded === '0'", timeout=120)
                open_ms = (time.perf_counter() - began) * 1000
                thoughts = tab.evaluate("document.querySelectorAll('li.thought').length")
                drawn = tab.evaluate("document.querySelectorAll('.th-body pre').length")
                expand_ms = in_page_ms(tab, "document.getElementById('expand-all').click()")
                chars = tab.evaluate("Array.from(document.querySelectorAll('.th-body pre')).reduce((n, e) => n + e.textContent.length, 0)")
                tab.evaluate("location.hash = '#/'")
                tab.wait_for("document.body.dataset.view === 'list'")
                filter_ms = in_page_ms(
                    tab, "const s = document.getElementById('outcome'); s.value = 'gained'; s.dispatchEvent(new Event('change', {bubbles: true}))"
                )
                gained = tab.evaluate("document.body.dataset.rows")
                sort_ms = in_page_ms(tab, "document.querySelector('th[data-sort=\"tok:0\"]').click()")
                errors = tab.problems()
                runs.append(
                    {
                        "load_event_s": round(load_s, 2),
                        "table_ready_ms": round(ready_ms),
                        "js_heap_mb": round(metrics.get("JSHeapUsedSize", 0) / 1e6, 1),
                        "open_problem_ms": round(open_ms),
                        "thoughts_in_problem": thoughts,
                        "drawn_before_expand": drawn,
                        "expand_all_ms": round(expand_ms),
                        "expanded_chars": chars,
                        "filter_gained_ms": round(filter_ms, 1),
                        "gained_rows": gained,
                        "sort_ms": round(sort_ms, 1),
                        "console_errors": errors,
                    }
                )
    medians = {
        key: statistics.median(r[key] for r in runs)
        for key in ("load_event_s", "table_ready_ms", "open_problem_ms", "expand_all_ms", "filter_gained_ms", "sort_ms", "js_heap_mb")
    }
    return {"browser": subprocess.run([executable, "--version"], capture_output=True, text=True).stdout.strip(), "median": medians, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-view"))
    parser.add_argument("--tokenizers", type=Path, default=vendored.tokenizers_dir())
    parser.add_argument("--data", type=Path, default=vendored.data_dir())
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    run = args.out / f"run-{args.problems}x{len(CONFIGS)}x{args.tokens}"
    made_s = None
    if not (run / "run.json").is_file():
        began = time.perf_counter()
        make_run(run, args.problems, args.tokens, args.tokenizers / "qwen3", args.data)
        made_s = round(time.perf_counter() - began, 1)
    records_mb = round(sum(p.stat().st_size for p in run.glob("*.jsonl")) / 1e6, 1)
    result = {"run": str(run), "problems": args.problems, "configs": len(CONFIGS), "tokens": args.tokens, "records_mb": records_mb, "made_s": made_s}
    result.update(run_view(run))
    result.update(open_in_browser(run / "view.html", args.repeat))
    result.update({"cpus": os.cpu_count(), "load_average_after": [round(x, 2) for x in os.getloadavg()]})
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
