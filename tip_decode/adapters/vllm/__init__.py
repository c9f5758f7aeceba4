"""vLLM adapter: one logits processor for the whole intervention family, on both model runners.

- `processor.py`: the class (`ReasoningInterventions`, also `ThoughtSwitchPenalty`), runner detection,
  admission checks;
- `v1.py` / `mrv2.py`: each model runner's bookkeeping; `batch.py`: the V1 add/remove/move helper;
- `groups.py`: requests grouped by structure, one plan and per-row state per group;
- `settings.py`: server defaults, per-request settings, think markers.
"""

from tip_decode.adapters.vllm.processor import ReasoningInterventions, ThoughtSwitchPenalty
from tip_decode.adapters.vllm.settings import (
    request_config,
    request_settings,
    server_default,
    server_settings,
    think_markers_from_config,
)

__all__ = [
    "ReasoningInterventions",
    "ThoughtSwitchPenalty",
    "request_config",
    "request_settings",
    "server_default",
    "server_settings",
    "think_markers_from_config",
]
