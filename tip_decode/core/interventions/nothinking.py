"""`nothinking`: NoThinking (Ma et al., arXiv 2504.09858), the reasoning closed before it starts.

The paper prefills the thinking box with "Okay, I think I have finished thinking." and the end of
thinking, and lets the model answer. As a decoding-time rule this is thinking intervention
(inject.py) at the start of reasoning with that text followed by the end marker, forced one token per
step: `nothinking=1` (or `-c nothinking`) is that preset. Public implementations differ in the
whitespace around the sentence; we force "Okay, I think I have finished thinking.\\n" then `</think>`
(the chat templates of R1-style models end with "<think>\\n", and these models write "\\n</think>").
`nothinking_text` replaces the sentence ("none": the end marker alone, for a vocabulary that cannot
write it, such as the demo model's).

Needs single-token think markers. Columns: inject's (NEXT, DONE).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from tip_decode.core.interventions.base import TokenizerInfo
from tip_decode.core.interventions.inject import InjectRule, parse_text, text_summary
from tip_decode.core.interventions.registry import Intervention, Key

#: The paper's sentence, with the newline R1-style models write before `</think>`.
PAPER_TEXT = "Okay, I think I have finished thinking.\n"


@dataclass(frozen=True)
class NoThinkingConfig:
    """NoThinking.

    Args:
        text: forced at the start of reasoning before the end marker (None: the end marker alone).

    Example:
        >>> NoThinkingConfig().text
        'Okay, I think I have finished thinking.\\n'
    """

    text: str | None = PAPER_TEXT

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", parse_text(self.text, "nothinking_text"))

    def to_mapping(self) -> dict[str, Any]:
        return {"nothinking": 1, "nothinking_text": self.text or "none"}


class NoThinkingRule(InjectRule):
    name = "nothinking"

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        (text,) = structure  # type: ignore[misc]
        ids = info.ordinary_ids(text, "nothinking_text") if text is not None else ()
        # The plan has checked that the markers exist (INTERVENTION.needs_think_markers).
        self.setup(info, (*ids, int(info.markers.end_id)), None)  # type: ignore[arg-type]


def _structure(config: NoThinkingConfig) -> Hashable:
    return (config.text,)


def _display(declared: Intervention, config: NoThinkingConfig, short: bool) -> list[str]:
    return [f"text={text_summary(config.text)} then the end marker"]


def _conflict(config: NoThinkingConfig, others: Mapping[str, Any]) -> str | None:
    if others.get("inject") is not None:
        return "both force a text at the start of reasoning (NoThinking is thinking intervention's preset)"
    budget = others.get("budget")
    if budget is not None and budget.min > 0:
        return "a minimum thinking length bans the end marker NoThinking forces at once (drop `budget_min`)"
    return None


INTERVENTION = Intervention(
    name="nothinking",
    title="NoThinking: the reasoning closed before it starts (Ma et al., arXiv 2504.09858)",
    config_type=NoThinkingConfig,
    keys={"nothinking_text": Key("text", parse_text)},
    paper=NoThinkingConfig(),
    structure=_structure,
    rule=NoThinkingRule,
    order=96,  # forces: after budget, whose maximum wins (an earlier force is kept)
    needs_think_markers=("nothinking",),
    display=_display,
    conflict=_conflict,
)
