"""A slow, obviously correct reading of the behaviour contract, for tests only.

Everything is recomputed from the whole token history at every step, one row at a time, straight
from the words of sections 1-3 of tip-spec.md. The library's incremental tensor code and its host
recognizer are both checked against this.
"""

from __future__ import annotations

import math

from tip_decode.core.vocabulary import SwitchVocabulary


def starts_word(vocab: SwitchVocabulary, generated: list[int], j: int, first_text_is_space: bool) -> bool:
    """p1 = generated[j] starts a word: its text starts with whitespace, or the previous token ends in
    a non-letter, or it is the first generated token."""
    if first_text_is_space or j == 0:
        return True
    return vocab.ends_word_at(generated[j - 1])


def reasoning_start(vocab: SwitchVocabulary, scope: str, prompt_open: bool, generated: list[int]) -> int | None:
    """Where reasoning starts in `generated`, or None if it has not started."""
    if scope == "all" or prompt_open:
        return 0
    for j, token in enumerate(generated):
        if token == vocab.think.start_id:
            return j + 1
    return None


def reasoning_ended_before(vocab: SwitchVocabulary, scope: str, prompt_open: bool, generated: list[int], t: int) -> bool:
    if scope == "all":
        return False
    start = reasoning_start(vocab, scope, prompt_open, generated[:t])
    if start is None:
        return False
    return any(token == vocab.think.end_id for token in generated[start:t])


def switch_events(vocab: SwitchVocabulary, scope: str, prompt_open: bool, generated: list[int]) -> list[tuple[int, int]]:
    """(position that completes it, switch position j) of every switch in `generated`, in order."""
    out: list[tuple[int, int]] = []
    start = reasoning_start(vocab, scope, prompt_open, generated)
    if start is None:
        return []
    for end in range(start, len(generated)):
        if reasoning_ended_before(vocab, scope, prompt_open, generated, end):
            break
        candidates = []
        if generated[end] in vocab.token_ids:
            candidates.append(end)
        for m in vocab.multi_token:
            k = len(m.prefix)
            j = end - k
            if j < 0 or generated[end] != m.completion:
                continue
            if tuple(generated[j:end]) == m.prefix and starts_word(vocab, generated, j, m.prefix_starts_with_space):
                candidates.append(j)
        if candidates:
            out.append((end, max(candidates)))
    return out


def switches(vocab: SwitchVocabulary, scope: str, prompt_open: bool, generated: list[int]) -> list[int]:
    """Switch positions j in `generated`, in order of the position that completes them."""
    return [j for _, j in switch_events(vocab, scope, prompt_open, generated)]


def psi_at(vocab: SwitchVocabulary, scope: str, prompt_open: bool, generated: list[int], t: int) -> int | None:
    """psi when choosing generated[t] (the state after generated[:t])."""
    history = generated[:t]
    start = reasoning_start(vocab, scope, prompt_open, history)
    if start is None:
        return None
    psi = start
    for j in switches(vocab, scope, prompt_open, history):
        psi = j
    return psi


def penalised(vocab: SwitchVocabulary, scope: str, prompt_open: bool, generated: list[int], t: int, beta: int) -> set[int]:
    """Token ids penalised when choosing generated[t]."""
    history = generated[:t]
    psi = psi_at(vocab, scope, prompt_open, generated, t)
    if psi is None or reasoning_ended_before(vocab, scope, prompt_open, generated, t) or not t < psi + beta:
        return set()
    ids = set(vocab.token_ids)
    for m in vocab.multi_token:
        k = len(m.prefix)
        j = t - k
        if j >= 0 and tuple(history[j:t]) == m.prefix and starts_word(vocab, history, j, m.prefix_starts_with_space):
            ids.add(m.completion)
    return ids


def expected_logits(logits: list[float], ids: set[int], alpha: float) -> list[float]:
    out = list(logits)
    for i in ids:
        out[i] = out[i] - alpha if not math.isinf(alpha) else -math.inf
    return out
