"""`inject`: thinking intervention (Wu et al., arXiv 2503.24370), a fixed text inserted into the reasoning.

The paper has a monitor that detects a trigger (by default the start of reasoning) and inserts an
instruction written in the first person ("I should ..."). As a logits rule: the text's tokens are
forced one per step (forcing.py), once per request, from the anchor on:

- the anchor is the first step of reasoning (the first generated token when the prompt ends inside
  an open think block, else the token after a generated start marker; the first generated token for
  a tokenizer without think markers), or, with `inject_after`, the step right after the generated
  reasoning text first contains that text (matched as text, however the tokenizer cut it: the
  text automaton of suffix.py, its `fires`; the prompt's text is not searched);
- the text is forced only while reasoning is open; a step whose token is not the forced one (another
  intervention forced its own first, e.g. a budget's maximum) ends the text there.

The text is user text, encoded once by the tokenizer's own tokenizer.json (`TokenizerInfo.
ordinary_ids`); it has to encode to ordinary tokens. NoThinking (nothinking.py) is this rule with
the text "Okay, I think I have finished thinking." and the end marker.

Columns: the text's NEXT (forcing.py), DONE (the anchor was reached) and, with a trigger, TRIGGER
(the trigger automaton's state).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tip_decode.core.interventions.base import (
    ENDED,
    REASONING,
    WAITING,
    AdvanceStep,
    ApplyStep,
    Layout,
    PhaseTrace,
    Rule,
    RuleTables,
    TokenizerInfo,
    bad_value,
)
from tip_decode.core.interventions.forcing import ForcedText, force_positions, host_next
from tip_decode.core.interventions.registry import Intervention, Key
from tip_decode.core.interventions.suffix import SuffixAutomaton, suffix_automaton

if TYPE_CHECKING:
    from tip_decode.core.interventions.arrays import TableBuilder


def parse_text(value: Any, key: str) -> str | None:
    """A text kept verbatim (whitespace included), or None for "" / "none" / None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_value(key, value, "has to be a string")
    if value == "" or value.strip().lower() == "none":
        return None
    return value


def text_summary(value: str | None) -> str:
    """A text as summaries show it (one line: newlines escaped)."""
    return "none" if value is None else repr(value)


@dataclass(frozen=True)
class InjectConfig:
    """Thinking intervention.

    Args:
        text: the text inserted into the reasoning (required), e.g. "I should answer in JSON.".
        after: insert it right after the reasoning first contains this text (None: at the start of
            reasoning).

    Example:
        >>> InjectConfig(text="I should check units.").enabled, InjectConfig().enabled
        (True, False)
    """

    text: str | None = None
    after: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", parse_text(self.text, "inject_text"))
        object.__setattr__(self, "after", parse_text(self.after, "inject_after"))

    @property
    def enabled(self) -> bool:
        return self.text is not None

    def to_mapping(self) -> dict[str, Any]:
        return {"inject_text": self.text or "", "inject_after": self.after or ""}


class InjectRule(Rule):
    """Forces `ids` one per step from the anchor on, once (see the module docstring)."""

    name = "inject"

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        text, after = structure  # type: ignore[misc]
        self.setup(info, info.ordinary_ids(text, "inject_text"), after)

    def setup(self, info: TokenizerInfo, ids: Sequence[int], after: str | None) -> None:
        self.scope = "think" if info.markers.available else "all"
        self.text_ids = tuple(int(i) for i in ids)
        self.after = after
        self.token_ids = tuple(dict.fromkeys(self.text_ids))
        self.automaton = suffix_automaton(info, (after,)) if after is not None else None

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> InjectTables:
        return InjectTables(self, layout, width, tables)


