"""Decoding configurations of a comparison: `baseline`, and any interventions, alone or combined.

A configuration is a name and an `InterventionSet` (tip_decode.core.interventions): the same
per-request settings every engine adapter reads, so that what a run records is exactly what the
engines were asked to do. The command line writes configurations as specs:

    [NAME=]INTERVENTION[+INTERVENTION...][:KEY=VALUE,...]

- `baseline`: standard decoding (no intervention).
- `tip`, `nowait`, `cyclic`, `gated`: the intervention with its paper's defaults
  (docs/interventions.md); `budget` needs `min` or `max`.
- `KEY=VALUE` sets a parameter: `cyclic:amplitude=5,period=1200`, `budget:min=200,max=4000,word=Wait`.
  A key may name its intervention, as `budget.max=4000` or as the flat key of
  tip_decode.core.interventions and of server requests, `budget_max=4000`; it must where two
  interventions of the configuration share the parameter (`tip+gated:tip_alpha=3,gated.alpha=5`). Lists (`triggers`,
  `keywords`, `words`) join their items with `+`: `tip:triggers=alternatively+wait`.
- `tip+budget:alpha=3,max=4000` combines interventions in one configuration.
- Flat keys alone, as a server request carries them, name their interventions themselves:
  `tip_alpha=3,budget_max=4000` is `tip+budget:alpha=3,max=4000`; `nowait=1,budget_min=200` is
  `nowait+budget:min=200`.
- `NAME=` names the configuration (and its records file); by default the name is the part before
  the colon (`tip+budget`). `short=cyclic:period=300` next to `cyclic` needs the name.
- The form that predates interventions, `NAME:alpha=A,beta=B[,triggers=...][,scope=...]` with a
  NAME that is not an intervention, is a TIP configuration named NAME.

Every mistake is a `ValueError` naming the spec and the key (before anything loads).
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tip_decode.core.config import MAX_BETA, TIPConfig

if TYPE_CHECKING:
    from tip_decode.core.interventions import InterventionSet
    from tip_decode.core.interventions.base import Kind

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
#: How a configuration is written on the command line (help texts and errors).
SPEC_SYNTAX = "[NAME=]INTERVENTION[+INTERVENTION...][:key=value,...]"
#: Keys accepted by the TIP-only form `NAME:key=value,...` (NAME not an intervention).
SPEC_KEYS = ("alpha", "beta", "triggers", "scope")
#: Every intervention by name, in plan order (tip_decode.core.interventions.KINDS, which imports
#: torch: that module is imported only when a spec is parsed, so the command line starts fast).
KIND_NAMES = ("tip", "nowait", "cyclic", "gated", "budget")
#: Largest beta a spec accepts: the library's one bound (`tip_decode.core.config.MAX_BETA`).
MAX_SPEC_BETA = MAX_BETA


def kind_parameters(kind: Kind) -> tuple[str, ...]:
    """The parameter names of an intervention as a spec writes them (`cyclic_period` -> `period`)."""
    return tuple(sorted(key[len(kind.name) + 1 :] for key in kind.keys))


def _list_parameters(kind: Kind) -> frozenset[str]:
    # The parameters whose flat value is a list (triggers, keywords, words): a spec joins them with +.
    mapping = kind.to_mapping(kind.paper)
    return frozenset(key[len(kind.name) + 1 :] for key, value in mapping.items() if isinstance(value, list))


@functools.cache
def _kinds() -> dict[str, Kind]:
    from tip_decode.core.interventions import KINDS

    return {kind.name: kind for kind in KINDS}


@functools.cache
def _parameters(kind: str) -> tuple[str, ...]:
    return kind_parameters(_kinds()[kind])


@functools.cache
def _lists(kind: str) -> frozenset[str]:
    return _list_parameters(_kinds()[kind])


def _intervention_set() -> type[InterventionSet]:
    from tip_decode.core.interventions import InterventionSet

    return InterventionSet


def normalized(settings: InterventionSet) -> InterventionSet:
    """`settings` without the interventions its own values turn off (alpha 0, amplitude 0, ...)."""
    return _intervention_set()(**{kind.name: config for kind, config in settings.enabled})


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
        InterventionSet = _intervention_set()
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
            return cls(data["name"], _intervention_set().from_mapping(mapping))
        tip = data.get("tip")
        return cls(data["name"], TIPConfig.from_mapping(tip, default=TIPConfig()) if tip else None)


def request_mapping(settings: InterventionSet) -> dict[str, Any]:
    """The flat keys a server request carries for `settings`, every intervention explicit.

    Interventions that are off are sent off (`tip_alpha: 0`, `nowait: 0`, ...), so that a server-wide
    default (`tip-decode serve --alpha 3`) never leaks into a configuration that does not ask for it.
    """
    out: dict[str, Any] = {}
    for kind in _kinds().values():
        if getattr(settings, kind.name) is None:
            if kind.bare_key:
                out[kind.name] = 0
            else:
                out.update({key: 0 for key in kind.switch_keys or ()})
    out.update(settings.to_mapping())
    return out


# ----------------------------------------------------------------------------- describing settings


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(str(v) for v in value)
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    return str(value)


def settings_parts(mapping: Mapping[str, Any] | None, short: bool = False) -> list[str]:
    """One `kind: key=value, ...` text per intervention of a flat mapping, in plan order.

    `short` writes a parameter list that equals its paper default as `paper` (NoWait's 17 keywords).
    """
    if not mapping:
        return []
    try:
        settings = _intervention_set().from_mapping(mapping)
    except (TypeError, ValueError):
        return [", ".join(f"{k}={_value_text(v)}" for k, v in mapping.items())]
    parts = []
    for kind, config in settings.enabled:
        flat = kind.to_mapping(config)
        paper = kind.to_mapping(kind.paper)
        items = []
        for key, value in flat.items():
            if key == kind.name:
                continue  # the bare switch ("nowait": 1)
            param = key[len(kind.name) + 1 :]
            if key in ("cyclic_end", "budget_max") and value == -1:
                value = "none"
            elif key == "budget_word" and not value:
                value = "none"
            if short and isinstance(value, list) and value == paper.get(key) and len(value) > 3:
                items.append(f"{param}=paper ({len(value)} words)")
            else:
                items.append(f"{param}={_value_text(value)}")
        parts.append(f"{kind.name}: {', '.join(items)}")
    return parts


def settings_text(mapping: Mapping[str, Any] | None, short: bool = False) -> str:
    """A configuration's settings in one line ("no intervention" for standard decoding)."""
    return "; ".join(settings_parts(mapping, short)) or "no intervention (standard decoding)"


# ----------------------------------------------------------------------------- specs


def split_spec(spec: str, shown: str | None = None) -> tuple[str, dict[str, str] | None]:
    """`HEAD` -> (HEAD, None); `HEAD:key=value,...` -> (HEAD, {key: value}).

    The checks every kind of configuration shares: a non-empty head, something after a colon, each
    setting written `key=value` with a value, and no key given twice. Errors quote `shown` (the
    whole spec as the user wrote it; default `spec`).
    """
    if not isinstance(spec, str):
        raise TypeError(f"`spec` has to be a string, but is {type(spec).__name__}")
    shown = spec if shown is None else shown
    name, colon, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"configuration {shown!r} has no intervention before the colon (write {SPEC_SYNTAX})")
    if not colon:
        return name, None
    if not rest.strip():
        raise ValueError(f"configuration {shown!r} has a colon but no settings after it (e.g. {name}:alpha=3,beta=600, or just {name!r})")
    settings: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not item.strip():
            raise ValueError(f"configuration {shown!r} has an empty setting (two commas, or a trailing comma)")
        if not sep or not key:
            raise ValueError(f"configuration {shown!r}: {item.strip()!r} is not key=value")
        if not value.strip():
            raise ValueError(f"configuration {shown!r}: {key}= has no value")
        if key in settings:
            raise ValueError(f"configuration {shown!r} sets {key} twice ({key}={settings[key]} and {key}={value.strip()})")
        settings[key] = value.strip()
    return name, settings


