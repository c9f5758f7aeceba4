"""Public entry point of the llama-cpp-python adapter (imports llama-cpp-python, not transformers).

`ReasoningInterventionsProcessor(source, settings)` goes into a `llama_cpp.LogitsProcessorList`;
`gguf_tokenizer(path)` reads a GGUF file's vocabulary. The implementation lives in
`tip_decode.adapters.llama_cpp`; see docs/llama-cpp.md.
"""

from tip_decode.adapters.gguf import GGUFError, gguf_tokenizer
from tip_decode.adapters.llama_cpp import ReasoningInterventionsProcessor

__all__ = ["GGUFError", "ReasoningInterventionsProcessor", "gguf_tokenizer"]