class InjectTables(RuleTables):
    def __init__(self, rule: InjectRule, layout: Layout, width: int, tables: TableBuilder) -> None:
        self.rule = rule
        self.layout = layout
        if any(i >= width for i in rule.token_ids):
            raise ValueError(f"`{rule.name}`: the text has a token outside the logits width {width}")
        self.token_ids = rule.token_ids
        position = {token: k for k, token in enumerate(self.token_ids)}
        self.text = ForcedText(layout, tables, f"{rule.name}.text", rule.text_ids, [position[i] for i in rule.text_ids])
        self.DONE = layout.add_int(f"{rule.name}.done")
        self.automaton: SuffixAutomaton | None = None
        if rule.automaton is not None:
            automaton = self.automaton = rule.automaton.for_width(width)
            self.width = width
            states = automaton.states
            # Flattened class-major, as TIP's switch tables: one lookup per table and step.
            self.class_offset = tables.array(automaton.class_of * states)
            self.next_state = tables.array(automaton.next_state.T.reshape(-1).copy())
            self.fires = tables.array(automaton.fires.T.reshape(-1).copy())
            self.TRIGGER = layout.add_int(f"{rule.name}.trigger")

    def forced_index(self, ops: Any, ints: Any, thinking: Any) -> tuple[Any, Any]:
        """(index of the text token forced at this step or -1, rows where the anchor is this step)."""
        under_way = thinking & self.text.under_way(ints)
        starting = thinking & (ints[:, self.DONE] == 0) & ~under_way if self.automaton is None else None
        if starting is None:
            return ops.where(under_way, ints[:, self.text.NEXT], -1), None
        return ops.where(under_way, ints[:, self.text.NEXT], ops.where(starting, 0, -1)), starting

    def advance(self, step: AdvanceStep) -> None:
        ops, ints, tokens, out = step.ops, step.ints, step.tokens, step.out_ints
        active = ints[:, self.layout.ACTIVE] == 1
        thinking = active if step.reasoning is None else active & step.reasoning
        index, starting = self.forced_index(ops, ints, thinking)
        following = self.text.following(ops, index, tokens)
        done = ints[:, self.DONE]
        if starting is not None:
            done = ops.where(starting, 1, done)
        else:
            flat = ops.table(self.class_offset)[ops.clip(tokens, -1, self.width - 1) + 1] + ints[:, self.TRIGGER]
            fired = ops.table(self.fires)[flat]
            moved = ops.table(self.next_state)[flat]
            # Matched inside the reasoning text only: a token read while reasoning is open, not the
            # one that closes it; the state starts over where reasoning opens.
            inside = thinking if step.closes is None else thinking & ~step.closes
            anchored = inside & fired & (done == 0)
            out[:, self.TRIGGER] = ops.where(inside, moved, 0)
            following = ops.where(anchored, 0, following)
            done = ops.where(anchored, 1, done)
        out[:, self.text.NEXT] = following
        out[:, self.DONE] = done

    def contribute(self, step: ApplyStep) -> None:
        ops = step.ops
        index, _ = self.forced_index(ops, step.ints, step.active & step.reasoning)
        force_positions(step, self.index, self.text.position(ops, index), len(self.token_ids))

    def replay(self, config: Any, generated: Sequence[int], trace: PhaseTrace, ints: list[int], floats: list[float]) -> None:
        # Every decision is a function of the token history: run them again.
        phase = trace.markers.available and not trace.prompt_open
        state = WAITING if phase else REASONING
        next_index, done, trigger = -1, 0, 0
        ids = self.rule.text_ids
        for token in (int(t) for t in generated):
            thinking = state == REASONING
            under_way = thinking and next_index >= 0
            forced = next_index if under_way else (0 if (self.automaton is None and thinking and not done) else -1)
            next_index = host_next(ids, forced, token)
            closes = thinking and trace.markers.available and token == trace.markers.end_id
            if self.automaton is None:
                done = 1 if forced == 0 else done
            else:
                moved, fired = self.automaton.step(trigger, token)
                inside = thinking and not closes
                trigger = moved if inside else 0
                if inside and fired and not done:
                    next_index, done = 0, 1
            if state == WAITING and token == trace.markers.start_id:
                state = REASONING
            elif closes:
                state = ENDED
        ints[self.text.NEXT], ints[self.DONE] = next_index, done
        if self.automaton is not None:
            ints[self.TRIGGER] = trigger


def _structure(config: InjectConfig) -> Hashable:
    return (config.text, config.after)


def _display(declared: Intervention, config: InjectConfig, short: bool) -> list[str]:
    return [f"text={text_summary(config.text)}", f"after={text_summary(config.after) if config.after else 'start of reasoning'}"]


INTERVENTION = Intervention(
    name="inject",
    title="thinking intervention: a fixed text inserted into the reasoning (Wu et al., arXiv 2503.24370)",
    config_type=InjectConfig,
    keys={
        "inject_text": Key("text", parse_text),
        "inject_after": Key("after", parse_text),
    },
    paper=InjectConfig(),
    structure=_structure,
    rule=InjectRule,
    order=94,  # forces: after budget, whose maximum wins (an earlier force is kept)
    needs="`inject_text`",
    example="text=I should answer in JSON.",
    display=_display,
)
