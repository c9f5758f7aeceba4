"""`nowait`: NoWait (Wang et al., arXiv 2506.08343), reflection keywords banned throughout the reasoning.

The paper lists 17 keywords mined from QwQ-32B outputs and maps them to every vocabulary token whose
text contains a keyword as a substring (any case, with or without leading whitespace), then removes
tokens unrelated to reflection by hand. That manual list is not published, so this module replaces it
with a rule anyone can check (docs/interventions.md): a token is kept when at least one occurrence of
a keyword in its text is not part of a longer alphabetic word, i.e. neither neighbouring character is
a letter. "Wait", " wait", ".Wait", "WAIT" and "double-check" are banned; "button", "Ohio",
"checkout", "waiting" and "anyway" are not.

Banned tokens get -inf while reasoning is open (scope "auto"/"think"), or always (scope "all").
No columns of its own: the ban depends only on the shared reasoning phase.
"""

from __future__ import annotations

import math
import re
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
    parse_words,
    resolve_scope,
)
from tip_decode.core.interventions.registry import Intervention, Key

if TYPE_CHECKING:
    from tip_decode.core.interventions.arrays import TableBuilder

#: The paper's keyword list (mined from QwQ-32B outputs on AIME 2025).
PAPER_KEYWORDS: tuple[str, ...] = (
    "wait", "alternatively", "hmm", "but", "however", "alternative", "another", "check",
    "double-check", "oh", "maybe", "verify", "other", "again", "now", "ah", "any",
)  # fmt: skip
KEYWORD_PRESETS = {"paper": PAPER_KEYWORDS}


@dataclass(frozen=True)
class NoWaitConfig:
    """NoWait settings.

    Args:
        keywords: reflection keywords (lowercased; the preset "paper" is the paper's 17).
        scope: "auto" (inside the think block when the tokenizer has think markers), "think" or "all".

    Example:
        >>> NoWaitConfig().keywords[:3]
        ('wait', 'alternatively', 'hmm')
    """

    keywords: tuple[str, ...] = field(default=PAPER_KEYWORDS)
    scope: str = "auto"

    def __post_init__(self) -> None:
        words = parse_words(self.keywords, "nowait_keywords", KEYWORD_PRESETS)
        object.__setattr__(self, "keywords", tuple(dict.fromkeys(w.lower() for w in words)))
        object.__setattr__(self, "scope", parse_scope(self.scope, "nowait_scope"))

    def to_mapping(self) -> dict[str, Any]:
        return {"nowait": 1, "nowait_keywords": list(self.keywords), "nowait_scope": self.scope}


def keyword_hit(text: str, keyword: str) -> bool:
    """`keyword` occurs in `text` (lowercased) at least once outside a longer alphabetic word."""
    start = text.find(keyword)
    while start >= 0:
        end = start + len(keyword)
        before = text[start - 1] if start > 0 else ""
        after = text[end] if end < len(text) else ""
        if not before.isalpha() and not after.isalpha():
            return True
        start = text.find(keyword, start + 1)
    return False


class NoWaitRule(Rule):
    name = "nowait"

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        keywords, scope = structure  # type: ignore[misc]
        self.keywords: tuple[str, ...] = keywords
        self.scope = resolve_scope(scope, info.markers, "nowait_scope")
        texts = info.token_texts()
        excluded = info.excluded_ids()
        # One regex pass finds the few tokens that contain any keyword; the exact rule runs on those.
        candidates = re.compile("|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True)))
        self.keyword_of: dict[int, str] = {}
        matched: set[str] = set()
        for token_id, text in enumerate(texts):
            lowered = text.lower()
            if token_id in excluded or not candidates.search(lowered):
                continue
            hits = [k for k in keywords if keyword_hit(lowered, k)]
            if hits:
                self.keyword_of[token_id] = hits[0]
                matched.update(hits)
        if not matched:
            raise ValueError(f"`nowait_keywords`: no keyword matches a token of this tokenizer (tried {list(keywords)!r})")
        self.token_ids = tuple(sorted(self.keyword_of))

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> NoWaitTables:
        return NoWaitTables(self, layout, width)


class NoWaitTables(RuleTables):
    def __init__(self, rule: NoWaitRule, layout: Layout, width: int) -> None:
        self.rule = rule
        self.layout = layout
        self.think = rule.scope == "think"
        self.token_ids = tuple(i for i in rule.token_ids if i < width)

    def advance(self, step: AdvanceStep) -> None:
        pass  # stateless: the ban follows the shared reasoning phase

    def contribute(self, step: ApplyStep) -> None:
        if not self.token_ids:
            return
        ops = step.ops
        banned = step.active & step.reasoning if self.think else step.active
        row = ops.floats(ops.where(banned, -math.inf, -0.0))
        self.bias_into(step, ops.broadcast_to(row[:, None], (row.shape[0], len(self.token_ids))))


def _structure(config: NoWaitConfig) -> Hashable:
    return (config.keywords, config.scope)


def _parse_keywords(value: Any, key: str) -> tuple[str, ...]:
    return parse_words(value, key, KEYWORD_PRESETS)


INTERVENTION = Intervention(
    name="nowait",
    title="NoWait: reflection keywords banned while reasoning (Wang et al., arXiv 2506.08343)",
    config_type=NoWaitConfig,
    keys={"nowait_keywords": Key("keywords", _parse_keywords), "nowait_scope": Key("scope", parse_scope)},
    paper=NoWaitConfig(),
    structure=_structure,
    rule=NoWaitRule,
    order=20,  # bans (-inf): never only finite
)
