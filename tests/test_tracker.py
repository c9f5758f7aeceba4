"""The engine-neutral request tracker (`tip_decode.core.tracker`) against the slow reference.

Prompt facts are checked against a literal reading of the markers the vocabulary oracle finds (not
the library's own), on every shared tokenizer, and against the device form `think_prompt_state`
and the recognizer. The bookkeeping pieces together -- admission from flat keys, groups by
structure, slots that grow, rows arriving and leaving mid-stream, row indices -- drive real
`InterventionState`s whose logits must equal the reference's at every step, as an engine adapter
would drive them.
"""

from __future__ import annotations

import logging
import random

import pytest
import torch
from conftest import TOKENIZER_NAMES, load_hf_tokenizer
from reference_interventions import Reference, Row
from test_interventions import combos, token_pool

from tip_decode.core.interventions import FORCED_LOGIT, InterventionSet, plan_for, think_prompt_state
from tip_decode.core.interventions.slots import SlotGroup, apply_all
from tip_decode.core.recognizer import prompt_ends_in_open_think
from tip_decode.core.tracker import MAX_IDLE_GROUPS, Admission, GroupCache, WarnOnce, prompt_facts, row_index
from tip_decode.core.vocabulary import ThinkMarkers

logger = logging.getLogger("test_tracker")


def literal_facts(prompt: list[int], start: int | None, end: int | None) -> tuple[bool, int]:
    """Open when the last start marker comes after the last end marker; tokens after it."""
    if start is None:
        return False, 0
    last_start = max((i for i, t in enumerate(prompt) if t == start), default=-1)
    last_end = max((i for i, t in enumerate(prompt) if t == end), default=-1)
    if last_start > last_end:
        return True, len(prompt) - last_start - 1
    return False, 0


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_prompt_facts_match_a_literal_reading_of_the_oracles_markers(name):
    tokenizer = load_hf_tokenizer(name)
    markers = Reference(tokenizer).markers
    start, end = markers.start_id, markers.end_id
    text = tokenizer.encode(" Solve 12 x 3. Let me see", add_special_tokens=False)
    pieces = [[], text]
    if markers.available:
        pieces += [
            text + [start],
            text + [start] + text,
            [start] + text + [end] + text,
            [start] + text + [end] + [start] + text[:3],
            [end] + [start],
            [start, end],
            [start],
        ]
    for prompt in pieces:
        want = literal_facts(prompt, start, end)
        got = prompt_facts(start if start is not None else -1, end if end is not None else -1, prompt)
        assert got == want, (name, prompt)
        assert prompt_ends_in_open_think(prompt, markers if markers.available else ThinkMarkers(None, None)) == want[0]
        if prompt and markers.available:
            opened, thinking = think_prompt_state(torch.tensor([prompt]), start, end)
            assert (bool(opened[0]), int(thinking[0])) == want
        if start is not None:  # a list, a tuple and a numpy array read alike
            assert prompt_facts(start, end, tuple(prompt)) == want


def test_row_index_is_a_view_only_for_consecutive_ascending_rows():
    assert row_index([]) is None
    assert row_index([3, 4, 5]) == slice(3, 6)
    assert row_index([4]) == slice(4, 5)
    assert row_index([0, 2, 1, 3]) == [0, 2, 1, 3]  # first and last alone would say "consecutive"
    assert row_index([0, 2, 1, 3], ascending=True) == slice(0, 4)  # the caller's promise
    assert row_index([5, 4]) == [5, 4]


def test_warn_once_logs_each_message_once_and_stays_bounded(caplog):
    warn = WarnOnce(logger, limit=3)
    with caplog.at_level(logging.WARNING, logger="test_tracker"):
        for _ in range(3):
            warn("bad %s", "x")
        assert caplog.text.count("bad x") == 1
        for i in range(5):
            warn("other %d", i)
    assert len(warn.seen) <= 3


