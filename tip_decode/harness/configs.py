"""Decoding configurations of a comparison: `baseline`, and any interventions, alone or combined.

A configuration is a name and an `InterventionSet` (tip_decode.core.interventions): the same
per-request settings every engine adapter reads, so that what a run records is exactly what the
engines were asked to do. The command line writes configurations as specs,

    [NAME=]INTERVENTION[+INTERVENTION...][:KEY=VALUE,...]

read by the core's one settings language (`tip_decode.core.interventions.spec`, whose docstring
has the grammar): `baseline`, `nowait`, `cyclic:period=600`, `tip+budget:alpha=3,max=4000`,
`long=budget:min=2000`, flat keys `tip_alpha=3,budget_max=4000`, or the TIP-only form
`NAME:alpha=3,beta=600`. Every mistake is a `ValueError` naming the spec and the key (before
anything loads). This module adds the named `RunConfig` (what run.json records) and the grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tip_decode.core.config import MAX_COMMAND_LINE_BETA, TIPConfig
from tip_decode.core.interventions import InterventionSet
from tip_decode.core.interventions.settings import request_mapping
from tip_decode.core.interventions.spec import (
    LEGACY_INTERVENTION,
    NAME,
    SPEC_SYNTAX,
    parse_interventions,
    parse_spec,
    settings_parts,
    settings_text,
    spec_terms,
    split_spec,
)
from tip_decode.core.interventions.spec import parse_fixed as _parse_fixed

__all__ = [
    "MAX_SPEC_BETA",
    "SPEC_SYNTAX",
    "RunConfig",
    "grid_configs",
    "normalized",
    "parse_config_spec",
    "parse_fixed",
    "parse_interventions",
    "request_mapping",
    "settings_parts",
    "settings_text",
    "spec_terms",
    "split_spec",
]

_NAME = NAME
#: Largest beta the command line accepts (`tip_decode.core.config.MAX_COMMAND_LINE_BETA`).
MAX_SPEC_BETA = MAX_COMMAND_LINE_BETA


def normalized(settings: InterventionSet) -> InterventionSet:
    """`settings` without the interventions its own values turn off (alpha 0, amplitude 0, ...)."""
    return InterventionSet(**{declared.name: config for declared, config in settings.enabled})


@dataclass(frozen=True)
class RunConfig:
    """A named decoding configuration; no enabled intervention is standard decoding.

    `interventions` takes an `InterventionSet`, a `TIPConfig` (TIP alone, as before interventions)
    or None; interventions that their own values turn off are dropped.
    """

    name: str
    interventions: InterventionSet = None  # type: ignore[assignment]  # None: no intervention

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"`name` has to be letters, digits and _ . + - (it names a file), but is {self.name!r}")
        value: Any = self.interventions
        if value is None:
            value = InterventionSet()
        elif isinstance(value, TIPConfig):
            value = InterventionSet(tip=value)
        elif not isinstance(value, InterventionSet):
            raise TypeError(f"`interventions` has to be an InterventionSet, a TIPConfig or None, but is {type(value).__name__}")
        object.__setattr__(self, "interventions", normalized(value))

    @property
    def tip(self) -> TIPConfig | None:
        """The configuration's TIP setting (None: TIP off)."""
        return self.interventions.tip

    @property
    def is_baseline(self) -> bool:
        return not self.interventions

    def to_dict(self) -> dict[str, Any]:
        """run.json's form: every intervention's flat keys (`interventions`), and `tip` as before."""
        return {"name": self.name, "interventions": self.interventions.to_mapping(), "tip": self.tip.to_mapping() if self.tip is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Read `to_dict`'s form, and run.json files written before interventions (`tip` only)."""
        mapping = data.get("interventions")
        if isinstance(mapping, Mapping):
            return cls(data["name"], InterventionSet.from_mapping(mapping))
        tip = data.get("tip")
        return cls(data["name"], TIPConfig.from_mapping(tip, default=TIPConfig()) if tip else None)


def parse_config_spec(spec: str, defaults: InterventionSet | None = None) -> RunConfig:
    """Parse a configuration spec (`tip_decode.core.interventions.spec.parse_spec`) into a `RunConfig`.

    `defaults`: where a bare intervention name starts from (None: every paper's defaults).

    Example:
        >>> parse_config_spec("tip+budget:alpha=5,max=4000").interventions.names
        ('tip', 'budget')
        >>> parse_config_spec("short=cyclic:period=300").name
        'short'
    """
    name, interventions = parse_spec(spec, defaults)
    try:
        return RunConfig(name, interventions)
    except ValueError as err:
        raise ValueError(f"configuration {spec!r}: {err}") from None


def parse_fixed(
    spec: str,
    option: str = "--fixed",
    why: str = "the grid sweeps TIP itself (--alphas, --betas, --triggers, --scope)",
    without: str = LEGACY_INTERVENTION,
) -> InterventionSet:
    """Interventions other than TIP (which the grid sweeps, and `serve` sets with --alpha/...),
    written as a configuration spec without a name (`tip_decode.core.interventions.spec.parse_fixed`)."""
    return _parse_fixed(spec, option, why, without)


def grid_configs(alphas: list[float], betas: list[int], base: TIPConfig | None = None, fixed: InterventionSet | None = None) -> list[RunConfig]:
    """`baseline` plus one TIP configuration per (alpha, beta) cell, named `a{alpha}_b{beta}`.

    `fixed`: other interventions every configuration carries, the baseline included (the grid then
    measures TIP on top of them); it may not hold TIP, which the grid sweeps. A cell with alpha 0 or
    beta 0 is TIP off, which is the baseline itself: it gets no configuration of its own (the grid
    reads it from the baseline, `tip_decode.harness.grid.cell_config`).
    """
    fixed = fixed if fixed is not None else InterventionSet()
    if fixed.tip is not None:
        raise ValueError("`fixed` may not hold TIP: the grid sweeps TIP's alpha and beta itself")
    base = base or TIPConfig()
    configs = [RunConfig("baseline", fixed)]
    for alpha in alphas:
        for beta in betas:
            tip = replace(base, alpha=alpha, beta=beta)
            if tip.enabled:
                configs.append(RunConfig(f"a{_short(tip.alpha)}_b{tip.beta}", fixed.replace(tip=tip)))
    return configs


def _short(value: float) -> str:
    return "inf" if value == float("inf") else (str(int(value)) if float(value).is_integer() else str(value))
