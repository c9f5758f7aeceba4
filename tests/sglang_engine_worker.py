"""Run an offline `sglang.Engine` and answer `generate` calls given as JSON lines on stdin.

Started by tests/sglang_support.py with the SGLang interpreter:
    python tests/sglang_engine_worker.py '{"model_path": ..., "device": "cpu", ...}'
Replies are JSON lines on the original stdout; SGLang's own output goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main() -> None:
    # Keep the reply channel clean: everything the engine (and its subprocesses) prints goes to stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import sglang

    engine = sglang.Engine(**json.loads(sys.argv[1]))
    replies.write(json.dumps({"ready": True, "version": sglang.__version__}) + "\n")
    try:
        for line in sys.stdin:
            message = json.loads(line)
            if message["method"] == "shutdown":
                break
            try:
                result = getattr(engine, message["method"])(**message["kwargs"])
                replies.write(json.dumps({"result": result}) + "\n")
            except Exception:  # noqa: BLE001 - reported to the test
                replies.write(json.dumps({"error": traceback.format_exc()}) + "\n")
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