def _check_beta(spec: str, key: str, value: str) -> None:
    try:
        too_big = float(value) > MAX_SPEC_BETA
    except ValueError:
        too_big = False
    if too_big:
        raise ValueError(f"configuration {spec!r}: {key}={value} is too large; beta is a number of tokens, at most {MAX_SPEC_BETA}")


def spec_terms(message: str) -> str:
    """A core message in the spec's terms: `cyclic_period` -> cyclic.period."""
    for kind in _kinds().values():
        for key in kind.keys:
            message = message.replace(f"`{key}`", f"{kind.name}.{key[len(kind.name) + 1 :]}")
        message = message.replace(f"`{kind.name}`", kind.name)
    return message


def _unknown_intervention(spec: str, word: str, suggest_name: bool = True) -> ValueError:
    close = difflib.get_close_matches(word, ("baseline", *KIND_NAMES), n=1)
    text = f"configuration {spec!r}: {word!r} is not an intervention (known: baseline, {', '.join(KIND_NAMES)})"
    text += f"; did you mean {close[0]}?" if close else "."
    if suggest_name and _NAME.fullmatch(word):
        text += f" To name a configuration write NAME=INTERVENTION..., e.g. {word}=tip:alpha=3"
    return ValueError(text)


def tip_from_settings(spec: str, settings: Mapping[str, str]) -> TIPConfig:
    """The TIP configuration of the TIP-only form `NAME:alpha=...,beta=...,triggers=...,scope=...`."""
    values: dict[str, Any] = {}
    for key, value in settings.items():
        param = key[len("tip.") :] if key.startswith("tip.") else key
        if param not in SPEC_KEYS:
            raise ValueError(f"configuration {spec!r}: {key}={value} is not a setting; use {', '.join(k + '=...' for k in SPEC_KEYS)}")
        if param == "beta":
            _check_beta(spec, key, value)
        if param in values:
            raise ValueError(f"configuration {spec!r} sets {param} twice")
        values[param] = value.split("+") if param == "triggers" and "+" in value else value
    try:
        return TIPConfig(**values)
    except (ValueError, TypeError) as err:
        raise ValueError(f"configuration {spec!r}: {err}") from None


