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


#: The largest beta accepted, by the API, the command line and server requests alike: beta is a
#: number of tokens, and no sequence is two billion tokens long, so a window this long never closes
#: and anything longer is a mistake (10**30 once was clamped here silently). The per-row state
#: (int64, psi + beta) cannot overflow with it.
MAX_BETA = 2**31 - 1

#: Strings that mean "ban the tokens outright" for alpha (compared lowercased, stripped).
_INFINITY_SPELLINGS = ("inf", "+inf", "infinity", "+infinity")


def _bad(key: str, value: Any, requirement: str) -> ValueError:
    return ValueError(f"`{key}` {requirement}, but is {value!r}")


def _is_bool(value: Any) -> bool:
    # numpy's bool_ is neither int nor numbers.Integral, but it must not pass as a number either.
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def parse_alpha(value: Any, key: str = "alpha") -> float:
    """Return `value` as a non-negative float; `inf` (or the string "inf") bans the tokens outright.

    Python and numpy numbers are accepted. A number string that overflows to infinity ("1e400") is
    an error: only an explicit infinity means a ban.
    """
    requirement = "has to be a non-negative number or 'inf'"
    if _is_bool(value):
        raise _bad(key, value, requirement)
    if isinstance(value, str):
        spelled = value.strip().lower()
        try:
            number = float(spelled)
        except ValueError:
            raise _bad(key, value, requirement) from None
        if math.isinf(number) and spelled not in _INFINITY_SPELLINGS:
            raise _bad(key, value, "has to be a non-negative number below 1.8e308 or 'inf'")
    elif isinstance(value, numbers.Real):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            raise _bad(key, value, "has to be a non-negative number below 1.8e308 or 'inf'") from None
    else:
        raise _bad(key, value, requirement)
    if math.isnan(number) or number < 0:
        raise _bad(key, value, requirement)
    return number


def parse_beta(value: Any, key: str = "beta") -> int:
    """Return `value` as a non-negative int up to `MAX_BETA`; integral floats (600.0, as JSON may
    send) and numpy integers are accepted. A larger value is an error, never clamped."""
    requirement = "has to be a non-negative integer"
    if _is_bool(value):
        raise _bad(key, value, requirement)
    number: Any = value
    if isinstance(number, str):
        try:
            number = int(number.strip())
        except ValueError:
            try:
                number = float(number.strip())
            except ValueError:
                raise _bad(key, value, requirement) from None
    if isinstance(number, numbers.Integral):
        number = int(number)
    elif isinstance(number, numbers.Real):
        number = float(number)
        if not number.is_integer():  # also NaN and inf
            raise _bad(key, value, requirement)
        number = int(number)
    else:
        raise _bad(key, value, requirement)
    if number < 0:
        raise _bad(key, value, requirement)
    if number > MAX_BETA:
        raise _bad(key, value, f"has to be at most {MAX_BETA} (a number of tokens; a window that long never closes)")
    return number


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
        raise _bad(key, value, "has to be a preset name or a list of trigger words")
    triggers: list[str] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise _bad(key, value, "has to contain only strings")
        word = " ".join(item.split()).lower()
        if not word:
            raise _bad(key, value, "has to contain no empty trigger")
        for expanded in TRIGGER_PRESETS.get(word, (word,)):
            if expanded not in seen:
                seen.add(expanded)
                triggers.append(expanded)
    if not triggers:
        raise _bad(key, value, "has to name at least one trigger word")
    return tuple(triggers)


def parse_scope(value: Any, key: str = "scope") -> str:
    if value not in SCOPES:
        raise _bad(key, value, f"has to be one of {', '.join(repr(s) for s in SCOPES)}")
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

    @staticmethod
    def has_tip_keys(mapping: Mapping[str, Any] | None) -> bool:
        return bool(mapping) and any(isinstance(k, str) and k.startswith("tip_") for k in mapping)
