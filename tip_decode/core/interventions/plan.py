"""Several interventions in one request: the request's settings, the plan built from them, its tables.

- `InterventionSet`: the frozen per-request configuration (one optional config per intervention),
  read from keyword arguments or from one flat mapping of namespaced keys (`tip_*`, `nowait_*`,
  `cyclic_*`, `budget_*`, `gated_*`), which is what vLLM's `vllm_xargs` allows.
- `InterventionPlan`: the rules of one *structure* (which interventions, with which
  vocabulary-defining settings) for one tokenizer; requests that differ only in numbers share a plan.
- `PlanTables`: a plan compiled for one logits width and device: the column layout of the per-row
  state, the union of the token ids the rules write, and the two step functions.

Combination rule (one logits write per step): the rules' biases are summed in plan order (tip,
nowait, cyclic, gated, budget) and added once; a ban is -inf and stays -inf whatever is added to it
(no rule adds +inf); a forced token's logit becomes `FORCED_LOGIT`, which overrides every bias and
every other logit of that row, unless the token arrived banned (-inf: a grammar, or another stage
of the engine, rules it out), in which case the row is left exactly as it arrived. A zero bias
leaves a logit bit for bit as it was.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from tip_decode.core.interventions import budget, cyclic, gated, nowait, tip
from tip_decode.core.interventions.arrays import NUMPY, ops_of
from tip_decode.core.interventions.base import (
    FORCED_LOGIT,
    NO_MARKER,
    AdvanceStep,
    ApplyStep,
    Kind,
    Layout,
    Rule,
    RuleTables,
    TokenizerInfo,
    parse_switch,
)
from tip_decode.core.recognizer import ENDED, REASONING, WAITING
from tip_decode.core.vocabulary import SwitchVocabulary, ThinkMarkers

#: Every intervention, in plan order (the order biases are summed in; the forcing one last).
KINDS: tuple[Kind, ...] = (tip.KIND, nowait.KIND, cyclic.KIND, gated.KIND, budget.KIND)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}


def namespace_of(key: str) -> Kind | None:
    """The intervention whose namespace `key` belongs to (`nowait`, `nowait_scope`, ...), or None."""
    for kind in KINDS:
        if (key == kind.name and kind.bare_key) or key.startswith(kind.name + "_"):
            return kind
    return None


def _parse_kind(kind: Kind, mapping: Mapping[str, Any], default: Any) -> Any:
    """One intervention's configuration from the request's keys over the server default, or None (off)."""
    values: dict[str, Any] = {}
    switch: bool | None = None
    for key, value in mapping.items():
        if not isinstance(key, str):
            continue
        if key == kind.name and kind.bare_key:
            switch = parse_switch(value, key)
        elif key.startswith(kind.name + "_"):
            if key not in kind.keys:
                known = ", ".join(([kind.name] if kind.bare_key else []) + sorted(kind.keys))
                raise ValueError(f"unknown {kind.name} argument `{key}` (known: {known})")
            field_name, parser = kind.keys[key]
            values[field_name] = parser(value, key)
    if switch is False:
        return None
    default_on = default is not None and kind.enabled(default)
    if kind.switch_keys is not None:
        turned_on = bool(switch) or any(k in mapping for k in kind.switch_keys)
    else:
        turned_on = bool(switch) or bool(values)
    if not (default_on or turned_on):
        return None
    base = default if default is not None else kind.paper
    config = replace(base, **values)
    if not kind.enabled(config):
        if switch and kind.name == "budget":
            raise ValueError("`budget` needs `budget_min` > 0 or `budget_max`")
        return None
    return config


@dataclass(frozen=True)
class InterventionSet:
    """The interventions of one request (None: off), built from keywords or from flat keys.

    Example:
        >>> from tip_decode.core.interventions import InterventionSet
        >>> s = InterventionSet.from_mapping({"tip_alpha": 3, "nowait": 1, "budget_max": 4000})
        >>> s.names
        ('tip', 'nowait', 'budget')
        >>> InterventionSet.from_mapping(s.to_mapping()) == s
        True
    """

    tip: Any = None
    nowait: Any = None
    cyclic: Any = None
    gated: Any = None
    budget: Any = None

    def __post_init__(self) -> None:
        for kind in KINDS:
            config = getattr(self, kind.name)
            if config is not None and not isinstance(config, kind.config_type):
                raise TypeError(f"`{kind.name}` has to be a {kind.config_type.__name__} or None, but is {type(config).__name__}")

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
        return cls(**{kind.name: _parse_kind(kind, mapping, getattr(default, kind.name)) for kind in KINDS})

    @staticmethod
    def has_keys(mapping: Mapping[str, Any] | None) -> bool:
        return bool(mapping) and any(isinstance(k, str) and namespace_of(k) is not None for k in mapping)

    @property
    def enabled(self) -> tuple[tuple[Kind, Any], ...]:
        return tuple((kind, c) for kind in KINDS if (c := getattr(self, kind.name)) is not None and kind.enabled(c))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(kind.name for kind, _ in self.enabled)

    @property
    def structure(self) -> tuple[tuple[str, Hashable], ...]:
        """What decides the plan: which interventions, with which vocabulary-defining settings."""
        return tuple((kind.name, kind.structure(c)) for kind, c in self.enabled)

    def __bool__(self) -> bool:
        return bool(self.enabled)

    def to_mapping(self) -> dict[str, Any]:
        """The flat, JSON-safe form (what `from_mapping` reads back)."""
        out: dict[str, Any] = {}
        for kind, config in self.enabled:
            out.update(kind.to_mapping(config))
        return out


# ----- plans and their tables -----


class InterventionPlan:
    """The rules of one structure for one tokenizer and think markers; compiles to `PlanTables`.

    Build it with `plan_for(tokenizer, interventions)` (cached) or `InterventionPlan.build`.
    """

    def __init__(self, markers: ThinkMarkers, structure: tuple[tuple[str, Hashable], ...], rules: Sequence[Rule]) -> None:
        self.markers = markers
        self.structure = structure
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._tables: dict[tuple[int, torch.device], PlanTables] = {}
        self._lock = threading.Lock()

    @classmethod
    def build(cls, info: TokenizerInfo, structure: tuple[tuple[str, Hashable], ...]) -> InterventionPlan:
        return cls(info.markers, structure, [KIND_BY_NAME[name].rule(part, info) for name, part in structure])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.structure)

    def rule(self, name: str) -> Rule:
        return self.rules[self.names.index(name)]

    def tables(self, width: int, device: torch.device | str) -> PlanTables:
        """The compiled tables for logits of `width` on `device` (built once, then cached)."""
        key = (int(width), torch.device(device))
        with self._lock:
            if key not in self._tables:
                self._tables[key] = PlanTables(self, *key)
            return self._tables[key]


_PLANS: weakref.WeakKeyDictionary[Any, dict[Any, InterventionPlan]] = weakref.WeakKeyDictionary()
_PLANS_LOCK = threading.Lock()


def plan_for(tokenizer: Any, interventions: InterventionSet | tuple, markers: ThinkMarkers | None = None) -> InterventionPlan:
    """The plan of `interventions` (an `InterventionSet` or its `.structure`) for `tokenizer`, cached.

    Plans are cached per tokenizer object (weakly) and per (structure, markers): vLLM builds one per
    distinct structure in use, and decoding a 150k-token vocabulary costs about a second.

    Raises:
        ValueError: a setting yields no token for this tokenizer, or needs think markers it lacks;
            the message names the key.
    """
    structure = interventions.structure if isinstance(interventions, InterventionSet) else tuple(interventions)
    key = (structure, markers)
    with _PLANS_LOCK:
        cached = _PLANS.get(tokenizer, {}).get(key)
    if cached is not None:
        return cached
    plan = InterventionPlan.build(TokenizerInfo.from_tokenizer(tokenizer, markers), structure)
    with _PLANS_LOCK:
        _PLANS.setdefault(tokenizer, {})[key] = plan
    return plan


def tip_only_plan(vocabulary: SwitchVocabulary, scope: str) -> InterventionPlan:
    """The plan of TIP alone over an already built switch vocabulary (its think markers included).

    For callers that hold a `SwitchVocabulary` rather than a tokenizer (`TIPLogitsProcessor(vocabulary)`,
    the abandonment detector). Not cached: build it once per vocabulary and keep it.
    """
    resolved = vocabulary.resolve_scope(scope)
    rule = tip.TipRule.from_vocabulary(vocabulary, resolved)
    return InterventionPlan(vocabulary.think, (("tip", (vocabulary.triggers, resolved)),), [rule])


class PlanTables:
    """One plan for one logits width and device: layout, union columns, step functions."""

    def __init__(self, plan: InterventionPlan, width: int, device: torch.device) -> None:
        self.plan = plan
        self.width = width
        self.device = device
        # The phase is tracked only when some rule reads it: a plan of "all"-scope rules treats the
        # whole response as reasoning and skips the marker tests on every step.
        tracked = plan.markers.available and any(r.scope == "think" for r in plan.rules)
        self.markers = plan.markers if tracked else ThinkMarkers()
        self.think_start = int(plan.markers.start_id) if tracked else NO_MARKER
        self.think_end = int(plan.markers.end_id) if tracked else NO_MARKER
        self.layout = Layout(pending=any(r.needs_pending for r in plan.rules))
        self.rules: tuple[RuleTables, ...] = tuple(r.compile(self.layout, width, device) for r in plan.rules)
        ids = sorted({i for r in self.rules for i in r.token_ids})
        column_of = {token: c for c, token in enumerate(ids)}
        self.token_ids = tuple(ids)
        self.columns = torch.tensor(ids, dtype=torch.long, device=device)
        for r in self.rules:
            r.index = torch.tensor([column_of[i] for i in r.token_ids], dtype=torch.long, device=device)
            r.identity = list(r.token_ids) == ids
        self.advances_floats = any(getattr(r, "advances_floats", False) for r in self.rules)
        # The host engine (arrays.py) for a CPU plan whose rules read no logits.
        self.host = device.type == "cpu" and not any(r.reads_logits for r in self.rules)
        layout = self.layout
        self.int_template = [layout.int_defaults[c] for c in range(layout.ints)]
        self.float_template = [layout.float_defaults[c] for c in range(layout.floats)]

    def rule(self, name: str) -> RuleTables:
        return self.rules[self.plan.names.index(name)]

    def row_values(self, interventions: Any) -> tuple[list[int], list[float]]:
        """The host values of one fresh row: defaults, then each rule's settings."""
        ints, floats = list(self.int_template), list(self.float_template)
        ints[self.layout.ACTIVE] = 1
        for name, table in zip(self.plan.names, self.rules):
            int_values, float_values = table.settings(getattr(interventions, name))
            for column, value in int_values.items():
                ints[column] = int(value)
            for column, value in float_values.items():
                floats[column] = float(value)
        return ints, floats

    # ----- per step -----

    def advance(
        self, ints: torch.Tensor, floats: torch.Tensor | None, tokens: torch.Tensor, in_place: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The state after one more token per row.

        Pure by default (returns new tensors). `in_place=True` writes the new state into `ints` and
        `floats` themselves (`InterventionState.update` on a view of its rows): every rule reads
        its inputs before writing its own columns, and the shared columns are written last.
        `floats` may be None only when no rule updates float columns per token (`advances_floats`).
        """
        layout = self.layout
        ops = ops_of(ints)
        if ops is NUMPY:
            tokens = np.asarray(tokens, dtype=np.int64)
        else:
            tokens = tokens.to(device=ints.device, dtype=torch.long)
        position = ints[:, layout.POSITION]
        tracked = self.think_start >= 0  # a Python constant of the plan: no data-dependent branch
        if tracked:
            phase = ints[:, layout.PHASE]
            reasoning = phase == REASONING
            opens = (phase == WAITING) & (tokens == self.think_start)
            closes = reasoning & (tokens == self.think_end)
        else:
            reasoning = opens = closes = None
        out_ints = ints if in_place else ops.copy(ints)
        out_floats = floats if in_place or floats is None or not self.advances_floats else ops.copy(floats)
        pending = (ints[:, layout.PENDING_AT] == position) if layout.PENDING_AT is not None else None
        step = AdvanceStep(
            layout=layout,
            ops=ops,
            ints=ints,
            floats=floats,
            out_ints=out_ints,
            out_floats=out_floats,
            tokens=tokens,
            position=position,
            reasoning=reasoning,
            opens=opens,
            closes=closes,
            pending=pending,
        )
        for rule in self.rules:
            rule.advance(step)
        if tracked:
            # POSITION, PHASE and REASONING_START are adjacent columns: one write for the three.
            following = position + 1
            new_phase = ops.where(opens, REASONING, ops.where(closes, ENDED, phase))
            new_start = ops.where(opens, following, ints[:, layout.REASONING_START])
            out_ints[:, layout.POSITION : layout.REASONING_START + 1] = ops.stack((following, new_phase, new_start), 1)
        elif in_place:
            position += 1  # a view of the POSITION column
        else:
            out_ints[:, layout.POSITION] = position + 1
        return out_ints, out_floats

    def contribute(self, ints: torch.Tensor, floats: torch.Tensor, full: Any) -> ApplyStep:
        """Every rule's bias and forcing for the next token (rows of `ints` are the logits rows
        `full()` returns); torch tensors or numpy arrays (the host engine)."""
        step = ApplyStep(layout=self.layout, ops=ops_of(ints), ints=ints, floats=floats, columns=len(self.token_ids), full=full)
        for rule in self.rules:
            rule.contribute(step)
        return step

    @staticmethod
    def combine(sub: torch.Tensor, bias: torch.Tensor | None, forced: torch.Tensor | None) -> torch.Tensor:
        """The new values of the plan's columns `sub`: a step's biases added once, then its forcing
        (`ApplyStep.bias` and `.forced`, as torch tensors).

        A row whose forced token arrived as -inf is returned as it arrived: forcing it would revive
        a token another stage banned (a grammar mask), and leaving the rest of our edits would
        steer a row whose decision was to force.
        """
        out = sub
        if bias is not None:
            # Rules write -0.0 where they add nothing, and x + (-0.0) is x bit for bit (also for
            # -0.0 and -inf), so no mask is needed to keep untouched logits exact.
            # A ban (-inf) wins: on a +inf logit the sum would be NaN.
            bias = bias.to(sub.dtype)
            out = torch.where(torch.isneginf(bias), bias, sub + bias)
        if forced is not None:
            columns = torch.arange(sub.shape[1], device=sub.device)
            value = torch.full((), FORCED_LOGIT, dtype=sub.dtype, device=sub.device)
            out = torch.where(columns[None, :] == forced[:, None], value, out)
            arrived = sub.gather(1, forced.clamp(min=0)[:, None]).squeeze(1)
            blocked = (forced >= 0) & torch.isneginf(arrived)
            out = torch.where(blocked[:, None], sub, out)
        return out
