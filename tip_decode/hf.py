"""Public entry point of the Hugging Face `generate` adapter (imports transformers).

`ReasoningInterventionsProcessor` (any combination of interventions) and `TIPLogitsProcessor` (its
TIP-only form) live in `tip_decode.adapters.hf`, `AbandonmentDetector` in
`tip_decode.analysis.detector`; this module is the stable import path for all three.
"""

from tip_decode.adapters.hf import ReasoningInterventionsProcessor, TIPLogitsProcessor
from tip_decode.analysis.detector import AbandonmentDetector

__all__ = ["AbandonmentDetector", "ReasoningInterventionsProcessor", "TIPLogitsProcessor"]
