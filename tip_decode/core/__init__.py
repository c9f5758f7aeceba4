"""The backend-neutral core: configuration, switch vocabulary, switch recognition and per-row state.

`config`, `vocabulary` and `recognizer` are plain Python; `state` holds the same rules as batched
torch operations for the processors. Nothing here imports transformers, vLLM or SGLang.
"""
