"""Time `tip-decode demo` (hf backend) and its torch thread setting, side by side in one run.

    python benchmarks/bench_demo.py [--problems 300]

Prints, as JSON: the wall time of a full default demo run into a fresh folder, the CPU time of the
process, the machine's load average before and after, and the time of one decoding step of the
shipped model (batch of 300 rows) at 1, 2 and 4 torch threads, measured back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def step_times(batch: int) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM

    from tip_decode.demo import MODEL_DIR

    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()
    ids = torch.randint(0, 60, (batch, 1))
    result = {}
    for threads in (1, 2, 4):
        torch.set_num_threads(threads)
        with torch.no_grad():
            model(input_ids=ids)
            began = time.perf_counter()
            for _ in range(10):
                model(input_ids=ids)
        result[f"{threads}_threads_ms"] = round((time.perf_counter() - began) * 100, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=300)
    args = parser.parse_args()
    from tip_decode.demo.run import run_demo

    load_before = os.getloadavg()
    steps = step_times(args.problems)
    cpu_before = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(os.path.join(tmp, "demo"), problems=args.problems, progress=False)
    print(
        json.dumps(
            {
                "problems": args.problems,
                "demo_wall_s": round(result.seconds, 1),
                "demo_process_cpu_s": round(time.process_time() - cpu_before, 1),
                "one_step_batch_of_problems": steps,
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