def _resolve_key(spec: str, key: str, kinds: Sequence[str]) -> tuple[str, str]:
    """(intervention, parameter) that `key` sets in a configuration of `kinds`."""
    prefix, dot, param = key.partition(".")
    combination = "+".join(kinds)
    if dot:
        if prefix not in KIND_NAMES:
            raise ValueError(f"configuration {spec!r}: {key}: {prefix!r} is not an intervention (known: {', '.join(KIND_NAMES)})")
        if prefix not in kinds:
            raise ValueError(
                f"configuration {spec!r} sets {key}, but {prefix} is not one of its interventions ({combination}); add it: {combination}+{prefix}:..."
            )
        if param not in _parameters(prefix):
            raise ValueError(f"configuration {spec!r}: {prefix} has no setting {param!r} (its settings: {', '.join(_parameters(prefix))})")
        return prefix, param
    for kind in KIND_NAMES:
        # The flat key of core/interventions and server requests: budget_max, tip_alpha, nowait_keywords.
        if key.startswith(kind + "_") and key[len(kind) + 1 :] in _parameters(kind):
            if kind not in kinds:
                raise ValueError(
                    f"configuration {spec!r} sets {key}, but {kind} is not one of its interventions ({combination}); add it: {combination}+{kind}:..."
                )
            return kind, key[len(kind) + 1 :]
    owners = [kind for kind in kinds if key in _parameters(kind)]
    if len(owners) > 1:
        raise ValueError(f"configuration {spec!r}: {key} is a setting of {' and '.join(owners)}; write {' or '.join(f'{o}.{key}' for o in owners)}")
    if not owners:
        known = "; ".join(f"{kind}: {', '.join(_parameters(kind))}" for kind in kinds)
        close = difflib.get_close_matches(key, [p for kind in kinds for p in _parameters(kind)], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"configuration {spec!r}: {key} is not a setting of {' or '.join(kinds)} ({known}){hint}")
    return owners[0], key


def parse_interventions(
    spec: str,
    head: str,
    settings: Mapping[str, str] | None,
    defaults: InterventionSet | None = None,
) -> InterventionSet:
    """The interventions of `head` (`nowait`, `tip+budget`) with `settings` over their defaults.

    `defaults` gives the configuration a bare name starts from (the paper's when None or when it has
    none for that intervention; the demo passes its own TIP). Raises ValueError naming the spec.
    """
    kinds = [part.strip() for part in head.split("+")]
    for kind in kinds:
        if not kind:
            raise ValueError(f"configuration {spec!r}: {head!r} has an empty intervention name (write e.g. tip+budget)")
        if kind == "baseline":
            raise ValueError(f"configuration {spec!r}: baseline is standard decoding and combines with nothing")
        if kind not in KIND_NAMES:
            raise _unknown_intervention(spec, kind)
        if kinds.count(kind) > 1:
            raise ValueError(f"configuration {spec!r} names {kind} twice")
    flat: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        kind, param = _resolve_key(spec, key, kinds)
        flat_key = f"{kind}_{param}"
        if flat_key in flat:
            raise ValueError(f"configuration {spec!r} sets {kind}.{param} twice")
        if param == "beta":
            _check_beta(spec, key, value)
        flat[flat_key] = value.split("+") if param in _lists(kind) else value
    base: dict[str, Any] = {}
    for kind in kinds:
        default = getattr(defaults, kind) if defaults is not None else None
        base[kind] = default if default is not None else _kinds()[kind].paper
        if _kinds()[kind].bare_key:
            flat[kind] = 1
    budget_needs = f"configuration {spec!r}: budget needs min > 0 or max (e.g. budget:min=200,max=4000)"
    try:
        InterventionSet = _intervention_set()
        result = InterventionSet.from_mapping(flat, default=InterventionSet(**base))
    except (ValueError, TypeError) as err:
        if "`budget` needs" in str(err):
            raise ValueError(budget_needs) from None
        raise ValueError(f"configuration {spec!r}: {spec_terms(str(err))}") from None
    for kind in kinds:
        if getattr(result, kind) is None:
            if kind == "budget":
                raise ValueError(budget_needs)
            off = [f"{k}={v}" for k, v in (settings or {}).items() if _resolve_key(spec, k, kinds)[0] == kind]
            verb = "turns" if len(off) == 1 else "turn"
            raise ValueError(
                f"configuration {spec!r}: {', '.join(off) or 'its settings'} {verb} {kind} off; leave {kind} out (standard decoding is `baseline`)"
            )
    return result


