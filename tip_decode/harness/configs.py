"""Decoding configurations of a comparison: `baseline` and named TIP variants."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tip_decode.core.config import TIPConfig

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
#: Keys accepted after "NAME:" in a configuration spec.
SPEC_KEYS = ("alpha", "beta", "triggers", "scope")


@dataclass(frozen=True)
class RunConfig:
    """A named decoding configuration; `tip` None (or disabled) is standard decoding."""

    name: str
    tip: TIPConfig | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"`name` has to be letters, digits and _ . + - (it names a file), but is {self.name!r}"
            )
        if self.tip is not None and not isinstance(self.tip, TIPConfig):
            raise TypeError(f"`tip` has to be a TIPConfig or None, but is {type(self.tip).__name__}")

    @property
    def is_baseline(self) -> bool:
        return self.tip is None or not self.tip.enabled

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tip": self.tip.to_mapping() if self.tip is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        tip = data.get("tip")
        return cls(data["name"], TIPConfig.from_mapping(tip, default=TIPConfig()) if tip else None)


def parse_config_spec(spec: str) -> RunConfig:
    """Parse `baseline`, `tip` (paper defaults) or `NAME:key=value,...`.

    Keys: alpha, beta, triggers (words joined with `+`, or a preset name), scope. Example:
    `tip:alpha=3,beta=600`, `wait:alpha=inf,beta=300,triggers=wait+hmm,scope=all`.
    """
    if not isinstance(spec, str):
        raise TypeError(f"`spec` has to be a string, but is {type(spec).__name__}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not rest.strip():
        if name == "baseline":
            return RunConfig("baseline", None)
        if name == "tip":
            return RunConfig("tip", TIPConfig())
        raise ValueError(f"configuration {spec!r} needs settings (e.g. {name}:alpha=3,beta=600), or use 'baseline' / 'tip'")
    values: dict[str, Any] = {}
    for item in rest.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in SPEC_KEYS:
            raise ValueError(f"configuration {spec!r}: {item.strip()!r} is not one of {', '.join(k + '=...' for k in SPEC_KEYS)}")
        values[key] = value.strip().split("+") if key == "triggers" and "+" in value else value.strip()
    try:
        tip = TIPConfig(**values)
    except ValueError as err:
        raise ValueError(f"configuration {spec!r}: {err}") from None
    return RunConfig(name, tip)


def grid_configs(alphas: list[float], betas: list[int], base: TIPConfig | None = None) -> list[RunConfig]:
    """`baseline` plus one TIP configuration per (alpha, beta) cell, named `a{alpha}_b{beta}`."""
    from dataclasses import replace

    base = base or TIPConfig()
    configs = [RunConfig("baseline", None)]
    for alpha in alphas:
        for beta in betas:
            tip = replace(base, alpha=alpha, beta=beta)
            configs.append(RunConfig(f"a{_short(tip.alpha)}_b{tip.beta}", tip))
    return configs


def _short(value: float) -> str:
    return "inf" if value == float("inf") else (str(int(value)) if float(value).is_integer() else str(value))
