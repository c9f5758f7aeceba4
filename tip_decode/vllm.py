"""Public entry point of the vLLM adapter (imports vLLM).

vLLM loads the processor by this name: `tip_decode.vllm:ThoughtSwitchPenalty`. The implementation
lives in `tip_decode.adapters.vllm`.
"""

from tip_decode.adapters.vllm import ThoughtSwitchPenalty, request_config, server_default, think_markers_from_config

__all__ = ["ThoughtSwitchPenalty", "request_config", "server_default", "think_markers_from_config"]
