"""A test-only subclass of the SGLang processor that records the registry's counters after each call.

The server imports it by name (the tests put tests/ on the server's PYTHONPATH) when a request sends
`processor_string(RecordingThoughtSwitchPenalty)`. The penalty itself is the parent's, unchanged;
the counters (requests tracked, released, rows seen one token late) are appended as JSON lines to
the file named by TIP_DECODE_SGLANG_RECORD, so that tests can see inside the scheduler process.
"""

from __future__ import annotations

import json
import os

from tip_decode.sglang import ThoughtSwitchPenalty, registry_snapshot


class RecordingThoughtSwitchPenalty(ThoughtSwitchPenalty):
    def __call__(self, logits, custom_param_list=None):
        out = super().__call__(logits, custom_param_list)
        path = os.environ.get("TIP_DECODE_SGLANG_RECORD")
        if path:
            with open(path, "a") as record:
                record.write(json.dumps({"rows": len(custom_param_list or ()), **registry_snapshot()}) + "\n")
        return out
