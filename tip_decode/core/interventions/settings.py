"""The settings of one request: `InterventionSet`, and the flat keys it is read from and written to.

One flat mapping of namespaced keys carries every intervention (`tip_*`, `nowait*`, `cyclic*`,
`budget*`, `gated*`, and whatever else the registry holds), which is what vLLM's `vllm_xargs`,
SGLang's `custom_params`, the server default `TIP_DECODE_INTERVENTIONS` and run.json allow. This
module reads and writes that language: which intervention a key belongs to (`namespace_of`), how a
request turns one on or off, and the keys that send a setting whole (`request_mapping`). Torch-free.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from tip_decode.core.config import parse_switch
from tip_decode.core.interventions.registry import Intervention, interventions, lookup

__all__ = ["InterventionSet", "namespace_of", "request_mapping"]


def namespace_of(key: Any) -> Intervention | None:
    """The intervention whose namespace `key` belongs to (`nowait`, `nowait_scope`, ...), or None.

    The one reading of the flat-key namespaces: requests, server defaults, specs and client
    helpers all go through it.
    """
    if not isinstance(key, str):
        return None
    for declared in interventions():
        if declared.owns(key):
            return declared
    return None


def _parse_one(declared: Intervention, mapping: Mapping[str, Any], default: Any) -> Any:
    """One intervention's configuration from the request's keys over the server default, or None (off)."""
    values: dict[str, Any] = {}
    switch: bool | None = None
    for key, value in mapping.items():
        if not isinstance(key, str):
            continue
        if key == declared.name and declared.bare_key:
            switch = parse_switch(value, key)
        elif key.startswith(declared.name + "_"):
            spec = declared.keys.get(key)
            if spec is None:
                known = ", ".join(([declared.name] if declared.bare_key else []) + sorted(declared.keys))
                raise ValueError(f"unknown {declared.name} argument `{key}` (known: {known})")
            values[spec.field] = spec.parse(value, key)
    if switch is False:
        return None
    default_on = default is not None and declared.enabled(default)
    if declared.switch_keys is not None:
        turned_on = bool(switch) or any(k in mapping for k in declared.switch_keys)
    else:
        turned_on = bool(switch) or bool(values)
    if not (default_on or turned_on):
        return None
    base = default if default is not None else declared.paper
    config = replace(base, **values)
    if (switch or values) and declared.missing(config):
        # Asked for by its own keys, without a value that has no default: never silently off.
        raise ValueError(f"`{declared.name}` needs {declared.needs}")
    if not declared.enabled(config):
        if switch and declared.needs and not declared.enabled(declared.paper):
            # The bare key asks for the paper default, which does nothing here (a budget without limits).
            raise ValueError(f"`{declared.name}` needs {declared.needs}")
        return None
    return config


class InterventionSet:
    """The interventions of one request (None: off), built from keywords or from flat keys.

    Frozen and hashable; one keyword per registered intervention (`InterventionSet(tip=...,
    nowait=...)`), read back as attributes (`settings.budget`, None when not given).

    Example:
        >>> from tip_decode.core.interventions import InterventionSet
        >>> s = InterventionSet.from_mapping({"tip_alpha": 3, "nowait": 1, "budget_max": 4000})
        >>> s.names
        ('tip', 'nowait', 'budget')
        >>> s.budget.max, s.cyclic
        (4000, None)
    """

    __slots__ = ("_configs", "_hash", "_enabled")

    def __init__(self, **configs: Any) -> None:
        self._build(configs)
        _check_conflicts(self.enabled)

    @classmethod
    def defaults(cls, **configs: Any) -> InterventionSet:
        """A set that values are then read over (`from_mapping(..., default=)`), whose combination is
        not checked yet: `alphaone+nowait:keywords=hmm` starts from NoWait's paper keywords."""
        out = cls.__new__(cls)
        out._build(configs)
        return out

    def _build(self, configs: dict[str, Any]) -> None:
        for name, config in configs.items():
            found = lookup(name)
            if found is None:
                known = ", ".join(d.name for d in interventions())
                raise TypeError(f"InterventionSet got an unknown intervention `{name}` (known: {known})")
            if config is not None and not isinstance(config, found.config_type):
                raise TypeError(f"`{name}` has to be a {found.config_type.__name__} or None, but is {type(config).__name__}")
        # In plan order, the interventions given only.
        ordered = {d.name: configs[d.name] for d in interventions() if configs.get(d.name) is not None}
        object.__setattr__(self, "_configs", ordered)
        object.__setattr__(self, "_hash", None)
        object.__setattr__(self, "_enabled", None)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not attributes: an intervention's configuration or None.
        if name.startswith("_"):
            raise AttributeError(name)
        if lookup(name) is not None:
            return self._configs.get(name)
        raise AttributeError(f"InterventionSet has no attribute or intervention {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("InterventionSet is frozen; use .replace(name=config)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("InterventionSet is frozen")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InterventionSet):
            return NotImplemented
        return self._configs == other._configs

    def __hash__(self) -> int:
        if self._hash is None:
            object.__setattr__(self, "_hash", hash(tuple(self._configs.items())))
        return self._hash

    def __repr__(self) -> str:
        return f"InterventionSet({', '.join(f'{name}={config!r}' for name, config in self._configs.items())})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (dict(self._configs),))

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """(name, configuration) of every intervention given (enabled or not), in plan order."""
        return iter(self._configs.items())

    def replace(self, **changes: Any) -> InterventionSet:
        """A copy with some interventions replaced (None: removed)."""
        return InterventionSet(**{**self._configs, **changes})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None, default: InterventionSet | None = None) -> InterventionSet:
        """Read the namespaced keys of `mapping` over `default` (a server-wide setting).

        Keys outside every namespace are ignored (the same dict carries other features' keys); an
        unknown key inside a namespace is an error. Each invalid value raises ValueError naming it.
        """
        if mapping is None:
            mapping = {}
        if not isinstance(mapping, Mapping):
            raise TypeError(f"expected a mapping of intervention keys, got {type(mapping).__name__}")
        default = default if default is not None else cls()
        return cls(**{d.name: _parse_one(d, mapping, default._configs.get(d.name)) for d in interventions()})

    @property
    def enabled(self) -> tuple[tuple[Intervention, Any], ...]:
        """(declaration, configuration) of every intervention that is on, in plan order."""
        if self._enabled is None:
            on = tuple((d, c) for d in interventions() if (c := self._configs.get(d.name)) is not None and d.enabled(c))
            object.__setattr__(self, "_enabled", on)
        return self._enabled

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d, _ in self.enabled)

    @property
    def structure(self) -> tuple[tuple[str, Hashable], ...]:
        """What decides the plan: which interventions, with which vocabulary-defining settings."""
        return tuple((d.name, d.structure(c)) for d, c in self.enabled)

    @property
    def only_finite(self) -> bool:
        """Every intervention that is on only adds finite biases (no ban, no forcing; see
        `Intervention.finite`): an engine may then add the biases in one pass."""
        return all(d.finite(c) for d, c in self.enabled)

    def __bool__(self) -> bool:
        return bool(self.enabled)

    def to_mapping(self) -> dict[str, Any]:
        """The flat, JSON-safe form (what `from_mapping` reads back)."""
        out: dict[str, Any] = {}
        for declared, config in self.enabled:
            out.update(declared.to_mapping(config))
        return out


