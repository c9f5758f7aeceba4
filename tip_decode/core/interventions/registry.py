"""The registry of interventions: each one declared once, everything else derived from it.

Every intervention is one module of this package whose `INTERVENTION` is an `Intervention`: its
name, configuration type, flat keys with their parsers, paper default, structure, how it is
written and shown, what it does to the logits (only adds finite biases, or can ban and force),
and its `Rule`. `BUILT_IN` lists those modules, one line each; nothing else in `tip_decode` lists
interventions. `InterventionSet` (settings.py), the Hugging Face processor's keywords, the spec
language of `-c` / `--fixed` / `--interventions` (spec.py), off-keys, summaries, the server
defaults and SGLang's request fields all read it.

Adding an intervention (docs/design.md has the checklist): its module with a configuration, a
`Rule`, its `RuleTables` and `INTERVENTION`, and one line in `BUILT_IN`. `register` adds one at
run time (tests register a throw-away intervention with it).

Torch-free: declarations and rules never import torch (their tables are built by the torch side).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tip_decode.core.interventions.base import Rule, TokenizerInfo

__all__ = ["BUILT_IN", "Intervention", "Key", "intervention", "lookup", "interventions", "names", "register", "unregister"]

#: The built-in interventions, one module each; the plan order is each declaration's `order`.
BUILT_IN: tuple[str, ...] = (
    "tip_decode.core.interventions.tip",
    "tip_decode.core.interventions.nowait",
    "tip_decode.core.interventions.cyclic",
    "tip_decode.core.interventions.gated",
    "tip_decode.core.interventions.budget",
    "tip_decode.core.interventions.deepconf",
    "tip_decode.core.interventions.thinkbrake",
    "tip_decode.core.interventions.affirm",
    "tip_decode.core.interventions.alphaone",
    "tip_decode.core.interventions.inject",
    "tip_decode.core.interventions.nothinking",
)


@dataclass(frozen=True)
class Key:
    """One flat key: the configuration field it sets and its parser (`parse(value, key)`).

    `command_line_max`: the largest value the command line accepts for it (a larger one is refused
    there as a typo; the library's own bound is the parser's).
    """

    field: str
    parse: Callable[[Any, str], Any]
    command_line_max: int | None = None


def _enabled(config: Any) -> bool:
    return bool(getattr(config, "enabled", True))


def _to_mapping(config: Any) -> dict[str, Any]:
    return config.to_mapping()


def _never_finite(config: Any) -> bool:
    return False


@dataclass(frozen=True, eq=False)
class Intervention:
    """How one intervention is declared (its module's `INTERVENTION`).

    Args:
        name: its name and the namespace of its flat keys (`cyclic` -> `cyclic_period`).
        config_type: its frozen configuration dataclass.
        keys: flat key -> `Key`, in the order summaries show them.
        paper: the configuration its bare key turns on (the paper's settings).
        structure: the configuration's vocabulary-defining part (hashable): requests that differ
            only in numbers share one plan.
        rule: builds its `Rule` from a structure and a `TokenizerInfo`.
        enabled: whether a configuration does anything (alpha 0, amplitude 0 turn it off).
        to_mapping: a configuration as flat, JSON-safe keys (what `keys` read back).
        finite: the effect: True where a configuration only ever adds finite biases (never bans
            with -inf, never forces a token), which lets an engine add its biases in one pass.
        order: the plan order (biases are summed in it; an intervention that forces goes last).
        bare_key: whether the bare name (`"nowait": 1`) turns it on with `paper`, and 0 off.
        switch_keys: keys that alone turn it on and, at 0, off, for an intervention without a bare
            key (TIP: `tip_alpha`, as it always was).
        needs_think_markers: the keys named when a tokenizer without single-token think markers is
            refused (empty: the rule works without markers).
        needs: for an intervention whose paper default does nothing (budget), what its settings
            have to give (flat keys: "`budget_min` > 0 or `budget_max`"), and `example` a spec's
            settings that do ("min=200,max=4000").
        required: flat keys with no default (ThinkBrake's `thinkbrake_tau`): a request or spec that
            turns the intervention on, by its bare key or any of its keys, without them is refused
            with `needs` (never silently off). The configuration field of each is None when unset.
        display: a configuration's summary items (`["alpha=3", ...]`; `short` shortens long paper
            lists); default: every key's value, None as "none", lists joined with "+".
        title: one line saying what it is (help texts, docs).
        conflict: why a configuration cannot run with the other interventions of one request
            (`conflict(config, others)`, `others`: name -> configuration of every other one that is
            on), or None where it can; `InterventionSet` refuses such a set in one line.
    """

    name: str
    config_type: type
    keys: Mapping[str, Key]
    paper: Any
    structure: Callable[[Any], Hashable]
    rule: Callable[[Hashable, TokenizerInfo], Rule]
    enabled: Callable[[Any], bool] = _enabled
    to_mapping: Callable[[Any], dict[str, Any]] = _to_mapping
    finite: Callable[[Any], bool] = _never_finite
    order: int = 50
    bare_key: bool = True
    switch_keys: tuple[str, ...] | None = None
    needs_think_markers: tuple[str, ...] = ()
    needs: str = ""
    example: str = ""
    required: tuple[str, ...] = ()
    display: Callable[[Intervention, Any, bool], list[str]] | None = None
    title: str = ""
    conflict: Callable[[Any, Mapping[str, Any]], str | None] | None = None
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or "_" in self.name:
            raise ValueError(f"an intervention's name has to be one word of letters and digits (it prefixes its keys), but is {self.name!r}")
        for key in self.keys:
            if not key.startswith(self.name + "_"):
                raise ValueError(f"`{self.name}`'s key {key!r} has to start with {self.name + '_'!r}")
        if not self.bare_key and not self.switch_keys:
            raise ValueError(f"`{self.name}` has neither a bare key nor switch keys: nothing would turn it on or off")
        for key in self.required:
            if key not in self.keys or not self.needs:
                raise ValueError(f"`{self.name}`'s required key {key!r} has to be one of its keys, and `needs` has to say what it takes")

    def missing(self, config: Any) -> list[str]:
        """The required keys `config` leaves unset."""
        return [key for key in self.required if getattr(config, self.keys[key].field) is None]

    @property
    def parameters(self) -> tuple[str, ...]:
        """Its parameter names as a spec writes them (`cyclic_period` -> `period`), sorted."""
        return tuple(sorted(self.parameter(key) for key in self.keys))

    def parameter(self, key: str) -> str:
        return key[len(self.name) + 1 :]

    @property
    def list_parameters(self) -> frozenset[str]:
        """The parameters whose flat value is a list (triggers, keywords, words): a spec joins them with +."""
        if "lists" not in self._cache:
            mapping = self.to_mapping(self.paper)
            self._cache["lists"] = frozenset(self.parameter(k) for k, v in mapping.items() if k in self.keys and isinstance(v, list))
        return self._cache["lists"]

    def owns(self, key: str) -> bool:
        """`key` is in this intervention's namespace: its bare key or `name_...`."""
        return (key == self.name and self.bare_key) or key.startswith(self.name + "_")

    def off_mapping(self) -> dict[str, Any]:
        """The keys that turn it off in a request (`{"nowait": 0}`, TIP's `{"tip_alpha": 0}`)."""
        return {self.name: 0} if self.bare_key else dict.fromkeys(self.switch_keys or (), 0)

    def summary(self, config: Any, short: bool = False) -> list[str]:
        """The `key=value` items a summary shows for `config` (see `display`)."""
        return (self.display or default_display)(self, config, short)


def value_text(value: Any) -> str:
    """A flat value as summaries and specs write it: lists joined with +, floats as %g, inf as inf."""
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    if isinstance(value, float):
        return "inf" if value == float("inf") else f"{value:g}"
    return str(value)


def default_display(declared: Intervention, config: Any, short: bool) -> list[str]:
    """Every key's value read from the configuration's field: None (no limit, no word) is "none";
    with `short`, a list of more than three words that equals the paper's is "paper (N words)"."""
    items = []
    for key, spec in declared.keys.items():
        value = getattr(config, spec.field)
        param = declared.parameter(key)
        if value is None:
            items.append(f"{param}=none")
        elif short and isinstance(value, tuple) and len(value) > 3 and value == getattr(declared.paper, spec.field):
            items.append(f"{param}=paper ({len(value)} words)")
        else:
            items.append(f"{param}={value_text(value)}")
    return items


# ----- the registry -----

_LOCK = threading.RLock()
_DECLARED: dict[str, Intervention] = {}
_ORDERED: tuple[Intervention, ...] | None = None


def _load() -> tuple[Intervention, ...]:
    global _ORDERED
    with _LOCK:
        if _ORDERED is None:
            for module in BUILT_IN:
                declared = importlib.import_module(module).INTERVENTION
                _DECLARED.setdefault(declared.name, declared)
            _ORDERED = tuple(sorted(_DECLARED.values(), key=lambda d: d.order))
        return _ORDERED


def interventions() -> tuple[Intervention, ...]:
    """Every intervention, in plan order."""
    ordered = _ORDERED
    return ordered if ordered is not None else _load()


def names() -> tuple[str, ...]:
    """Every intervention's name, in plan order."""
    return tuple(d.name for d in interventions())


def lookup(name: str) -> Intervention | None:
    """The intervention called `name`, or None."""
    if _ORDERED is None:
        _load()
    return _DECLARED.get(name)


def intervention(name: str) -> Intervention:
    """The intervention called `name` (KeyError naming the known ones otherwise)."""
    found = lookup(name)
    if found is None:
        raise KeyError(f"{name!r} is not an intervention (known: {', '.join(names())})")
    return found


def register(declared: Intervention) -> Intervention:
    """Add an intervention at run time (tests register throw-away ones); returns it.

    Raises:
        ValueError: the name is taken, or a key or config type clashes with a registered one.
    """
    global _ORDERED
    if not isinstance(declared, Intervention):
        raise TypeError(f"register takes an Intervention, not {type(declared).__name__}")
    with _LOCK:
        if declared.name in {d.name for d in interventions()}:
            raise ValueError(f"an intervention named {declared.name!r} is registered already")
        _DECLARED[declared.name] = declared
        _ORDERED = tuple(sorted(_DECLARED.values(), key=lambda d: d.order))
    return declared


def unregister(name: str) -> None:
    """Remove an intervention that `register` added (built-in ones stay)."""
    global _ORDERED
    with _LOCK:
        if any(importlib.import_module(m).INTERVENTION.name == name for m in BUILT_IN):
            raise ValueError(f"{name!r} is built in and cannot be removed")
        _DECLARED.pop(name, None)
        _ORDERED = tuple(sorted(_DECLARED.values(), key=lambda d: d.order))
