"""`affirm`: self-affirmation reflection suppression (arXiv 2506.12353), a low-probability "Wait" banned.

The paper (no public code) suppresses a leading reflection word when the model gives it a low
probability: "Wait" and "wait", each token v of them judged on its own probability at this step,

    p(v) = softmax(z)[v]        z: the logits this processor receives, temperature 1
    p(v) < tau  ->  logit(v) = -inf

at every position of the output (its appendix: "the whole output"). The tokens are those whose text,
leading whitespace removed, is exactly one of the words (" Wait", "Wait", "\\nwait"; not "Waiting",
not "Wait,"); special tokens and think markers never. tau defaults to 0.7, the median of the
thresholds the paper picked per model (0.9 for R1-Distill-Qwen-1.5B and Qwen3-32B, 0.7 for
R1-Distill-Qwen-7B/32B and QwQ-32B).

Columns: LOG_TAU (float: log tau, compared with the token's log-probability).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tip_decode.core.config import parse_scope
from tip_decode.core.interventions.base import (
    AdvanceStep,
    ApplyStep,
    Layout,
    Rule,
    RuleTables,
    TokenizerInfo,
    bad_value,
    parse_number,
    resolve_scope,
)
from tip_decode.core.interventions.registry import Intervention, Key

if TYPE_CHECKING:
    from tip_decode.core.interventions.arrays import TableBuilder

#: §4.2: "Wait" and "wait".
PAPER_WORDS: tuple[str, ...] = ("Wait", "wait")
#: The median of the paper's per-model picks (§5.1).
PAPER_TAU = 0.7


def parse_tau(value: Any, key: str = "affirm_tau") -> float:
    """A probability threshold in [0, 1] (0 bans nothing: it turns the intervention off)."""
    requirement = "has to be a probability between 0 and 1"
    try:
        number = parse_number(value, key)
    except ValueError:
        raise bad_value(key, value, requirement) from None
    if not 0 <= number <= 1:
        raise bad_value(key, value, requirement)
    return number


def parse_words(value: Any, key: str = "affirm_words") -> tuple[str, ...]:
    """Words as tokens spell them, case kept (leading and trailing whitespace dropped: a token's
    leading whitespace never counts)."""
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise bad_value(key, value, "has to be a list of words or a comma-separated string")
    words: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise bad_value(key, value, "has to contain only non-empty strings")
        if item.strip() not in words:
            words.append(item.strip())
    if not words:
        raise bad_value(key, value, "has to name at least one word")
    return tuple(words)


@dataclass(frozen=True)
class AffirmConfig:
    """Self-affirmation reflection suppression.

    Args:
        tau: a word's token is banned at a step where its probability is below this (0..1; 0: off).
        words: the reflection words (exact, case kept; a token matches with leading whitespace).
        scope: "all" (every position, the paper's), "think" (inside the think block) or "auto"
            ("think" when the tokenizer has think markers).

    Example:
        >>> AffirmConfig().tau, AffirmConfig().words
        (0.7, ('Wait', 'wait'))
    """

    tau: float = PAPER_TAU
    words: tuple[str, ...] = field(default=PAPER_WORDS)
    scope: str = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau", parse_tau(self.tau))
        object.__setattr__(self, "words", parse_words(self.words))
        object.__setattr__(self, "scope", parse_scope(self.scope, "affirm_scope"))

    @property
    def enabled(self) -> bool:
        return self.tau > 0

    def to_mapping(self) -> dict[str, Any]:
        return {"affirm": 1, "affirm_tau": self.tau, "affirm_words": list(self.words), "affirm_scope": self.scope}


class AffirmRule(Rule):
    name = "affirm"

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        words, scope = structure  # type: ignore[misc]
        self.words: tuple[str, ...] = words
        self.scope = resolve_scope(scope, info.markers, "affirm_scope")
        excluded = info.excluded_ids()
        wanted = set(words)
        self.word_of = {i: text.lstrip() for i, text in enumerate(info.token_texts()) if i not in excluded and text.lstrip() in wanted}
        if not self.word_of:
            raise ValueError(f"`affirm_words`: no token of this tokenizer spells any of {list(words)!r}")
        self.token_ids = tuple(sorted(self.word_of))

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> AffirmTables:
        return AffirmTables(self, layout, width, tables)


class AffirmTables(RuleTables):
    reads_logits = True  # a token's probability needs the whole row's normaliser

    def __init__(self, rule: AffirmRule, layout: Layout, width: int, tables: TableBuilder) -> None:
        self.rule = rule
        self.layout = layout
        self.think = rule.scope == "think"
        self.token_ids = tuple(i for i in rule.token_ids if i < width)
        self.ids = tables.ints(self.token_ids)
        self.LOG_TAU = layout.add_float("affirm.log_tau", default=-math.inf)

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        return {}, {self.LOG_TAU: math.log(config.tau) if config.tau > 0 else -math.inf}

    def advance(self, step: AdvanceStep) -> None:
        pass  # stateless: a function of this step's logits and the shared reasoning phase

    def contribute(self, step: ApplyStep) -> None:
        if not self.token_ids:
            return
        ops = step.ops
        logits = ops.floats(step.logits())
        acting = step.active & step.reasoning if self.think else step.active
        # log p(v) = z_v - logsumexp(z); p < tau is log p < log tau (a row of -inf gives NaN: no ban).
        log_p = logits[:, ops.table(self.ids)] - ops.logsumexp(logits)[:, None]
        low = log_p < step.floats[:, self.LOG_TAU][:, None]
        self.bias_into(step, ops.floats(ops.where(acting[:, None] & low, -math.inf, -0.0)))


def _structure(config: AffirmConfig) -> Hashable:
    return (config.words, config.scope)


INTERVENTION = Intervention(
    name="affirm",
    title="self-affirmation reflection suppression: a low-probability Wait banned (arXiv 2506.12353)",
    config_type=AffirmConfig,
    keys={
        "affirm_tau": Key("tau", parse_tau),
        "affirm_words": Key("words", parse_words),
        "affirm_scope": Key("scope", parse_scope),
    },
    paper=AffirmConfig(),
    structure=_structure,
    rule=AffirmRule,
    order=25,  # bans (-inf): never only finite
)
