"""`alphaone`: AlphaOne (alpha1, arXiv 2505.24863), slow thinking scheduled up to the alpha moment, then fast.

Follows ASTRAL-Group/AlphaOne@98f8ef8 `eval/math_eval_efficient.py` (`main_wait_latest`), with t the
number of tokens generated so far (the code's `len(token_ids)`) and T_m the alpha moment:

- T_m = `alphaone_moment`, or from alpha and the model's average thinking length N as the code
  computes it: `threshold = int(max_tokens - alpha * N)` (l.157-190) and phase 1 runs for
  `max_tokens - threshold` tokens (l.584), so T_m = 8192 - int(8192 - alpha * N) with the code's
  `max_tokens_per_call` 8192 (every script): ceil(alpha * N) up to the float rounding of alpha * N.
- Before T_m (`NewlineWait`, l.556-579): at a step with t >= 2 whose last generated token is a
  delimiter (a token whose text is exactly one of `DELIMITERS`), draw u ~ U[0, 1); if
  u < (T_m - t) / T_m, force the word ("Wait", the code's `encode("Wait")[0]`; a word of several
  tokens is forced whole, one token per step).
- From T_m on (l.601-627): the code stops at "Wait" (stop strings "Wait", ".Wait", "Wait, ",
  "Wait,") and writes `</think>` in its place. As a logits rule this is a transfer of probability
  mass: every token whose text contains the word (case-sensitive) is banned and the end marker's
  logit becomes T * logsumexp({z_v / T : v banned or the end marker}), so that at sampling temperature
  T (`alphaone_temperature`; 0: greedy, the largest of them) the end marker is drawn with the
  probability the model gave to "Wait" or the end.
- Both phases act only while reasoning is open (the code's processor does not look for `</think>`
  and its phase 2 edits the answer too; here the answer is never touched).

u comes from a per-row hash of the seed and the generated tokens (draws.py): sync-free, the same on
every engine and batch, and replayed exactly after preemption. The comparison u < (T_m - t) / T_m
is done in integers: r * T_m < (T_m - t) * 2**24 with u = r / 2**24, T_m at most `MAX_MOMENT`.

Columns: MOMENT, HASH, LAST_DELIMITER, the word's NEXT (forcing.py) (ints); TEMPERATURE (float).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tip_decode.core.config import MAX_TOKENS
from tip_decode.core.interventions import draws
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
    parse_count,
    parse_number,
    parse_optional_count,
)
from tip_decode.core.interventions.forcing import ForcedText, force_positions, host_next
from tip_decode.core.interventions.nowait import keyword_hit
from tip_decode.core.interventions.registry import Intervention, Key, value_text

if TYPE_CHECKING:
    from tip_decode.core.interventions.arrays import TableBuilder

#: `NewlineWait.newline_ids`: the texts after which "Wait" may be forced (one token each in Qwen
#: vocabularies; the code lists "].\n\n" twice).
DELIMITERS: tuple[str, ...] = ("\n\n", ",\n\n", ".\n\n", "]\n\n", ")\n\n", "],\n\n", "].\n\n", ").\n\n", ".)\n\n")
#: `--alpha`'s default in the code and every script.
PAPER_ALPHA = 1.4
#: N of the code's table for DeepSeek-R1-Distill-Qwen-7B on MATH500 (l.177), the paper's main model:
#: the default when neither `alphaone_moment` nor `alphaone_think_tokens` is given. Set it to your
#: model's average thinking length (the paper measures it per model and data set).
PAPER_THINK_TOKENS = 3100
#: The code's `max_tokens_per_call` (8192 in every script), which T_m's formula goes through.
CODE_MAX_TOKENS = 8192
#: The largest alpha moment kept as given: no sequence is that long, and r * T_m stays in int64.
MAX_MOMENT = 2**38
#: The largest seed (token counts are clamped at 2**62; a seed is refused beyond it instead).
MAX_SEED = MAX_TOKENS - 1


def parse_word(value: Any, key: str = "alphaone_word") -> str:
    """The forced word verbatim (a leading space is part of it); it needs a visible character."""
    if not isinstance(value, str) or not value.strip():
        raise bad_value(key, value, "has to be a non-empty string")
    return value


def parse_seed(value: Any, key: str = "alphaone_seed") -> int:
    """An integer in 0..2**62 - 1 (parse_count clamps larger ones to 2**62, which is refused here)."""
    number = parse_count(value, key)
    if number > MAX_SEED:
        raise bad_value(key, value, f"has to be an integer in 0..{MAX_SEED}")
    return number


def parse_think_tokens(value: Any, key: str = "alphaone_think_tokens") -> int:
    number = parse_count(value, key)
    if number < 1:
        raise bad_value(key, value, "has to be a positive integer (the model's average thinking length in tokens)")
    return number


def parse_moment(value: Any, key: str = "alphaone_moment") -> int | None:
    number = parse_optional_count(value, key)
    return None if number is None else min(number, MAX_MOMENT)


def alpha_moment(alpha: float, think_tokens: int) -> int:
    """T_m from alpha and N, as the code computes it (`max - int(max - alpha * N)`), at most MAX_MOMENT."""
    scaled = alpha * think_tokens
    if not scaled < MAX_MOMENT:
        return MAX_MOMENT
    return max(0, min(CODE_MAX_TOKENS - int(CODE_MAX_TOKENS - scaled), MAX_MOMENT))


@dataclass(frozen=True)
class AlphaOneConfig:
    """AlphaOne settings.

    Args:
        moment: the alpha moment T_m in generated tokens (None: alpha * think_tokens).
        alpha: the scale of the thinking phase (the paper's alpha; >= 0).
        think_tokens: N, the model's average thinking length in tokens (the paper's per-data-set
            numbers; the default is its R1-Distill-Qwen-7B MATH500 value).
        word: forced at delimiters before T_m, and banned (in favour of the end marker) after it.
        seed: the per-row draws' seed (draws.py).
        temperature: the sampling temperature the end marker's transfer is exact for (0: greedy).

    Example:
        >>> AlphaOneConfig().alpha_moment, AlphaOneConfig(alpha=1.4, think_tokens=2650).alpha_moment
        (4340, 3710)
    """

    moment: int | None = None
    alpha: float = PAPER_ALPHA
    think_tokens: int = PAPER_THINK_TOKENS
    word: str = "Wait"
    seed: int = 0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "moment", parse_moment(self.moment))
        object.__setattr__(self, "alpha", parse_number(self.alpha, "alphaone_alpha", minimum=0.0))
        object.__setattr__(self, "think_tokens", parse_think_tokens(self.think_tokens))
        object.__setattr__(self, "word", parse_word(self.word))
        object.__setattr__(self, "seed", parse_seed(self.seed))
        object.__setattr__(self, "temperature", parse_number(self.temperature, "alphaone_temperature", minimum=0.0))

    @property
    def alpha_moment(self) -> int:
        """T_m in generated tokens."""
        return self.moment if self.moment is not None else alpha_moment(self.alpha, self.think_tokens)

    def to_mapping(self) -> dict[str, Any]:
        return {
            "alphaone": 1,
            "alphaone_moment": -1 if self.moment is None else self.moment,
            "alphaone_alpha": self.alpha,
            "alphaone_think_tokens": self.think_tokens,
            "alphaone_word": self.word,
            "alphaone_seed": self.seed,
            "alphaone_temperature": self.temperature,
        }


class AlphaOneRule(Rule):
    name = "alphaone"
    scope = "think"

    def __init__(self, structure: Hashable, info: TokenizerInfo) -> None:
        (word,) = structure  # type: ignore[misc]
        # The plan has checked that the markers exist (INTERVENTION.needs_think_markers).
        self.end_id = int(info.markers.end_id)  # type: ignore[arg-type]
        self.word = word
        self.word_ids = info.ordinary_ids(word, "alphaone_word")
        stem = word.strip()
        excluded = info.excluded_ids()
        texts = info.token_texts()
        # After T_m: every token whose text holds the word (the code's stop strings all do).
        self.banned_ids = tuple(i for i, text in enumerate(texts) if stem in text and i not in excluded)
        # Before T_m: delimiters by exact token text (a tokenizer may have none: phase 1 never forces).
        self.delimiter_ids = frozenset(i for i, text in enumerate(texts) if text in DELIMITERS and i not in excluded)
        self.token_ids = tuple(dict.fromkeys((*self.banned_ids, *self.word_ids, self.end_id)))

    def compile(self, layout: Layout, width: int, tables: TableBuilder) -> AlphaOneTables:
        return AlphaOneTables(self, layout, width, tables)


class AlphaOneTables(RuleTables):
    reads_logits = True  # the transfer reads the banned tokens' and the end marker's logits

    def __init__(self, rule: AlphaOneRule, layout: Layout, width: int, tables: TableBuilder) -> None:
        self.rule = rule
        self.layout = layout
        if any(i >= width for i in rule.token_ids):
            raise ValueError(f"`alphaone`: the think end marker or the word lies outside the logits width {width}")
        self.token_ids = rule.token_ids
        position = {token: k for k, token in enumerate(self.token_ids)}
        self.width = width
        # Index token + 1 (negative placeholders read False).
        self.is_delimiter = tables.bools([False] + [i in rule.delimiter_ids for i in range(width)])
        banned = set(rule.banned_ids)
        self.is_banned = tables.bools([token in banned for token in self.token_ids])
        self.is_end = tables.bools([token == rule.end_id for token in self.token_ids])
        # The end marker last: the transfer reads it as the last column of the gathered logits.
        self.transfer_ids = tables.ints([*rule.banned_ids, rule.end_id])
        self.word = ForcedText(layout, tables, "alphaone.word", rule.word_ids, [position[i] for i in rule.word_ids])
        self.MOMENT = layout.add_int("alphaone.moment")
        self.HASH = layout.add_int("alphaone.hash")
        self.LAST_DELIMITER = layout.add_int("alphaone.last_delimiter")
        self.TEMPERATURE = layout.add_float("alphaone.temperature", default=1.0)

    def settings(self, config: Any) -> tuple[dict[int, int], dict[int, float]]:
        ints = {self.MOMENT: config.alpha_moment, self.HASH: draws.host_start(config.seed)}
        return ints, {self.TEMPERATURE: config.temperature}

    def forced_index(self, ops: Any, ints: Any, thinking: Any, position: Any) -> tuple[Any, Any]:
        """(index of the word token forced at this step or -1, rows in the fast phase): a pure
        function of the state, so `advance` reads back what `contribute` decided."""
        under_way = thinking & self.word.under_way(ints)
        moment = ints[:, self.MOMENT]
        r = draws.draw(ints[:, self.HASH])
        # u < (T_m - t) / T_m with u = r / 2**DRAW_BITS, in integers (T_m <= 2**38: no overflow).
        drawn = r * moment < (moment - position) * (1 << draws.DRAW_BITS)
        slow = thinking & (position < moment) & ~under_way
        decide = slow & (position >= 2) & (ints[:, self.LAST_DELIMITER] == 1) & drawn
        index = ops.where(under_way, ints[:, self.word.NEXT], ops.where(decide, 0, -1))
        fast = thinking & (position >= moment) & ~under_way
        return index, fast

    def advance(self, step: AdvanceStep) -> None:
        ops, ints, tokens = step.ops, step.ints, step.tokens
        active = ints[:, self.layout.ACTIVE] == 1
        thinking = active if step.reasoning is None else active & step.reasoning
        index, _ = self.forced_index(ops, ints, thinking, step.position)
        out = step.out_ints
        out[:, self.word.NEXT] = self.word.following(ops, index, tokens)
        out[:, self.LAST_DELIMITER] = ops.table(self.is_delimiter)[ops.clip(tokens, -1, self.width - 1) + 1]
        out[:, self.HASH] = draws.follow(ints[:, self.HASH], tokens)

    def contribute(self, step: ApplyStep) -> None:
        ops, ints, floats = step.ops, step.ints, step.floats
        thinking = step.active & step.reasoning
        index, fast = self.forced_index(ops, ints, thinking, step.position)
        force_positions(step, self.index, self.word.position(ops, index), len(self.token_ids))
        # After T_m: the banned tokens' probability goes to the end marker (at temperature T).
        sub = ops.floats(step.logits())[:, ops.table(self.transfer_ids)]
        temperature = floats[:, self.TEMPERATURE]
        hot = temperature > 0
        top = ops.row_max(sub)
        spread = ops.logsumexp((sub - top[:, None]) / ops.where(hot, temperature, 1.0)[:, None])
        target = ops.where(hot, top + temperature * spread, top)
        end = sub[:, -1]
        moved = fast & ops.isfinite(target) & ops.isfinite(end) & (target != end)
        gain = ops.floats(ops.where(moved, target - end, -0.0))
        values = ops.where(fast[:, None] & ops.table(self.is_banned)[None, :], -math.inf, ops.where(ops.table(self.is_end)[None, :], gain[:, None], -0.0))
        self.bias_into(step, ops.floats(values))

    def replay(self, config: Any, generated: Sequence[int], trace: PhaseTrace, ints: list[int], floats: list[float]) -> None:
        # Every decision is a function of the token history and the seed: run them again.
        moment, h, last, next_index = config.alpha_moment, draws.host_start(config.seed), 0, -1
        ids = self.rule.word_ids
        phase = PhaseTrace(trace.markers, trace.prompt_open)
        if trace.prompt_open or not trace.markers.available:
            phase.phase, phase.reasoning_start = REASONING, 0
        for t, token in enumerate(generated):
            thinking = phase.phase == REASONING
            under_way = thinking and next_index >= 0
            drawn = draws.host_draw(h) * moment < (moment - t) * (1 << draws.DRAW_BITS)
            decide = thinking and not under_way and t < moment and t >= 2 and last == 1 and drawn
            forced = next_index if under_way else (0 if decide else -1)
            next_index = host_next(ids, forced, int(token))
            last = int(int(token) in self.rule.delimiter_ids and 0 <= int(token) < self.width)
            h = draws.host_follow(h, int(token))
            _advance_phase(phase, int(token))
        ints[self.word.NEXT], ints[self.HASH], ints[self.LAST_DELIMITER] = next_index, h, last


def _advance_phase(trace: PhaseTrace, token: int) -> None:
    """One token of `PhaseTrace.run` (the shared phase, step by step)."""
    markers = trace.markers
    if trace.phase == WAITING and token == markers.start_id:
        trace.phase, trace.reasoning_start = REASONING, trace.position + 1
    elif trace.phase == REASONING and markers.available and token == markers.end_id:
        trace.phase = ENDED
    trace.position += 1


def _structure(config: AlphaOneConfig) -> Hashable:
    return (config.word,)


def _display(declared: Intervention, config: AlphaOneConfig, short: bool) -> list[str]:
    moment = (
        f"moment={config.moment}"
        if config.moment is not None
        else f"moment={config.alpha_moment} (alpha={value_text(config.alpha)} x think_tokens={config.think_tokens})"
    )
    return [moment, f"word={config.word}", f"seed={config.seed}", f"temperature={value_text(config.temperature)}"]


def _conflict(config: AlphaOneConfig, others: Mapping[str, Any]) -> str | None:
    stem = config.word.strip()
    nowait = others.get("nowait")
    if nowait is not None and any(keyword_hit(stem.lower(), keyword) for keyword in nowait.keywords):
        return f"NoWait bans {stem!r}, the word AlphaOne inserts (leave {stem!r} out of `nowait_keywords`, or drop one of them)"
    affirm = others.get("affirm")
    if affirm is not None and stem in affirm.words:
        return f"self-affirmation suppression bans a low-probability {stem!r}, the word AlphaOne inserts (it is unlikely where AlphaOne forces it)"
    return None


INTERVENTION = Intervention(
    name="alphaone",
    title="AlphaOne: slow thinking scheduled up to the alpha moment, then fast (arXiv 2505.24863)",
    config_type=AlphaOneConfig,
    keys={
        "alphaone_moment": Key("moment", parse_moment),
        "alphaone_alpha": Key("alpha", lambda v, k: parse_number(v, k, minimum=0.0)),
        "alphaone_think_tokens": Key("think_tokens", parse_think_tokens),
        "alphaone_word": Key("word", parse_word),
        "alphaone_seed": Key("seed", parse_seed),
        "alphaone_temperature": Key("temperature", lambda v, k: parse_number(v, k, minimum=0.0)),
    },
    paper=AlphaOneConfig(),
    structure=_structure,
    rule=AlphaOneRule,
    order=92,  # forces: after budget, whose maximum wins (an earlier force is kept)
    needs_think_markers=("alphaone",),
    display=_display,
    conflict=_conflict,
)
