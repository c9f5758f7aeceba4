"""Benchmark-only subclass of the SGLang processor: appends the seconds each call took to a file.

Imported by SGLang's scheduler process by name (bench_sglang.py puts benchmarks/ on its path); the
file is named by TIP_DECODE_BENCH_TIMING. The write happens after the timed region.
"""

from __future__ import annotations

import os
import time

from tip_decode.sglang import ThoughtSwitchPenalty


class TimedThoughtSwitchPenalty(ThoughtSwitchPenalty):
    def __call__(self, logits, custom_param_list=None):
        start = time.perf_counter()
        out = super().__call__(logits, custom_param_list)
        elapsed = time.perf_counter() - start
        path = os.environ.get("TIP_DECODE_BENCH_TIMING")
        if path:
            with open(path, "a") as record:
                record.write(f"{elapsed:.9f} {len(custom_param_list or ())}\n")
        return out
