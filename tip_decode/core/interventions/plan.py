"""A request's interventions as a plan, and the plan compiled to tables (the torch side).

- `InterventionPlan`: the rules of one *structure* (`InterventionSet.structure`: which interventions,
  with which vocabulary-defining settings) for one tokenizer; requests that differ only in numbers
  share a plan.
- `PlanTables`: a plan compiled for one logits width and device: the column layout of the per-row
  state, the union of the token ids the rules write, and the two step functions.

Combination rule (one logits write per step): the rules' biases are summed in plan order (each
declaration's `order`: tip, nowait, cyclic, gated, budget) and added once; a ban is -inf and stays
-inf whatever is added to it (no rule adds +inf); a forced token's logit becomes `FORCED_LOGIT`, which
overrides every bias and every other logit of that row, unless the token arrived banned (-inf: a
grammar, or another stage of the engine, rules it out), in which case the row is left exactly as it
arrived. A zero bias leaves a logit bit for bit as it was.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from tip_decode.core.interventions import registry, tip
from tip_decode.core.interventions.arrays import NUMPY, TableBuilder, ops_of
from tip_decode.core.interventions.base import (
    FORCED_LOGIT,
    NO_MARKER,
    AdvanceStep,
    ApplyStep,
    Layout,
    Rule,
    RuleTables,
    TokenizerInfo,
)
from tip_decode.core.interventions.settings import InterventionSet, namespace_of  # noqa: F401 (namespace_of: kept importable from here)
from tip_decode.core.recognizer import ENDED, REASONING, WAITING
from tip_decode.core.vocabulary import SwitchVocabulary, ThinkMarkers


def build_rule(name: str, part: Hashable, info: TokenizerInfo) -> Rule:
    """The rule of one intervention of a structure, after the checks its declaration asks for."""
    declared = registry.intervention(name)
    if declared.needs_think_markers and not info.markers.available:
        keys = " / ".join(f"`{key}`" for key in declared.needs_think_markers)
        verb = "needs" if len(declared.needs_think_markers) == 1 else "need"
        raise ValueError(f"{keys} {verb} single-token think markers, and this tokenizer has none")
    return declared.rule(part, info)


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
        return cls(info.markers, structure, [build_rule(name, part, info) for name, part in structure])

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
        builder = TableBuilder(device)
        self.rules: tuple[RuleTables, ...] = tuple(r.compile(self.layout, width, builder) for r in plan.rules)
        ids = sorted({i for r in self.rules for i in r.token_ids})
        column_of = {token: c for c, token in enumerate(ids)}
        self.token_ids = tuple(ids)
        self.columns = torch.tensor(ids, dtype=torch.long, device=device)
        for r in self.rules:
            r.plan_columns = tuple(column_of[i] for i in r.token_ids)
            r.index = torch.tensor(r.plan_columns, dtype=torch.long, device=device)
            r.identity = list(r.token_ids) == ids
        self.advances_floats = any(getattr(r, "advances_floats", False) for r in self.rules)
        #: Some rule reads the whole logits rows (gated's entropy, budget's forced word), not only the
        #: plan's columns: a step run on static buffers (a CUDA graph) has to copy them in.
        self.reads_logits = any(r.reads_logits for r in self.rules)
        # The host engine (arrays.py) for a CPU plan whose rules read no logits.
        self.host = device.type == "cpu" and not self.reads_logits
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
