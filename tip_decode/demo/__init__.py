"""The offline demo: a synthetic task that exhibits underthinking, and a tiny model trained on it.

- `tip_decode.demo.task`: the step-search problems, the trace generator and trace checking.
- `tip_decode.demo.tokenizer`: the word-level tokenizer (built with `tokenizers`).
- `tip_decode.demo.train`: `python -m tip_decode.demo.train` makes the shipped model in `model/`.
- `tip_decode.demo.evaluate`: a direct check of a model (training metadata, tests).
- `tip_decode.demo.run`: `run_demo`, what `tip-decode demo` runs (the comparison harness).

Importing this package imports neither torch nor transformers.
"""

from pathlib import Path

#: The shipped model and tokenizer (load with `AutoModelForCausalLM.from_pretrained(MODEL_DIR)`).
MODEL_DIR = Path(__file__).resolve().parent / "model"

__all__ = ["MODEL_DIR"]