def _check_conflicts(enabled: tuple[tuple[Intervention, Any], ...]) -> None:
    """Refuse interventions that cannot run together (each declaration's `conflict`), in one line
    naming both (ValueError: HTTP 400 in a server, exit 2 on the command line)."""
    if len(enabled) < 2:
        return
    for declared, config in enabled:
        if declared.conflict is None:
            continue
        others = {d.name: c for d, c in enabled if d is not declared}
        for other in others:
            reason = declared.conflict(config, {other: others[other]})
            if reason:
                raise ValueError(f"`{declared.name}` and `{other}` cannot be combined in one request: {reason}")


def _rebuild(configs: dict[str, Any]) -> InterventionSet:
    return InterventionSet(**configs)


def request_mapping(settings: InterventionSet) -> dict[str, Any]:
    """The flat keys a request carries for `settings`, every intervention explicit.

    Interventions that are off are sent off (`tip_alpha: 0`, `nowait: 0`, ...), so that a server-wide
    default (`tip-decode serve --alpha 3`) never leaks into a request that does not ask for it.

    Example:
        >>> request_mapping(InterventionSet.from_mapping({"nowait": 1}))["tip_alpha"]
        0
    """
    out: dict[str, Any] = {}
    for declared in interventions():  # plan order, each intervention's keys together
        config = getattr(settings, declared.name)
        out.update(declared.to_mapping(config) if config is not None and declared.enabled(config) else declared.off_mapping())
    return out
