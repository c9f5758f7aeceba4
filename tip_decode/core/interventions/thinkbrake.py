"""`thinkbrake`: ThinkBrake (Oh et al., arXiv 2510.00546), stop thinking when `</think>` comes close
to the top token at a sentence end.

The authors' code (ssangjun706/ThinkBrake@8cc7ed4, `thinkbrake/func/handler.py`, `run_thinkbrake_step`)
generates until the stop string `".\\n\\n"`, probes the log-probability of the next token and of
`</think>`, and ends the reasoning when they are within `tau` of each other. As a logits rule, at
the step right after the reasoning text ends with a boundary (`boundary`, default `".\\n\\n"`, however
the tokenizer splits it):

    m = max_v logp(v) - logp(</think>)          log-softmax of the logits this processor receives at
                                                temperature T: m = (max_v z_v - z_</think>) / T
    force </think>  iff  m <= tau

only while reasoning is open. The boundary is recognised by the text automaton over the token texts
(suffix.py: `matched` of the state after the token), one table lookup per token on the device; `m`
is one maximum per row. Nothing is read back to the host. Where a stage before this rule (another
intervention of the request, or the logits as they arrived) banned `</think>` (-inf), no brake
happens (m is +inf, or the plan's bias is -inf). docs/interventions.md lists every reading of the
source and every deviation.

Columns: RECOGNIZER (the automaton's state) (int); TAU, TEMPERATURE (floats).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tip_decode.core.interventions.base import (
    AdvanceStep,
    ApplyStep,
    Layout,
    PhaseTrace,
    Rule,
    RuleTables,
    TokenizerInfo,
    bad_value,
    parse_number,
)
from tip_decode.core.interventions.registry import Intervention, Key
from tip_decode.core.interventions.suffix import suffix_automaton

if TYPE_CHECKING:
    from tip_decode.core.interventions.arrays import TableBuilder

#: The authors' stop string (`handler.py` l.61): a paragraph that ends a sentence.
PAPER_BOUNDARY: tuple[str, ...] = (".\n\n",)
#: How boundary texts are written in flat keys, specs and summaries (a real backslash is `\\`).
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def unescape(text: str, key: str) -> str:
    """`text` with the escapes \\n, \\r, \\t and \\\\ read as newline, return, tab and backslash
    (a command line cannot hold a newline); any other backslash is an error naming `key`."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            code = text[index + 1 : index + 2]
            if code not in _ESCAPES:
                raise bad_value(key, text, "may use only the escapes \\n, \\r, \\t and \\\\ (write \\\\ for a backslash)")
            out.append(_ESCAPES[code])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def escape(text: str) -> str:
    """The written form of a boundary (`unescape` reads it back)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def parse_boundary(value: Any, key: str = "thinkbrake_boundary") -> tuple[str, ...]:
    """One boundary text or a list of them, each kept verbatim (leading and trailing whitespace
    included) after reading its escapes; the reasoning text ending with any of them is a boundary."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise bad_value(key, value, "has to be a text or a list of texts (e.g. '.\\n\\n')")
    texts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise bad_value(key, value, "has to contain only texts")
        text = unescape(item, key)
        if not text:
            raise bad_value(key, value, "has to contain no empty text")
        if text not in texts:
            texts.append(text)
    if not texts:
        raise bad_value(key, value, "has to name at least one text")
    return tuple(texts)


def _parse_tau(value: Any, key: str) -> float:
    return parse_number(value, key, minimum=0.0)


def _parse_temperature(value: Any, key: str) -> float:
    return parse_number(value, key, positive=True)


@dataclass(frozen=True)
class ThinkBrakeConfig:
    """ThinkBrake settings.

    Args:
        tau: the margin in log-probability (nats) at or below which thinking stops; >= 0, no
            default (the paper sweeps 0.1 to 2.5; its README uses 1.0). None: not set (off).
        boundary: the text(s) whose end is a sentence boundary (default `".\\n\\n"`).
        temperature: the temperature of the log-softmax the margin is measured on (> 0; the authors
            probed under their sampling temperature, 0.6).

    Example:
        >>> ThinkBrakeConfig(tau=1.0).boundary
        ('.\\n\\n',)
    """

    tau: float | None = None
    boundary: tuple[str, ...] = field(default=PAPER_BOUNDARY)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.tau is not None:
            object.__setattr__(self, "tau", _parse_tau(self.tau, "thinkbrake_tau"))
        object.__setattr__(self, "boundary", parse_boundary(self.boundary))
        object.__setattr__(self, "temperature", _parse_temperature(self.temperature, "thinkbrake_temperature"))

    @property
    def enabled(self) -> bool:
        return self.tau is not None

    def to_mapping(self) -> dict[str, Any]:
        return {
            "thinkbrake_tau": self.tau,
            "thinkbrake_boundary": [escape(b) for b in self.boundary],
            "thinkbrake_temperature": self.temperature,
        }


