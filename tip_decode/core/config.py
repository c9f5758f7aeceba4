"""TIP configuration: the one object every backend reads its penalty settings from.

`TIPConfig` is built from keyword arguments (Python users) or from a flat mapping of namespaced
`tip_*` keys (vLLM's `SamplingParams.extra_args` and the OpenAI client's `vllm_xargs`). Validation
lives here so that every backend rejects the same bad values with the same message.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: Trigger presets. "paper" is the TIP paper's example word; "reflection" follows NoWait's idea of
#: suppressing the reflection words reasoning models use to open a new line of thought.
TRIGGER_PRESETS: dict[str, tuple[str, ...]] = {
    "paper": ("alternatively",),
    "reflection": (
        "alternatively",
        "wait",
        "hmm",
        "but wait",
        "another approach",
        "another way",
        "let me reconsider",
        "on second thought",
        "actually",
        "however",
        "instead",
        "hold on",
        "let me check",
        "let me double-check",
        "let me verify",
        "maybe",
        "perhaps",
    ),
}

SCOPES = ("auto", "think", "all")
PAPER_ALPHA = 3.0
PAPER_BETA = 600
DEFAULT_TRIGGERS = TRIGGER_PRESETS["paper"]

#: The keys a flat mapping may carry, with the field each one sets.
MAPPING_KEYS = {"tip_alpha": "alpha", "tip_beta": "beta", "tip_triggers": "triggers", "tip_scope": "scope"}


# ----- bounds: one per quantity, read by every parser of it (API, command line, servers) -----

#: The largest token count kept as given (beta, budget minimum and maximum, cyclic start and end). A
#: larger one (10**30 from an API call) is clamped to it: no sequence is 2**62 tokens long, so the
#: rule it sets behaves the same either way, and the per-row state (int64, psi + beta) cannot overflow.
MAX_TOKENS = 2**62
#: The largest beta accepted, by the API, server requests and the command line alike (one bound):
#: beta is a number of tokens, no sequence is two billion tokens long, so a window this long never
#: closes and anything longer is a mistake. It is refused, never clamped (10**30 from an API call
#: was once clamped silently while the command line refused it).
MAX_BETA = 2**31 - 1
#: The command line's bound on beta: the same one.
MAX_COMMAND_LINE_BETA = MAX_BETA

#: Strings that mean "ban the tokens outright" for alpha (compared lowercased, stripped).
_INFINITY_SPELLINGS = ("inf", "+inf", "infinity", "+infinity")


# ----- one number parser family: every flat key's value goes through these -----


def bad_value(key: str, value: Any, requirement: str) -> ValueError:
    """The one error of a bad setting: it names the key and echoes the value."""
    return ValueError(f"`{key}` {requirement}, but is {value!r}")


def _is_bool(value: Any) -> bool:
    # numpy's bool_ is neither int nor numbers.Integral, but it must not pass as a number either.
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _real(value: Any, key: str, requirement: str) -> int | float:
    """`value` as a Python int or float. Python and numpy numbers (np.int64, np.float32, ...) and
    number strings ("600", "2.5", "1e3") are accepted the same way everywhere; bools (Python's and
    numpy's) never are."""
    if _is_bool(value):
        raise bad_value(key, value, requirement)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise bad_value(key, value, requirement) from None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise bad_value(key, value, requirement)


def parse_alpha(value: Any, key: str = "alpha") -> float:
    """Return `value` as a non-negative float; `inf` (or the string "inf") bans the tokens outright.

    Python and numpy numbers are accepted. A number string that overflows to infinity ("1e400") is
    an error: only an explicit infinity means a ban.
    """
    requirement = "has to be a non-negative number or 'inf'"
    too_large = "has to be a non-negative number below 1.8e308 or 'inf'"
    number = _real(value, key, requirement)
    try:
        number = float(number)
    except OverflowError:  # an int beyond float's range
        raise bad_value(key, value, too_large) from None
    if math.isinf(number) and isinstance(value, str) and value.strip().lower() not in _INFINITY_SPELLINGS:
        raise bad_value(key, value, too_large)
    if math.isnan(number) or number < 0:
        raise bad_value(key, value, requirement)
    return number


def parse_count(value: Any, key: str) -> int:
    """A non-negative number of tokens. Integral floats (600.0, as JSON may send), numpy integers and
    number strings are accepted; values above `MAX_TOKENS` are clamped to it."""
    requirement = "has to be a non-negative integer"
    number = _real(value, key, requirement)
    if isinstance(number, float):
        if not number.is_integer():  # also NaN and inf
            raise bad_value(key, value, requirement)
        number = int(number)
    if number < 0:
        raise bad_value(key, value, requirement)
    return min(number, MAX_TOKENS)


def parse_beta(value: Any, key: str = "beta") -> int:
    """TIP's beta: a number of tokens (`parse_count`) up to `MAX_BETA`; a larger one is an error (the
    API, server requests and the command line share this one bound), never clamped."""
    number = parse_count(value, key)
    if number > MAX_BETA:
        raise bad_value(key, value, f"has to be at most {MAX_BETA} (a number of tokens; a window that long never closes)")
    return number


def parse_optional_count(value: Any, key: str) -> int | None:
    """`parse_count`, or None for "no limit" (None, the strings "none" / "" or the number -1)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if not _is_bool(value) and isinstance(value, numbers.Real) and value == -1:
        return None
    return parse_count(value, key)


def parse_number(value: Any, key: str, *, minimum: float | None = None, positive: bool = False) -> float:
    """A finite float (Python and numpy numbers, number strings); `minimum` / `positive` bound it."""
    requirement = "has to be a positive number" if positive else (f"has to be a number >= {minimum:g}" if minimum is not None else "has to be a finite number")
    try:
        number = float(_real(value, key, requirement))
    except OverflowError:  # an int beyond float's range
        raise bad_value(key, value, requirement) from None
    if not math.isfinite(number) or (positive and number <= 0) or (minimum is not None and number < minimum):
        raise bad_value(key, value, requirement)
    return number


def parse_switch(value: Any, key: str) -> bool:
    """An on/off value as JSON clients send it: true/false, 1/0 (JSON true arrives as 1 in vllm_xargs)."""
    if _is_bool(value):
        return bool(value)
    if isinstance(value, numbers.Real) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "on", "off"):
        return value.strip().lower() in ("true", "1", "on")
    raise bad_value(key, value, "has to be true or false (1 or 0)")


def parse_words(value: Any, key: str, presets: Mapping[str, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    """A tuple of words from a list or a comma-separated string; an item naming a preset expands to it.

    Whitespace inside a word is collapsed, duplicates are dropped (keeping the first).
    """
    presets = presets or {}
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = value
    else:
        raise bad_value(key, value, "has to be a list of words or a comma-separated string")
    words: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise bad_value(key, value, "has to contain only strings")
        word = " ".join(item.split())
        if not word:
            raise bad_value(key, value, "has to contain no empty word")
        for expanded in presets.get(word, (word,)):
            if expanded not in words:
                words.append(expanded)
    if not words:
        raise bad_value(key, value, "has to name at least one word")
    return tuple(words)


def parse_triggers(value: Any, key: str = "triggers") -> tuple[str, ...]:
    """Return a tuple of trigger words from a preset name, a comma-separated string or a list.

    Triggers are case-insensitive: each is lowercased before anything else (so "HMM", "Hmm" and
    "hmm" are one trigger). A string is split on commas; an item that names a preset ("paper",
    "reflection") expands to it. Duplicates are dropped, keeping the first.
    """
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = value
    else:
        raise bad_value(key, value, "has to be a preset name or a list of trigger words")
    triggers: list[str] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise bad_value(key, value, "has to contain only strings")
        word = " ".join(item.split()).lower()
        if not word:
            raise bad_value(key, value, "has to contain no empty trigger")
        for expanded in TRIGGER_PRESETS.get(word, (word,)):
            if expanded not in seen:
                seen.add(expanded)
                triggers.append(expanded)
    if not triggers:
        raise bad_value(key, value, "has to name at least one trigger word")
    return tuple(triggers)


def parse_scope(value: Any, key: str = "scope") -> str:
    if value not in SCOPES:
        raise bad_value(key, value, f"has to be one of {', '.join(repr(s) for s in SCOPES)}")
    return value


@dataclass(frozen=True)
class TIPConfig:
    """Settings of the thought-switching penalty, shared by every backend.

    Args:
        alpha: penalty subtracted from the logits of switch tokens (`inf` bans them). 0 turns TIP off.
        beta: penalty duration in tokens, counted from the start of the current thought. 0 turns TIP off.
        triggers: trigger words or phrases, matched case-insensitively; a preset name is expanded.
        scope: "think" (inside the think block only), "all" (the whole response) or "auto"
            ("think" when the tokenizer has single-token think markers, else "all").

    Example:
        >>> TIPConfig(alpha=3, beta=600).triggers
        ('alternatively',)
        >>> TIPConfig.from_mapping({"tip_alpha": "inf", "tip_scope": "all"}).alpha
        inf
    """

    alpha: float = PAPER_ALPHA
    beta: int = PAPER_BETA
    triggers: tuple[str, ...] = field(default=DEFAULT_TRIGGERS)
    scope: str = "auto"

    def __post_init__(self) -> None:
        # Normalise through the same parsers as mapping input so that both paths agree exactly.
        object.__setattr__(self, "alpha", parse_alpha(self.alpha))
        object.__setattr__(self, "beta", parse_beta(self.beta))
        object.__setattr__(self, "triggers", parse_triggers(self.triggers))
        object.__setattr__(self, "scope", parse_scope(self.scope))

    @property
    def enabled(self) -> bool:
        """False when the configuration is exactly standard decoding (alpha == 0 or beta == 0)."""
        return self.alpha > 0 and self.beta > 0

    @classmethod
    def off(cls) -> TIPConfig:
        return cls(alpha=0.0)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], default: TIPConfig | None = None) -> TIPConfig:
        """Build a configuration from namespaced `tip_*` keys, falling back to `default`'s values.

        Keys that do not start with `tip_` are ignored (the same dict carries other features' keys);
        an unknown `tip_*` key is an error. With no `tip_alpha` and no `default`, TIP is off.
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(f"expected a mapping of tip_* keys, got {type(mapping).__name__}")
        base = default if default is not None else cls.off()
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            if not isinstance(key, str) or not key.startswith("tip_"):
                continue
            if key not in MAPPING_KEYS:
                known = ", ".join(sorted(MAPPING_KEYS))
                raise ValueError(f"unknown TIP argument `{key}` (given {value!r}; known: {known})")
            field_name = MAPPING_KEYS[key]
            parser = {"alpha": parse_alpha, "beta": parse_beta, "triggers": parse_triggers, "scope": parse_scope}
            values[field_name] = parser[field_name](value, key)
        return replace(base, **values)

    def to_mapping(self) -> dict[str, Any]:
        """The flat `tip_*` form (JSON-safe: `inf` becomes the string "inf")."""
        alpha: float | str = "inf" if math.isinf(self.alpha) else self.alpha
        return {"tip_alpha": alpha, "tip_beta": self.beta, "tip_triggers": list(self.triggers), "tip_scope": self.scope}
