"""Public entry point of the SGLang adapter (imports SGLang only when it is installed).

Requests name the processor as `custom_logit_processor` (the string `processor_string()` returns,
a pickled reference to `tip_decode.sglang.ThoughtSwitchPenalty`, also available as
`ReasoningInterventions`) and carry the flat keys of their interventions (`tip_*`, `nowait_*`,
`cyclic_*`, `budget_*`, `gated_*`) in `custom_params`; `generate_fields` and `openai_fields` build
both for SGLang's native `/generate` and its OpenAI-compatible routes, validating the settings
first. The implementation lives in `tip_decode.adapters.sglang`; see docs/sglang.md.
"""

from tip_decode.adapters.sglang import (
    ReasoningInterventions,
    ThoughtSwitchPenalty,
    custom_params,
    generate_fields,
    openai_fields,
    processor_string,
    registry_snapshot,
    request_config,
    request_settings,
    server_default,
    server_settings,
)

__all__ = [
    "ReasoningInterventions",
    "ThoughtSwitchPenalty",
    "custom_params",
    "generate_fields",
    "openai_fields",
    "processor_string",
    "registry_snapshot",
    "request_config",
    "request_settings",
    "server_default",
    "server_settings",
]
