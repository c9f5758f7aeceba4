"""What the vLLM processor tests without an engine share: random requests, expected logits, and a
driver of Model Runner V2's interface.

- `World`: random requests over a real tokenizer (prompt facts, outputs, per-request interventions),
  the slow reference of tests/reference_interventions.py, and a token pool that hits the plans.
- `BaseStats`, `make_base`, `check_rows`, `restore`: a fixed set of raw logits rows that every step
  draws from, and the comparison of a processor's output with the reference.
- `Mrv2Batch`: Model Runner V2's side of a step, written from vLLM's own source
  (`vllm/v1/worker/gpu/`: `RequestState`, `input_batch.post_update`, the penalties and thinking-budget
  kernels): request slots in `LogitsProcRequestState`, the committed token history in
  `all_token_ids` up to `total_len`, and each step's `LogitsContext` (one row per request, or one per
  draft position under speculative decoding: `expanded_local_pos`, `input_ids`, `pos`). The
  processor is driven through the installed vLLM's own `LogitsProcRequestState` and `LogitsContext`.

vLLM's MRV2 buffers (`StagedWriteTensor`, `UvaBackedTensor`) need pinned memory, which a CPU-only
machine lacks, so the token history lives in plain tensors exposing the same `.gpu` / `.np`
attributes the interface documents (`HostAndDevice`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
from reference_interventions import Reference, Row, entropy
from vllm import SamplingParams

from tip_decode.core.interventions import InterventionSet, plan_for
from tip_decode.vllm import request_settings, server_settings


def fake_config(tokenizer_path: str, capacity: int, width: int, speculative: int = 0) -> SimpleNamespace:
    """The attributes of VllmConfig the processor reads (a real one needs a model on disk)."""
    return SimpleNamespace(
        scheduler_config=SimpleNamespace(max_num_seqs=capacity),
        model_config=SimpleNamespace(tokenizer=tokenizer_path, tokenizer_revision=None, trust_remote_code=False, get_vocab_size=lambda: width),
        reasoning_config=None,
        speculative_config=SimpleNamespace(num_speculative_tokens=speculative) if speculative else None,
    )


@dataclass
class Req:
    params: SamplingParams
    prompt: list[int]
    output: list[int]
    max_len: int
    settings: InterventionSet | None
    row: Row  # the reference's view: prompt facts, raw logits per position, restarts


class World:
    """Random requests over a real tokenizer, and their expected logits."""

    def __init__(self, tokenizer, rng: random.Random, request_args: list[dict]) -> None:
        self.rng = rng
        self.request_args = request_args
        self.default = server_settings()
        self.tokenizer = tokenizer
        self.reference = Reference(tokenizer)
        think = self.reference.markers
        pool: list[int] = []
        for args in request_args:
            settings = request_settings(SamplingParams(extra_args=args), self.default)
            if not settings:
                continue
            plan = plan_for(tokenizer, settings)
            for name, rule in zip(plan.names, plan.rules):
                if name in ("tip", "gated"):
                    pool += list(rule.vocabulary.token_ids[:6])
                    for m in rule.vocabulary.multi_token[:6]:
                        pool += [*m.prefix, m.completion]
                elif name == "nowait":
                    pool += list(rule.token_ids[:6])
                elif name == "cyclic":
                    pool += list(rule.token_ids)
                elif name == "budget":
                    pool += list(rule.word_ids) + list(rule.eos_ids)
                elif name == "thinkbrake":  # boundaries, written in one token and in two
                    pool += [i for i in tokenizer.encode("a.\n\nb x].\n\n", add_special_tokens=False) if i != tokenizer.unk_token_id] * 2
                elif name == "deepconf":
                    pool += [tokenizer.eos_token_id]
        self.neutral = [i for i in tokenizer.encode(" the cat. so H ok,\n\nthen 12 start goal steps", add_special_tokens=False) if i != tokenizer.unk_token_id]
        pool += self.neutral + [think.start_id, think.end_id] * 3
        self.pool = pool
        self.think = think

    def new_request(self) -> Req:
        rng = self.rng
        args = rng.choice(self.request_args)
        params = SamplingParams(max_tokens=64, extra_args=dict(args) if args else None)
        settings = request_settings(params, self.default)
        prompt = [rng.choice(self.pool) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.5:
            prompt.append(self.think.start_id)  # a chat template that ends inside an open think block
            prompt += rng.sample(self.neutral, rng.randint(0, 2))  # thinking already in the prompt
        opened = last_index(prompt, self.think.start_id) > last_index(prompt, self.think.end_id)
        thinking = len(prompt) - last_index(prompt, self.think.start_id) - 1 if opened else 0
        return Req(params, prompt, [], rng.randint(1, 22), settings if settings else None, Row(opened, thinking, logits={}))

    def next_token(self, forced: int | None = None) -> int:
        if forced is not None and self.rng.random() < 0.8:
            return forced
        return self.rng.choice(self.pool)

    def admit(self, waiting: list[Req], counts: dict[str, int]) -> Req:
        """A preempted request resumed with its output so far (half the time, if any), else a new one."""
        if waiting and self.rng.random() < 0.5:
            counts["resumed"] += 1
            req = waiting.pop(self.rng.randrange(len(waiting)))
            req.row.restarts.append(len(req.output))  # its state is rebuilt from the token history
            return req
        counts["added"] += 1
        return self.new_request()

    def touched(self, processor) -> torch.Tensor:
        """Every column any request's plan may write."""
        ids: set[int] = set()
        for args in self.request_args:
            settings = request_settings(SamplingParams(extra_args=args), self.default)
            if settings:
                ids.update(processor._groups.get(settings.structure).tables.token_ids)
        return torch.tensor(sorted(ids), dtype=torch.long)


