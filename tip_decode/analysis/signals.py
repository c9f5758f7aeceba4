"""Entropy from log-probabilities, exact (a full distribution) or approximate (vLLM's top-k).

vLLM returns only the top-k log-probabilities of each step. `entropy_from_top_logprobs` treats the
probability mass outside the top k as one further outcome; this never overestimates the entropy of
the k listed outcomes' part and is exact when the top k hold all the mass. It is a lower bound of the
true entropy: the tail's mass spread over many tokens would add more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def entropy_from_logprobs(logprobs: Iterable[float]) -> float:
    """Shannon entropy (nats) of a full distribution given as log-probabilities."""
    total = 0.0
    for value in logprobs:
        value = float(value)
        if value > -math.inf:
            total -= math.exp(value) * value
    return total


def entropy_from_top_logprobs(top: Mapping[object, float] | Iterable[float]) -> float:
    """Top-k approximation (nats): `-sum_k p_k log p_k - r log r` with `r = 1 - sum_k p_k` (the tail).

    `top` is a mapping token -> logprob (vLLM / OpenAI `top_logprobs`) or the logprobs alone.
    """
    values = [float(v) for v in (top.values() if isinstance(top, Mapping) else top)]
    probs = [math.exp(v) for v in values if v > -math.inf]
    rest = max(0.0, 1.0 - sum(probs))
    entropy = -sum(p * math.log(p) for p in probs if p > 0)
    if rest > 1e-12:
        entropy -= rest * math.log(rest)
    return entropy


def token_id_of(key: Any) -> int | None:
    """A token id from an int, a digit string, or vLLM's "token_id:123" form (sent when a request
    asks for `return_tokens_as_token_ids`); None for plain token text."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str):
        text = key[len("token_id:") :] if key.startswith("token_id:") else key
        if text.isdigit():
            return int(text)
    return None


def _logprob_value(value: object) -> float:
    # vLLM's Logprob objects carry `.logprob`; OpenAI-style replies are plain floats.
    return float(getattr(value, "logprob", value))  # type: ignore[arg-type]


def top_logprob_signals(token_ids: Sequence[int], top_logprobs: Sequence[Mapping[object, object] | None]) -> tuple[list[float], list[float]]:
    """Per-token `(chosen-token logprobs, top-k entropies)` from a backend's returned logprobs.

    `top_logprobs[t]` maps token id (int, or vLLM's "token_id:123" string) to a logprob (a float or
    a vLLM `Logprob`) for step t; vLLM always includes the sampled token. A step without data gives
    NaN, which the per-thought means of `analyze_response` skip. Pass the results as
    `token_logprobs` / `token_entropies`.
    """
    if len(top_logprobs) != len(token_ids):
        raise ValueError(f"`top_logprobs` has to have one entry per token ({len(token_ids)}), but has {len(top_logprobs)}")
    chosen: list[float] = []
    entropies: list[float] = []
    for token, step in zip(token_ids, top_logprobs):
        if not step:
            chosen.append(math.nan)
            entropies.append(math.nan)
            continue
        values = {token_id_of(k): _logprob_value(v) for k, v in step.items()}
        chosen.append(values.get(int(token), math.nan))
        entropies.append(entropy_from_top_logprobs(list(values.values())))
    return chosen, entropies