def parse_config_spec(spec: str, defaults: InterventionSet | None = None) -> RunConfig:
    """Parse a configuration spec (module docstring): `baseline`, `nowait`, `cyclic:period=600`,
    `tip+budget:alpha=3,max=4000`, `long=budget:min=2000`, or the TIP-only `NAME:alpha=3,beta=600`.

    `defaults`: where a bare intervention name starts from (None: every paper's defaults).

    Example:
        >>> parse_config_spec("tip+budget:alpha=5,max=4000").interventions.names
        ('tip', 'budget')
        >>> parse_config_spec("short=cyclic:period=300").name
        'short'
    """
    if not isinstance(spec, str):
        raise TypeError(f"`spec` has to be a string, but is {type(spec).__name__}")
    text = spec.strip()
    flat = _flat_spec(spec, text, defaults)
    if flat is not None:
        return flat
    label: str | None = None
    colon, equals = text.find(":"), text.find("=")
    if equals >= 0 and (colon < 0 or equals < colon):
        label, text = text[:equals].strip(), text[equals + 1 :].strip()
        if not label:
            raise ValueError(f"configuration {spec!r} has nothing before '=' (write NAME=INTERVENTION..., or leave NAME= out)")
        if not _NAME.fullmatch(label):
            raise ValueError(f"configuration {spec!r}: the name {label!r} has to be letters, digits and _ . + - (it names a file)")
        if not text:
            raise ValueError(f"configuration {spec!r} names a configuration but gives no intervention after '=' (e.g. {label}=tip)")
    head, settings = split_spec(text, shown=spec)
    if head == "baseline":
        if settings is not None:
            raise ValueError(f"configuration {spec!r}: 'baseline' is standard decoding and takes no settings; name an intervention otherwise")
        return RunConfig(label or "baseline", None)
    if "+" not in head and head not in KIND_NAMES:
        if label is not None or settings is None:
            raise _unknown_intervention(spec, head, suggest_name=label is None)
        return _tip_only(spec, head, settings)
    interventions = parse_interventions(spec, head, settings, defaults)
    name = label or "+".join(part.strip() for part in head.split("+"))
    try:
        return RunConfig(name, interventions)
    except ValueError as err:
        raise ValueError(f"configuration {spec!r}: {err}") from None


def _flat_kind(key: str) -> str | None:
    """The intervention a flat key of core/interventions belongs to (`budget_max` -> budget), or None."""
    for kind in KIND_NAMES:
        if key == kind or (key.startswith(kind + "_") and key[len(kind) + 1 :] in _parameters(kind)):
            return kind
    return None


