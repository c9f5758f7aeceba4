"""Entropy from log-probabilities, exact (a full distribution) or approximate (vLLM's top-k).

vLLM returns only the top-k log-probabilities of each step. `entropy_from_top_logprobs` treats the
probability mass outside the top k as one further outcome; this never overestimates the entropy of
the k listed outcomes' part and is exact when the top k hold all the mass. It is a lower bound of the
true entropy: the tail's mass spread over many tokens would add more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping


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
