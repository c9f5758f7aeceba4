"""A slow, obviously correct reading of the behaviour contract, for tests only.

Everything is recomputed from the whole token history at every step, one row at a time, straight
from the words of sections 1-3 of tip-spec.md. The library's incremental tensor code and its host
recognizer are both checked against this.

The rules (which ids are hits, which multi-token patterns exist, which tokens end a word, the
think markers) come from `vocab_oracle.Rules`, derived from the tokenizer file by brute force and
never from `SwitchVocabulary`. A `SwitchVocabulary` is still accepted (older callers), which then
checks only that the state follows the vocabulary it was given.
"""

from __future__ import annotations

import math

from vocab_oracle import Pattern, Rules


def as_rules(rules) -> Rules:
    if isinstance(rules, Rules):
        return rules
    vocab = rules  # a SwitchVocabulary
    return Rules(
        token_ids=frozenset(vocab.token_ids),
        hit_trigger=dict(vocab.hit_trigger),
        patterns=[Pattern(m.trigger, m.prefix, m.completion, m.prefix_starts_with_space) for m in vocab.multi_token],
        ends_word=[bool(x) for x in vocab.ends_word],
        think_start=vocab.think.start_id,
        think_end=vocab.think.end_id,
    )


def starts_word(rules: Rules, generated: list[int], j: int, first_text_is_space: bool) -> bool:
    """p1 = generated[j] starts a word: its text starts with whitespace, or the previous token ends in
    a non-letter, or it is the first generated token."""
    if first_text_is_space or j == 0:
        return True
    return rules.ends_word_at(generated[j - 1])


def reasoning_start(rules: Rules, scope: str, prompt_open: bool, generated: list[int]) -> int | None:
    """Where reasoning starts in `generated`, or None if it has not started."""
    if scope == "all" or prompt_open:
        return 0
    for j, token in enumerate(generated):
        if token == rules.think_start:
            return j + 1
    return None


def reasoning_ended_before(rules: Rules, scope: str, prompt_open: bool, generated: list[int], t: int) -> bool:
    if scope == "all":
        return False
    start = reasoning_start(rules, scope, prompt_open, generated[:t])
    if start is None:
        return False
    return any(token == rules.think_end for token in generated[start:t])


def switches(rules, scope: str, prompt_open: bool, generated: list[int]) -> list[int]:
    """Switch positions j in `generated`, in order of the position that completes them."""
    return [j for j, _ in switch_events(rules, scope, prompt_open, generated)]


def switch_events(rules, scope: str, prompt_open: bool, generated: list[int]) -> list[tuple[int, int]]:
    """(switch position j, position of the token completing it) for every switch."""
    rules = as_rules(rules)
    out: list[tuple[int, int]] = []
    start = reasoning_start(rules, scope, prompt_open, generated)
    if start is None:
        return []
    for end in range(start, len(generated)):
        if reasoning_ended_before(rules, scope, prompt_open, generated, end):
            break
        candidates = []
        if generated[end] in rules.token_ids:
            candidates.append(end)
        for m in rules.patterns:
            k = len(m.prefix)
            j = end - k
            if j < 0 or generated[end] != m.completion:
                continue
            if tuple(generated[j:end]) == m.prefix and starts_word(rules, generated, j, m.starts_with_space):
                candidates.append(j)
        if candidates:
            # Several readings ending at one token: the latest start is the switch position.
            out.append((max(candidates), end))
    return out


def psi_at(rules, scope: str, prompt_open: bool, generated: list[int], t: int) -> int | None:
    """psi when choosing generated[t] (the state after generated[:t])."""
    rules = as_rules(rules)
    history = generated[:t]
    start = reasoning_start(rules, scope, prompt_open, history)
    if start is None:
        return None
    psi = start
    for j in switches(rules, scope, prompt_open, history):
        psi = j
    return psi


def penalised(rules, scope: str, prompt_open: bool, generated: list[int], t: int, beta: int) -> set[int]:
    """Token ids penalised when choosing generated[t]."""
    rules = as_rules(rules)
    history = generated[:t]
    psi = psi_at(rules, scope, prompt_open, generated, t)
    if psi is None or reasoning_ended_before(rules, scope, prompt_open, generated, t) or not t < psi + beta:
        return set()
    ids = set(rules.token_ids)
    for m in rules.patterns:
        k = len(m.prefix)
        j = t - k
        if j >= 0 and tuple(history[j:t]) == m.prefix and starts_word(rules, history, j, m.starts_with_space):
            ids.add(m.completion)
    return ids


def expected_logits(logits: list[float], ids: set[int], alpha: float) -> list[float]:
    """The contract's z' for the penalised ids: z - alpha; with alpha = inf a ban (-inf), also for a
    +inf logit (docs/penalty.md), so never NaN."""
    out = list(logits)
    for i in ids:
        out[i] = out[i] - alpha if not math.isinf(alpha) else -math.inf
    return out