def test_group_cache_drops_only_idle_groups_beyond_the_bound():
    built: list[int] = []
    members: dict[int, int] = {}

    def build(key):
        built.append(key)
        members[key] = 0
        return key

    cache = GroupCache(build, lambda key: members[key] == 0)
    members_key = 1000
    cache.get(members_key)
    members[members_key] = 1  # in use: never dropped
    for key in range(3 * MAX_IDLE_GROUPS):
        assert cache.get(key) == key
        assert cache.get(key) == key  # built once while kept
    idle = [k for k in cache.by_key if members[k] == 0]
    assert len(idle) == MAX_IDLE_GROUPS and idle == list(range(2 * MAX_IDLE_GROUPS, 3 * MAX_IDLE_GROUPS))  # the newest kept
    assert members_key in cache.by_key
    assert built.count(0) == 1
    cache.get(0)  # dropped while idle: rebuilt
    assert built.count(0) == 2


def test_admission_decides_once_per_arguments_and_turns_bad_ones_off(caplog):
    calls: list[dict] = []

    def decide(arguments):
        calls.append(arguments)
        return InterventionSet.from_mapping(arguments) or None

    admission = Admission(decide, WarnOnce(logger), "off: %s", limit=4)
    with caplog.at_level(logging.WARNING, logger="test_tracker"):
        for _ in range(3):
            key = ("tip_alpha", 3.0)
            known, decided = admission.cached(key)
            if not known:
                decided = admission.admit(key, {"tip_alpha": 3.0})
            assert decided is not None and decided.names == ("tip",)
            assert admission.admit(("bad",), {"tip_alpha": "x"}) is None
    assert len(calls) == 1 + 3  # the good arguments once; the bad ones each time they are admitted
    assert caplog.text.count("tip_alpha") == 1
    assert admission.cached(("bad",)) == (True, None)
    assert admission.admit(None, {}) is None  # arguments that cannot be keyed are not remembered
    assert None not in admission.cache
    for i in range(6):
        admission.admit(("n", i), {"nowait": 1})
    assert len(admission.cache) <= 4