class ThinkBrakeRule(Rule):
    name = "thinkbrake"
    scope = "think"

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        (boundary,) = structure  # type: ignore[misc]
        # The plan has checked that the markers exist (INTERVENTION.needs_think_markers).
        self.end_id = int(info.markers.end_id)  # type: ignore[arg-type]
        self.boundary: tuple[str, ...] = boundary
        self.automaton = suffix_automaton(info, boundary)
        if not self.automaton.reachable():
            shown = ", ".join(f'"{escape(b)}"' for b in boundary)
            raise ValueError(f"`thinkbrake_boundary`: no sequence of this tokenizer's tokens writes {shown}, so ThinkBrake would never act")
        self.token_ids = (self.end_id,)

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> ThinkBrakeTables:
        return ThinkBrakeTables(self, layout, width, tables)


class ThinkBrakeTables(RuleTables):
    reads_logits = True  # the maximum of the whole row

    def __init__(self, rule: ThinkBrakeRule, layout: Layout, width: int, tables: TableBuilder) -> None:
        if rule.end_id >= width:
            raise ValueError(f"`thinkbrake`: the think end marker {rule.end_id} lies outside the logits width {width}")
        self.rule = rule
        self.layout = layout
        self.width = width
        self.end_id = rule.end_id
        self.token_ids = (rule.end_id,)
        automaton = self.automaton = rule.automaton.for_width(width)
        states = automaton.states
        # Flattened class-major, each token's class premultiplied by the number of states (as the
        # switch automaton's tables, tip.py): a step adds the row's state and reads there.
        self.class_offset = tables.array(automaton.class_of * states)
        self.next_state = tables.array(automaton.next_state.T.reshape(-1))
        self.matched = tables.bools(automaton.matched)
        self.RECOGNIZER = layout.add_int("thinkbrake.recognizer")
        self.TAU = layout.add_float("thinkbrake.tau")
        self.TEMPERATURE = layout.add_float("thinkbrake.temperature", default=1.0)

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        return {}, {self.TAU: float(config.tau), self.TEMPERATURE: float(config.temperature)}

    def advance(self, step: AdvanceStep) -> None:
        ops = step.ops
        flat = ops.table(self.class_offset)[ops.clip(step.tokens, -1, self.width - 1) + 1] + step.ints[:, self.RECOGNIZER]
        step.out_ints[:, self.RECOGNIZER] = ops.table(self.next_state)[flat]

    def contribute(self, step: ApplyStep) -> None:
        ops, ints, floats = step.ops, step.ints, step.floats
        # A row that is not active has the phase ENDED, so `reasoning` also tells that it is active.
        at_boundary = step.reasoning & ops.table(self.matched)[ints[:, self.RECOGNIZER]]
        logits = step.logits()
        # max logp - logp(end) = (max z - z_end) / T: the normaliser cancels, so one maximum per row
        # is the whole cost. A -inf end marker gives +inf (no brake); NaN compares false (no brake).
        margin = (ops.floats(ops.row_max(logits)) - ops.floats(logits[:, self.end_id])) / floats[:, self.TEMPERATURE]
        brake = at_boundary & (margin <= floats[:, self.TAU])
        column = self.plan_columns[0]
        if step.bias is not None:
            brake = brake & (step.bias[:, column] != -math.inf)  # an earlier rule of the plan banned it
        step.force(ops.where(brake, column, -1))

    def replay(self, config: Any, generated: Sequence[int], trace: PhaseTrace, ints: list[int], floats: list[float]) -> None:
        ints[self.RECOGNIZER] = self.automaton.run(generated)


def _structure(config: ThinkBrakeConfig) -> Hashable:
    return (config.boundary,)


def _display(declared: Intervention, config: ThinkBrakeConfig, short: bool) -> list[str]:
    tau = "none" if config.tau is None else f"{config.tau:g}"
    return [f"tau={tau}", f"boundary={'+'.join(escape(b) for b in config.boundary)}", f"temperature={config.temperature:g}"]


INTERVENTION = Intervention(
    name="thinkbrake",
    title="ThinkBrake: end thinking when </think> is within tau of the top token at a sentence end (Oh et al., arXiv 2510.00546)",
    config_type=ThinkBrakeConfig,
    keys={
        "thinkbrake_tau": Key("tau", _parse_tau),
        "thinkbrake_boundary": Key("boundary", parse_boundary),
        "thinkbrake_temperature": Key("temperature", _parse_temperature),
    },
    paper=ThinkBrakeConfig(),
    structure=_structure,
    rule=ThinkBrakeRule,
    order=95,  # forces: after the rules that ban (a banned end marker is never forced) and after deepconf
    needs_think_markers=("thinkbrake_tau",),
    needs="`thinkbrake_tau` (a number >= 0; the paper sweeps 0.1 to 2.5)",
    example="tau=1.0",
    required=("thinkbrake_tau",),
    display=_display,
)
