"""Public entry point of the mlx-lm adapter (imports MLX, not mlx-lm or transformers).

`ReasoningInterventionsProcessor(tokenizer, settings)` goes into mlx-lm's `logits_processors`. The
implementation lives in `tip_decode.adapters.mlx`; see docs/mlx.md.
"""

from tip_decode.adapters.mlx import ReasoningInterventionsProcessor

__all__ = ["ReasoningInterventionsProcessor"]
