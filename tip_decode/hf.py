"""Public entry point of the Hugging Face `generate` adapter (imports transformers).

`TIPLogitsProcessor` lives in `tip_decode.adapters.hf`, `AbandonmentDetector` in
`tip_decode.analysis.detector`; this module is the stable import path for both.
"""

from tip_decode.adapters.hf import TIPLogitsProcessor
from tip_decode.analysis.detector import AbandonmentDetector

__all__ = ["AbandonmentDetector", "TIPLogitsProcessor"]