def _flat_spec(spec: str, text: str, defaults: InterventionSet | None) -> RunConfig | None:
    """`tip_alpha=3,budget_max=4000` (flat keys only, as a server request carries them): the
    interventions its keys name, or None when `text` is not of that form."""
    if ":" in text or "=" not in text:
        return None
    first, _, first_value = text.split(",", 1)[0].partition("=")
    first = first.strip()
    if _flat_kind(first) is None:
        return None
    if first in KIND_NAMES and first_value.strip().lower() not in ("0", "1", "true", "false"):
        return None  # `tip=nowait`: a configuration named tip (NAME=INTERVENTION), not a switch
    _, settings = split_spec("flat:" + text, shown=spec)
    assert settings is not None
    kinds: list[str] = []
    params: dict[str, str] = {}
    for key, value in settings.items():
        kind = _flat_kind(key)
        if kind is None:
            raise ValueError(
                f"configuration {spec!r}: {key} is not a flat intervention key (e.g. tip_alpha, nowait_keywords, cyclic_period, budget_max, gated_threshold)"
            )
        if kind not in kinds:
            kinds.append(kind)
        if key == kind:  # the bare switch (`nowait=1`)
            if value.strip().lower() not in ("1", "true"):
                raise ValueError(f"configuration {spec!r}: {key}={value} turns {kind} off; leave {kind} out (standard decoding is `baseline`)")
            continue
        params[key] = value
    head = "+".join(kind for kind in KIND_NAMES if kind in kinds)
    interventions = parse_interventions(spec, head, params or None, defaults)
    return RunConfig(head, interventions)


def _tip_only(spec: str, name: str, settings: Mapping[str, str]) -> RunConfig:
    """The form that predates interventions: `NAME:alpha=...` is a TIP configuration named NAME."""
    unknown = [key for key in settings if (key[4:] if key.startswith("tip.") else key) not in SPEC_KEYS]
    if unknown:
        close = difflib.get_close_matches(name, KIND_NAMES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(
            f"configuration {spec!r}: {name!r} is not an intervention{hint}, so this is a TIP configuration named {name}, "
            f"and {unknown[0]} is not a TIP setting (use {', '.join(SPEC_KEYS)}); write {SPEC_SYNTAX}"
        )
    tip = tip_from_settings(spec, settings)
    try:
        return RunConfig(name, tip)
    except ValueError as err:
        raise ValueError(f"configuration {spec!r}: {err}") from None


def parse_fixed(spec: str, option: str = "--fixed", why: str = "the grid sweeps TIP itself (--alphas, --betas, --triggers, --scope)") -> InterventionSet:
    """Interventions other than TIP, written as a configuration spec without a name.

    `tip-decode grid --fixed` (held in every configuration; the grid sweeps TIP) and
    `tip-decode serve --interventions` (server-wide defaults; TIP's are --alpha/--beta/...) read it:
    `budget:max=4000`, `nowait`, `cyclic+budget:period=600,max=4000`, or flat keys
    `nowait=1,budget_max=4000`. `option` and `why` word the errors.
    """
    if not isinstance(spec, str):
        raise TypeError(f"`spec` has to be a string, but is {type(spec).__name__}")
    text = spec.strip()
    flat = _flat_spec(spec, text, None)
    if flat is not None:
        kinds = list(flat.interventions.names)
    else:
        head, settings = split_spec(text, shown=spec)
        kinds = [part.strip() for part in head.split("+")]
        if "=" in head:
            raise ValueError(f"{option} {spec!r}: name no configuration here; write INTERVENTION[+...][:key=value,...]")
    if "tip" in kinds:
        raise ValueError(f"{option} {spec!r}: {why}; {option} takes the other interventions (nowait, cyclic, gated, budget)")
    if "baseline" in kinds:
        raise ValueError(f"{option} {spec!r}: baseline is no intervention; {option} takes nowait, cyclic, gated, budget")
    if flat is not None:
        return flat.interventions
    return parse_interventions(spec, head, settings)


def grid_configs(alphas: list[float], betas: list[int], base: TIPConfig | None = None, fixed: InterventionSet | None = None) -> list[RunConfig]:
    """`baseline` plus one TIP configuration per (alpha, beta) cell, named `a{alpha}_b{beta}`.

    `fixed`: other interventions every configuration carries, the baseline included (the grid then
    measures TIP on top of them); it may not hold TIP, which the grid sweeps. A cell with alpha 0 or
    beta 0 is TIP off, which is the baseline itself: it gets no configuration of its own (the grid
    reads it from the baseline, `tip_decode.harness.grid.cell_config`).
    """
    fixed = fixed if fixed is not None else _intervention_set()()
    if fixed.tip is not None:
        raise ValueError("`fixed` may not hold TIP: the grid sweeps TIP's alpha and beta itself")
    base = base or TIPConfig()
    configs = [RunConfig("baseline", fixed)]
    for alpha in alphas:
        for beta in betas:
            tip = replace(base, alpha=alpha, beta=beta)
            if tip.enabled:
                configs.append(RunConfig(f"a{_short(tip.alpha)}_b{tip.beta}", replace(fixed, tip=tip)))
    return configs


def _short(value: float) -> str:
    return "inf" if value == float("inf") else (str(int(value)) if float(value).is_integer() else str(value))
