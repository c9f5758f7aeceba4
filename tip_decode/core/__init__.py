"""The backend-neutral core: configuration, switch vocabulary, switch recognition and per-row state.

`config`, `vocabulary` and `recognizer` are plain Python; `interventions` holds the intervention
family (TIP, NoWait, CyclicReflex, thinking budgets, gated TIP) as batched torch operations on one
per-row state, and `state` a TIP-only front of it. Nothing here imports transformers, vLLM or SGLang.
"""
