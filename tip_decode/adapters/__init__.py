"""Backend adapters: thin layers that feed each engine's per-step calls into the core.

Each adapter imports its engine; none is imported by `import tip_decode`. Users import them through
the public entry modules `tip_decode.hf`, `tip_decode.vllm` and `tip_decode.sglang` (the last imports
SGLang only when installed: its client helpers work without it).
"""
