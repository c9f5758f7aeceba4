"""The command line's language for interventions: specs, and summaries of settings (torch-free).

A spec names a configuration and its interventions:

    [NAME=]INTERVENTION[+INTERVENTION...][:KEY=VALUE,...]

- `baseline`: standard decoding (no intervention).
- an intervention's name (`tip`, `nowait`, `cyclic`, `gated`, ... every registered one): the
  intervention with its paper's defaults (docs/interventions.md); one whose paper default does
  nothing says what it needs (`budget` needs `min` or `max`).
- `KEY=VALUE` sets a parameter: `cyclic:amplitude=5,period=1200`, `budget:min=200,max=4000,word=Wait`.
  A key may name its intervention, as `budget.max=4000` or as the flat key of requests,
  `budget_max=4000`; it must where two interventions of the configuration share the parameter
  (`tip+gated:tip_alpha=3,gated.alpha=5`). Lists (`triggers`, `keywords`, `words`) join their items
  with `+`: `tip:triggers=alternatively+wait`.
- `tip+budget:alpha=3,max=4000` combines interventions in one configuration.
- Flat keys alone, as a server request carries them, name their interventions themselves:
  `tip_alpha=3,budget_max=4000` is `tip+budget:alpha=3,max=4000`; `nowait=1,budget_min=200` is
  `nowait+budget:min=200`.
- `NAME=` names the configuration (and its records file); by default the name is the part before
  the colon (`tip+budget`). `short=cyclic:period=300` next to `cyclic` needs the name.
- The form that predates interventions, `NAME:alpha=A,beta=B[,triggers=...][,scope=...]` with a
  NAME that is not an intervention, is a TIP configuration named NAME.

Every mistake is a `ValueError` naming the spec and the key. Everything about an intervention
(its name, parameters, lists, command-line bounds, what it needs) comes from the registry.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tip_decode.core.interventions.registry import Intervention, intervention, interventions, lookup, names, value_text
from tip_decode.core.interventions.settings import InterventionSet, namespace_of

__all__ = [
    "LEGACY_INTERVENTION",
    "SPEC_SYNTAX",
    "parse_fixed",
    "parse_interventions",
    "parse_spec",
    "settings_parts",
    "settings_text",
    "spec_terms",
    "split_spec",
]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
#: How a configuration is written on the command line (help texts and errors).
SPEC_SYNTAX = "[NAME=]INTERVENTION[+INTERVENTION...][:key=value,...]"
#: The intervention of the form that predates the others, `NAME:alpha=...,beta=...` (TIP's).
LEGACY_INTERVENTION = "tip"


# ----------------------------------------------------------------------------- describing settings


def settings_parts(mapping: Mapping[str, Any] | None, short: bool = False) -> list[str]:
    """One `name: key=value, ...` text per intervention of a flat mapping, in plan order.

    Each intervention writes its own items (`Intervention.summary`); `short` writes a long parameter
    list that equals its paper default as `paper` (NoWait's 17 keywords). A mapping that does not
    read as settings is shown key by key.
    """
    if not mapping:
        return []
    try:
        settings = InterventionSet.from_mapping(mapping)
    except (TypeError, ValueError):
        return [", ".join(f"{k}={value_text(v)}" for k, v in mapping.items())]
    return [f"{declared.name}: {', '.join(declared.summary(config, short))}" for declared, config in settings.enabled]


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


def spec_terms(message: str) -> str:
    """A core message in the spec's terms: `cyclic_period` -> cyclic.period."""
    for declared in interventions():
        for key in declared.keys:
            message = message.replace(f"`{key}`", f"{declared.name}.{declared.parameter(key)}")
        message = message.replace(f"`{declared.name}`", declared.name)
    return message


def _check_command_line_max(spec: str, key: str, value: str, declared: Intervention, param: str) -> None:
    """A number of tokens beyond what the command line accepts for it is a typo (`Key.command_line_max`)."""
    limit = declared.keys[f"{declared.name}_{param}"].command_line_max
    if limit is None:
        return
    try:
        too_big = float(value) > limit
    except ValueError:
        too_big = False
    if too_big:
        raise ValueError(f"configuration {spec!r}: {key}={value} is too large; {param} is a number of tokens, at most {limit}")


def _unknown_intervention(spec: str, word: str, suggest_name: bool = True) -> ValueError:
    known = names()
    close = difflib.get_close_matches(word, ("baseline", *known), n=1)
    text = f"configuration {spec!r}: {word!r} is not an intervention (known: baseline, {', '.join(known)})"
    text += f"; did you mean {close[0]}?" if close else "."
    if suggest_name and NAME.fullmatch(word):
        text += f" To name a configuration write NAME=INTERVENTION..., e.g. {word}={LEGACY_INTERVENTION}:alpha=3"
    return ValueError(text)


def legacy_settings(spec: str, settings: Mapping[str, str]) -> Any:
    """The configuration of the form that predates interventions, `NAME:alpha=...,beta=...`
    (`LEGACY_INTERVENTION`'s parameters, written bare or as `tip.alpha`)."""
    declared = intervention(LEGACY_INTERVENTION)
    params = declared.parameters
    values: dict[str, Any] = {}
    for key, value in settings.items():
        prefix = declared.name + "."
        param = key[len(prefix) :] if key.startswith(prefix) else key
        if param not in params:
            raise ValueError(f"configuration {spec!r}: {key}={value} is not a setting; use {', '.join(k + '=...' for k in _legacy_order(declared))}")
        _check_command_line_max(spec, key, value, declared, param)
        if param in values:
            raise ValueError(f"configuration {spec!r} sets {param} twice")
        values[param] = value.split("+") if param in declared.list_parameters and "+" in value else value
    try:
        return declared.config_type(**{declared.keys[f"{declared.name}_{p}"].field: v for p, v in values.items()})
    except (ValueError, TypeError) as err:
        raise ValueError(f"configuration {spec!r}: {err}") from None


def _legacy_order(declared: Intervention) -> list[str]:
    return [declared.parameter(key) for key in declared.keys]


def _resolve_key(spec: str, key: str, kinds: Sequence[str]) -> tuple[str, str]:
    """(intervention, parameter) that `key` sets in a configuration of `kinds`."""
    prefix, dot, param = key.partition(".")
    combination = "+".join(kinds)
    if dot:
        declared = lookup(prefix)
        if declared is None:
            raise ValueError(f"configuration {spec!r}: {key}: {prefix!r} is not an intervention (known: {', '.join(names())})")
        if prefix not in kinds:
            raise ValueError(
                f"configuration {spec!r} sets {key}, but {prefix} is not one of its interventions ({combination}); add it: {combination}+{prefix}:..."
            )
        if param not in declared.parameters:
            raise ValueError(f"configuration {spec!r}: {prefix} has no setting {param!r} (its settings: {', '.join(declared.parameters)})")
        return prefix, param
    declared = namespace_of(key)
    if declared is not None and key in declared.keys:  # the flat key of requests: budget_max, tip_alpha
        if declared.name not in kinds:
            raise ValueError(
                f"configuration {spec!r} sets {key}, but {declared.name} is not one of its interventions ({combination}); "
                f"add it: {combination}+{declared.name}:..."
            )
        return declared.name, declared.parameter(key)
    owners = [kind for kind in kinds if key in intervention(kind).parameters]
    if len(owners) > 1:
        raise ValueError(f"configuration {spec!r}: {key} is a setting of {' and '.join(owners)}; write {' or '.join(f'{o}.{key}' for o in owners)}")
    if not owners:
        known = "; ".join(f"{kind}: {', '.join(intervention(kind).parameters)}" for kind in kinds)
        close = difflib.get_close_matches(key, [p for kind in kinds for p in intervention(kind).parameters], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"configuration {spec!r}: {key} is not a setting of {' or '.join(kinds)} ({known}){hint}")
    return owners[0], key


def _needs_text(spec: str, declared: Intervention) -> str:
    """What an intervention whose paper default does nothing needs, in the spec's terms."""
    needs = declared.needs
    for key in declared.keys:
        needs = needs.replace(f"`{key}`", declared.parameter(key))
    example = f" (e.g. {declared.name}:{declared.example})" if declared.example else ""
    return f"configuration {spec!r}: {declared.name} needs {needs}{example}"


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
        if lookup(kind) is None:
            raise _unknown_intervention(spec, kind)
        if kinds.count(kind) > 1:
            raise ValueError(f"configuration {spec!r} names {kind} twice")
    flat: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        kind, param = _resolve_key(spec, key, kinds)
        declared = intervention(kind)
        flat_key = f"{kind}_{param}"
        if flat_key in flat:
            raise ValueError(f"configuration {spec!r} sets {kind}.{param} twice")
        _check_command_line_max(spec, key, value, declared, param)
        flat[flat_key] = value.split("+") if param in declared.list_parameters else value
    base: dict[str, Any] = {}
    for kind in kinds:
        declared = intervention(kind)
        default = getattr(defaults, kind) if defaults is not None else None
        base[kind] = default if default is not None else declared.paper
        if declared.bare_key:
            flat[kind] = 1
    try:
        result = InterventionSet.from_mapping(flat, default=InterventionSet.defaults(**base))
    except (ValueError, TypeError) as err:
        needing = [intervention(k) for k in kinds if intervention(k).needs and str(err) == f"`{k}` needs {intervention(k).needs}"]
        if needing:
            raise ValueError(_needs_text(spec, needing[0])) from None
        raise ValueError(f"configuration {spec!r}: {spec_terms(str(err))}") from None
    for kind in kinds:
        declared = intervention(kind)
        if getattr(result, kind) is None:
            if declared.needs and not declared.enabled(declared.paper):
                raise ValueError(_needs_text(spec, declared))
            off = [f"{k}={v}" for k, v in (settings or {}).items() if _resolve_key(spec, k, kinds)[0] == kind]
            verb = "turns" if len(off) == 1 else "turn"
            raise ValueError(
                f"configuration {spec!r}: {', '.join(off) or 'its settings'} {verb} {kind} off; leave {kind} out (standard decoding is `baseline`)"
            )
    return result


def parse_spec(spec: str, defaults: InterventionSet | None = None) -> tuple[str, InterventionSet]:
    """A configuration spec (module docstring) as (name, interventions): `baseline`, `nowait`,
    `cyclic:period=600`, `tip+budget:alpha=3,max=4000`, `long=budget:min=2000`, flat keys
    `tip_alpha=3,budget_max=4000`, or the TIP-only `NAME:alpha=3,beta=600`.

    `defaults`: where a bare intervention name starts from (None: every paper's defaults).

    Example:
        >>> parse_spec("tip+budget:alpha=5,max=4000")[1].names
        ('tip', 'budget')
        >>> parse_spec("short=cyclic:period=300")[0]
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
        if not NAME.fullmatch(label):
            raise ValueError(f"configuration {spec!r}: the name {label!r} has to be letters, digits and _ . + - (it names a file)")
        if not text:
            raise ValueError(f"configuration {spec!r} names a configuration but gives no intervention after '=' (e.g. {label}={LEGACY_INTERVENTION})")
    head, settings = split_spec(text, shown=spec)
    if head == "baseline":
        if settings is not None:
            raise ValueError(f"configuration {spec!r}: 'baseline' is standard decoding and takes no settings; name an intervention otherwise")
        return label or "baseline", InterventionSet()
    if "+" not in head and lookup(head) is None:
        if label is not None or settings is None:
            raise _unknown_intervention(spec, head, suggest_name=label is None)
        return _legacy(spec, head, settings)
    interventions_ = parse_interventions(spec, head, settings, defaults)
    return label or "+".join(part.strip() for part in head.split("+")), interventions_


def _flat_owner(key: str) -> Intervention | None:
    """The intervention a flat key of a spec belongs to (`budget_max` -> budget, `nowait` -> nowait),
    or None. A spec may switch any intervention on by its name (`tip=1`), bare key or not."""
    declared = namespace_of(key) or lookup(key)
    return declared if declared is not None and (key == declared.name or key in declared.keys) else None


def _flat_spec(spec: str, text: str, defaults: InterventionSet | None) -> tuple[str, InterventionSet] | None:
    """`tip_alpha=3,budget_max=4000` (flat keys only, as a server request carries them): the
    interventions its keys name, or None when `text` is not of that form."""
    if ":" in text or "=" not in text:
        return None
    first, _, first_value = text.split(",", 1)[0].partition("=")
    first = first.strip()
    if _flat_owner(first) is None:
        return None
    if lookup(first) is not None and first_value.strip().lower() not in ("0", "1", "true", "false"):
        return None  # `tip=nowait`: a configuration named tip (NAME=INTERVENTION), not a switch
    _, settings = split_spec("flat:" + text, shown=spec)
    kinds: list[str] = []
    params: dict[str, str] = {}
    for key, value in (settings or {}).items():
        declared = _flat_owner(key)
        if declared is None:
            examples = ", ".join(next(iter(d.keys)) for d in interventions() if d.keys)
            raise ValueError(f"configuration {spec!r}: {key} is not a flat intervention key (e.g. {examples})")
        if declared.name not in kinds:
            kinds.append(declared.name)
        if key == declared.name:  # the bare switch (`nowait=1`)
            if value.strip().lower() not in ("1", "true"):
                raise ValueError(f"configuration {spec!r}: {key}={value} turns {key} off; leave {key} out (standard decoding is `baseline`)")
            continue
        params[key] = value
    head = "+".join(name for name in names() if name in kinds)
    return head, parse_interventions(spec, head, params or None, defaults)


def _legacy(spec: str, name: str, settings: Mapping[str, str]) -> tuple[str, InterventionSet]:
    """The form that predates interventions: `NAME:alpha=...` is a TIP configuration named NAME."""
    declared = intervention(LEGACY_INTERVENTION)
    prefix = declared.name + "."
    unknown = [key for key in settings if (key[len(prefix) :] if key.startswith(prefix) else key) not in declared.parameters]
    if unknown:
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(
            f"configuration {spec!r}: {name!r} is not an intervention{hint}, so this is a TIP configuration named {name}, "
            f"and {unknown[0]} is not a TIP setting (use {', '.join(_legacy_order(declared))}); write {SPEC_SYNTAX}"
        )
    return name, InterventionSet(**{declared.name: legacy_settings(spec, settings)})


def parse_fixed(spec: str, option: str, why: str, without: str) -> InterventionSet:
    """Interventions other than `without`, written as a configuration spec without a name.

    `tip-decode grid --fixed` (held in every configuration; the grid sweeps TIP) and `tip-decode
    serve --interventions` (server-wide defaults; TIP's are --alpha/--beta/...) read it:
    `budget:max=4000`, `nowait`, `cyclic+budget:period=600,max=4000`, or flat keys
    `nowait=1,budget_max=4000`. `option` and `why` word the errors.
    """
    if not isinstance(spec, str):
        raise TypeError(f"`spec` has to be a string, but is {type(spec).__name__}")
    text = spec.strip()
    flat = _flat_spec(spec, text, None)
    others = ", ".join(n for n in names() if n != without)
    if flat is not None:
        kinds = list(flat[1].names)
    else:
        head, settings = split_spec(text, shown=spec)
        kinds = [part.strip() for part in head.split("+")]
        if "=" in head:
            raise ValueError(f"{option} {spec!r}: name no configuration here; write INTERVENTION[+...][:key=value,...]")
    if without in kinds:
        raise ValueError(f"{option} {spec!r}: {why}; {option} takes the other interventions ({others})")
    if "baseline" in kinds:
        raise ValueError(f"{option} {spec!r}: baseline is no intervention; {option} takes {others}")
    if flat is not None:
        return flat[1]
    return parse_interventions(spec, head, settings)
