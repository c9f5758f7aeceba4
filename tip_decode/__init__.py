"""tip-decode: thought-switching penalty (TIP) decoding and underthinking analysis.

The top-level package is the backend-neutral core. Backend adapters live in `tip_decode.hf`
(transformers) and `tip_decode.vllm` (vLLM) and are imported only when asked for.
"""

from tip_decode.core.config import PAPER_ALPHA, PAPER_BETA, TRIGGER_PRESETS, TIPConfig
from tip_decode.core.recognizer import SwitchEvent, SwitchRecognizer, find_switches, prompt_ends_in_open_think
from tip_decode.core.vocabulary import MultiTokenTrigger, SwitchVocabulary, ThinkMarkers

__version__ = "0.1.0"

__all__ = [
    "PAPER_ALPHA",
    "PAPER_BETA",
    "TRIGGER_PRESETS",
    "MultiTokenTrigger",
    "SwitchEvent",
    "SwitchRecognizer",
    "SwitchVocabulary",
    "TIPConfig",
    "ThinkMarkers",
    "__version__",
    "find_switches",
    "prompt_ends_in_open_think",
]