@pytest.mark.parametrize("name", ["qwen3", "deepseek-r1-distill-llama"])
def test_tracked_requests_equal_the_reference(name):
    """Requests of mixed settings arrive and leave over a stream of steps; each is admitted from flat
    keys, grouped by structure, given a slot (`SlotGroup`: slots grow), started from its prompt's facts and fed
    its newest token every step. Every step's logits of every live request equal the reference's."""
    tokenizer = load_hf_tokenizer(name)
    reference = Reference(tokenizer)
    markers = reference.markers
    width = len(tokenizer) + 5
    rng = random.Random(7)
    generator = torch.Generator().manual_seed(7)
    choices = [s.to_mapping() for s in combos(markers.available)] + [{"tip_alpha": "not a number"}, {}]

    class Group(SlotGroup):
        def __init__(self, structure):
            plan = plan_for(tokenizer, structure)
            super().__init__(structure, plan.tables(width, "cpu"), capacity=2)
            self.pool = token_pool(plan, tokenizer, reference)

    groups = GroupCache(Group, lambda group: group.members == 0)

    def decide(arguments):
        settings = InterventionSet.from_mapping(arguments)
        if not settings:
            return None
        return settings, groups.get(settings.structure)

    admission = Admission(decide, WarnOnce(logger), "off: %s")
    prompt_text = tokenizer.encode(" How many primes are below 30? Let me count", add_special_tokens=False)
    live: list[dict] = []  # each: settings, group, slot, row (reference), prompt facts
    checked = forced_steps = 0
    for t in range(40):
        if t % 3 == 0 or not live:  # arrivals
            for _ in range(rng.randint(1, 3)):
                arguments = rng.choice(choices)
                key = tuple(sorted((k, repr(v)) for k, v in arguments.items()))
                known, decided = admission.cached(key)
                if not known:
                    decided = admission.admit(key, arguments)
                if decided is None:
                    continue
                settings, group = decided
                if group is not groups.find(settings.structure):  # dropped while idle since it was decided
                    group = groups.get(settings.structure)
                prompt = list(prompt_text)
                if markers.available and rng.random() < 0.6:
                    prompt += [markers.start_id] + prompt_text[: rng.randint(0, 4)]
                opened, thinking = prompt_facts(group.tables.think_start, group.tables.think_end, prompt)
                slot = group.slots.take()
                group.state.start_rows([slot], [settings], [opened], [thinking])
                # The reference row reads the prompt itself, with the oracle's markers.
                expected_row = Row(*literal_facts(prompt, markers.start_id, markers.end_id))
                live.append({"settings": settings, "group": group, "slot": slot, "row": expected_row})
        if t % 5 == 4 and len(live) > 1:  # a request leaves
            gone = live.pop(rng.randrange(len(live)))
            gone["group"].slots.release(gone["slot"])
        by_group: dict[int, list[dict]] = {}
        for request in live:
            by_group.setdefault(id(request["group"]), []).append(request)
        for members in by_group.values():
            group = members[0]["group"]
            slots = [m["slot"] for m in members]
            index = row_index(slots)
            rows = index if isinstance(index, slice) else torch.tensor(index)
            raw = torch.randn(len(members), width, generator=generator) * 3
            for b, member in enumerate(members):
                if markers.available and rng.random() < 0.35:
                    raw[b, markers.end_id] = raw[b].max() + 1.0
                member["row"].logits.append(raw[b].clone())
            ids = group.tables.columns.tolist()
            out = group.state.apply(raw.clone(), rows=rows)
            tokens = []
            for b, member in enumerate(members):
                step = len(member["row"].generated)
                bias, forced, uncertain = reference.expected(member["settings"], member["row"], step)
                if not uncertain:
                    want = reference.apply(raw[b], ids, bias, forced)
                    torch.testing.assert_close(out[b, group.tables.columns], want, atol=1e-4, rtol=0, msg=lambda m, t=t: f"{name} step {t}: {m}")
                    checked += 1
                    forced_steps += forced is not None
                is_forced = (out[b, group.tables.columns] == FORCED_LOGIT).nonzero().flatten().tolist()
                token = ids[is_forced[0]] if is_forced and rng.random() < 0.9 else rng.choice(group.pool)
                tokens.append(token)
                member["row"].generated.append(token)
            group.state.update(torch.tensor(tokens), rows)
    assert checked > 100
    if markers.available:
        assert forced_steps > 0
    assert max(g.slots.capacity for g in groups) > 2  # slots grew past their first capacity


def test_apply_all_writes_every_group_or_none():
    """Several groups written into one logits tensor: all of them, or (one failing) none."""
    tokenizer = load_hf_tokenizer("qwen3")
    width = len(tokenizer)
    groups = []
    for settings in (
        InterventionSet.from_mapping({"tip_alpha": "inf", "tip_beta": 9, "tip_scope": "all"}),
        InterventionSet.from_mapping({"nowait": 1, "nowait_scope": "all"}),
    ):
        group = SlotGroup(settings.structure, plan_for(tokenizer, settings.structure).tables(width, "cpu"), capacity=2)
        group.state.start_rows([group.slots.take()], [settings], [False], [0])
        groups.append(group)
    logits = torch.randn(2, width)
    before = logits.clone()
    first, second = (torch.tensor([0]), torch.tensor([0])), (slice(0, 1), slice(1, 2))
    apply_all(logits, [(groups[0].state, *first), (groups[1].state, *second)])
    assert logits[0].isinf().any() and logits[1].isinf().any()  # both written
    want = before.clone()
    groups[0].state.apply(want, rows=torch.tensor([0]), logit_rows=torch.tensor([0]))
    groups[1].state.apply(want, rows=slice(0, 1), logit_rows=slice(1, 2))
    assert torch.equal(logits, want)
    logits = before.clone()
    with pytest.raises(IndexError):  # the second write's rows are not in the logits: the first is undone
        apply_all(logits, [(groups[0].state, *first), (groups[1].state, slice(0, 1), torch.tensor([5]))])
    assert torch.equal(logits, before)
