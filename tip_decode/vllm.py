"""Public entry point of the vLLM adapter (imports vLLM).

vLLM loads the processor by name: `tip_decode.vllm:ThoughtSwitchPenalty` (the original name) or
`tip_decode.vllm:ReasoningInterventions` (the same class). The implementation lives in
`tip_decode.adapters.vllm`.
"""

from tip_decode.adapters.vllm import (
    ReasoningInterventions,
    ThoughtSwitchPenalty,
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