def last_index(tokens: list[int], token: int) -> int:
    return max((i for i, t in enumerate(tokens) if t == token), default=-1)


def make_base(rows: int, width: int, world: World, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(rows, width, generator=generator) * 3
    # A penalised logit that is already -inf must stay -inf.
    base[0, world.pool[0]] = -math.inf
    # Half the rows "want" to end thinking: budget forcing and bans happen there.
    base[1::2, world.think.end_id] = base.max() + 1
    return base


class BaseStats:
    """Per base row: entropy and most likely token, computed once (the reference asks for them often)."""

    def __init__(self, base: torch.Tensor) -> None:
        self.entropy = [entropy(row) for row in base]
        self.top = base.argmax(dim=1).tolist()

    def record(self, req: Req, base_row: int, base: torch.Tensor, position: int | None = None) -> None:
        """`req` is sampled from `base[base_row]` at output position `position` (default: its next
        one); a repeat overwrites."""
        position = len(req.output) if position is None else position
        req.row.logits[position] = base[base_row]
        req.row.entropies[position] = self.entropy[base_row]
        req.row.tops[position] = self.top[base_row]
        # DeepConf's cached confidence of this position was read from the logits it replaces.
        req.row.confidences = {key: value for key, value in req.row.confidences.items() if key[0] != position}


def expected_row(world: World, req: Req, history: list[int], raw: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, int | None, bool]:
    """The reference's logits at `ids` for the token after `history`, from raw logits `raw`."""
    req.row.generated = history
    bias, forced, uncertain = world.reference.expected(req.settings, req.row, len(history))
    return Reference.apply(raw, ids, bias, forced), forced, uncertain


def compare(got: torch.Tensor, expected: torch.Tensor) -> list[int]:
    """Indices where two rows of the touched columns differ (bans and forcing exactly, values to 1e-4)."""
    close = torch.isclose(got, expected, atol=1e-4, rtol=0) | (got == expected)
    return (~close).nonzero().flatten().tolist()


def restore(work: torch.Tensor, base: torch.Tensor, touched: torch.Tensor, step: int) -> None:
    """Undo the step's writes; every 64 steps also prove that nothing outside the touched columns was written."""
    if step % 64 == 0:
        untouched = torch.ones(work.shape[1], dtype=torch.bool)
        untouched[touched] = False
        assert torch.equal(work[:, untouched], base[:, untouched]), f"step {step} wrote outside the plans' columns"
    work[:, touched] = base[:, touched]


# ----- Model Runner V2 -----


class HostAndDevice:
    """A per-slot buffer with the `.np` (host) and `.gpu` (device) views of vLLM's UvaBackedTensor."""

    def __init__(self, size, dtype=torch.int32) -> None:
        self.cpu = torch.zeros(size, dtype=dtype)
        self.np = self.cpu.numpy()
        self.gpu = self.cpu  # on a CPU-only machine the device view is the host tensor


def request_state(capacity: int, width: int, max_len: int):
    """The installed vLLM's own `LogitsProcRequestState` over plain host tensors."""
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcRequestState

    return LogitsProcRequestState(
        device=torch.device("cpu"),
        max_num_reqs=capacity,
        vocab_size=width,
        all_token_ids=HostAndDevice((capacity, max_len)),
        prompt_len=HostAndDevice(capacity),
        prefill_len=HostAndDevice(capacity),
        total_len=HostAndDevice(capacity),
    )


@dataclass
class Scheduled:
    """One request's rows in a step: its slot, its positions, the tokens fed, its drafts."""

    slot: int
    first_row: int
    positions: list[int]
    inputs: list[int]
    drafts: list[int] = field(default_factory=list)
    samples: bool = True  # False: a chunked-prefill step whose sampled token is discarded


class Mrv2Batch:
    """The committed token history of every slot, and the `LogitsContext` of a step, as MRV2 keeps them.

    A slot's `all_token_ids` holds the prompt and the committed output up to `total_len`; the first
    row of a request in decode sits at position `total_len - 1` and is fed the newest committed
    token, its draft rows at the following positions, fed the drafts (`input_ids` only: drafts
    are not committed). After sampling, the accepted drafts and the token sampled after them are
    committed (`post_update`).
    """

    def __init__(self, capacity: int, width: int, max_len: int) -> None:
        self.capacity = capacity
        self.rs = request_state(capacity, width, max_len)
        self.computed: dict[int, int] = {}  # slot -> tokens whose KV is computed (chunked prefill)

    def add(self, processor, slot: int, params, tokens: list[int], prompt_len: int) -> bool:
        """`add_request` of a new or resumed request (`tokens`: prompt plus output so far); what
        `add_request` answered (True: the processor may change the request's logits)."""
        rs = self.rs
        admitted = processor.add_request(slot, params)
        rs.all_token_ids.np[slot, : len(tokens)] = tokens
        rs.prompt_len.np[slot] = prompt_len
        rs.prefill_len.np[slot] = len(tokens)
        rs.total_len.np[slot] = len(tokens)
        self.computed[slot] = 0
        return admitted

    def total(self, slot: int) -> int:
        return int(self.rs.total_len.np[slot])

    def token(self, slot: int, position: int) -> int:
        return int(self.rs.all_token_ids.np[slot, position])

    def schedule(self, slot: int, first_row: int, rng: random.Random, drafts: list[int] | None = None, counts: dict | None = None) -> Scheduled:
        """The rows of `slot` this step: a (chunked) prefill row, or a decode row and its draft rows."""
        prefill = int(self.rs.prefill_len.np[slot])
        computed = self.computed[slot]
        if computed < prefill:  # (chunked) prefill of the prompt and, after preemption, the output so far
            chunk = rng.randint(1, prefill - computed)
            if counts is not None:
                counts["chunked"] += chunk < prefill - computed
            self.computed[slot] = computed + chunk
            position = computed + chunk - 1
            return Scheduled(slot, first_row, [position], [self.token(slot, position)], samples=computed + chunk >= prefill)
        drafts = list(drafts or [])
        position = self.total(slot) - 1
        return Scheduled(slot, first_row, [position + j for j in range(len(drafts) + 1)], [self.token(slot, position), *drafts], drafts)

    def context(self, scheduled: list[Scheduled]):
        """The installed vLLM's own `LogitsContext` of a step."""
        from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext

        mapping = np.array([s.slot for s in scheduled], dtype=np.int32)
        expanded = [s.slot for s in scheduled for _ in s.positions]
        local = [j for s in scheduled for j in range(len(s.positions))]
        return LogitsContext(
            expanded_idx_mapping=torch.tensor(expanded, dtype=torch.int32),
            idx_mapping=torch.from_numpy(mapping),
            idx_mapping_np=mapping,
            expanded_local_pos=torch.tensor(local, dtype=torch.int32),
            input_ids=torch.tensor([t for s in scheduled for t in s.inputs], dtype=torch.int32),
            pos=torch.tensor([p for s in scheduled for p in s.positions], dtype=torch.int64),
            seq_lens_upper_bound_np=np.array([s.positions[-1] + 1 for s in scheduled], dtype=np.int32),
        )

    def commit(self, slot: int, tokens: list[int]) -> None:
        """`post_update`: the accepted drafts and the token sampled after them join the history."""
        rs = self.rs
        total = self.total(slot)
        rs.all_token_ids.np[slot, total : total + len(tokens)] = tokens
        rs.total_len.np[slot] = total + len(tokens)


def verify(drafts: list[int], targets: list[int]) -> list[int]:
    """Rejection sampling's outcome: drafts are accepted while each equals the token sampled at the
    row before it; the token sampled at the first mismatch (or after the last draft) follows them."""
    committed: list[int] = []
    for j, target in enumerate(targets):
        if j < len(drafts) and drafts[j] == target:
            committed.append(target)
            continue
        committed.append(target)
        break
    return committed
