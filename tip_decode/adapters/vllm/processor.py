"""`ReasoningInterventions`: one vLLM logits processor for every intervention, on every model runner.

vLLM 0.32 and 0.33 have two model runners with two custom-processor interfaces; vLLM 0.34 has only
Model Runner V2's (see docs/vllm.md). The class subclasses the base classes the installed vLLM has
(`versions.py` finds them), tells the runners apart by its constructor's arguments, and keeps the
runner-specific bookkeeping in two mixins (`v1.py`, loaded only where that runner exists, and
`mrv2.py`). Both follow the same groups (`groups.py`): one plan, one table set and one per-row state
per distinct request structure.

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

from tip_decode.adapters.tokenizers import engine_tokenizer
from tip_decode.adapters.vllm.groups import Admitted, Groups, bias_is_finite
from tip_decode.adapters.vllm.mrv2 import MRV2Runner
from tip_decode.adapters.vllm.settings import (
    ENV_INTERVENTIONS,
    ENV_TOKENIZER,
    ENV_TRIGGERS,
    arguments_key,
    check_against_tokenizer,
    request_settings,
    server_settings,
    think_markers_from_config,
)
from tip_decode.adapters.vllm.versions import find_interfaces
from tip_decode.core.config import TIPConfig
from tip_decode.core.interventions import InterventionSet
from tip_decode.core.tracker import Admission, WarnOnce

INTERFACES = find_interfaces()  # ImportError naming the installed vLLM when it has no usable interface

if INTERFACES.v1 is not None:  # vLLM 0.32, 0.33: the V1 model runner exists too
    from tip_decode.adapters.vllm.v1 import V1Runner

    _RUNNERS: tuple[type, ...] = (V1Runner, MRV2Runner)
    _PROCESSOR_BASES: tuple[type, ...] = (INTERFACES.v1, INTERFACES.mrv2)
else:
    _RUNNERS = (MRV2Runner,)
    _PROCESSOR_BASES = (INTERFACES.mrv2,)

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsContext

logger = logging.getLogger(__name__)

_NUMPY_DTYPES = {torch.long: np.int64, torch.float32: np.float32, torch.bool: np.bool_}


class ReasoningInterventions(*_RUNNERS, *_PROCESSOR_BASES):  # type: ignore[misc]
    r"""Decoding-time reasoning interventions as a vLLM logits processor, on every model runner.

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
        if len(runner_args) == 2 and INTERFACES.v1 is not None:
            self._pin = bool(runner_args[1])
            device, capacity, width, state_rows = self._init_v1(vllm_config, *runner_args)
        elif len(runner_args) == 1:
            self._pin = False
            device, capacity, width, state_rows = self._init_mrv2(vllm_config, runner_args[0])
        else:
            expected = "(vllm_config, device, is_pin_memory) or (vllm_config, req_states)" if INTERFACES.v1 is not None else "(vllm_config, req_states)"
            raise TypeError(f"ThoughtSwitchPenalty is built by vLLM {INTERFACES.version} with {expected}, but got {1 + len(runner_args)} arguments")
        self.device, self.capacity, self.width = device, capacity, width
        self.default = server_settings()
        model = vllm_config.model_config
        self.tokenizer = engine_tokenizer(str(model.tokenizer), getattr(model, "tokenizer_revision", None), bool(getattr(model, "trust_remote_code", False)))
        self.think_markers = think_markers_from_config(vllm_config)
        type(self)._validation_tokenizer = str(model.tokenizer)
        self._groups = Groups(self.tokenizer, self.think_markers, width, device, capacity, self._pin and device.type != "cpu", state_rows)
        self._active = np.zeros(capacity, dtype=bool)  # row (V1) or slot (MRV2) -> tracked by this processor
        # Request arguments (by value and type) -> settings (with structure, group), or None: off.
        self._admission = Admission(self._decide, WarnOnce(logger, logging.ERROR), "interventions are off for a request whose arguments could not be used: %s")
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

    @classmethod
    def needs_output_token_ids(cls) -> bool:
        """True: the interventions of a step depend on the tokens generated so far.

        Upstream vLLM is adding this hook with a proposed default of False, under which async
        scheduling (the GPU default) would leave the newest output token a -1 placeholder when
        `apply` runs, and the state would advance on the wrong token. A class method, so that it
        answers whether vLLM asks the class (before building processors) or an instance.
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
        known, admitted = self._admission.cached(key)
        if not known:
            return self._admission.admit(key, params)
        if admitted is not None:
            group = self._groups.find(admitted.structure)
            if group is not admitted.group:
                try:
                    admitted.use(group if group is not None else self._groups.get(admitted.structure))  # evicted while idle: rebuilt
                except ValueError:  # pragma: no cover - the group was built from these settings before
                    return self._admission.admit(key, params)
        return admitted

    def _decide(self, params: Any) -> Admitted | None:
        """Admit arguments not seen before (ValueError / TypeError: they cannot be used)."""
        settings = request_settings(params, self.default) or None
        if settings is None:
            return None
        admitted = Admitted(settings, settings.structure, bias_is_finite(settings))
        admitted.use(self._groups.get(admitted.structure))
        return admitted

    @property
    def _settings_cache(self) -> dict[Any, Admitted | None]:
        return self._admission.cache

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
        if ctx is not None:
            return self._apply_v2(logits, ctx)
        if self.runner != "v1":
            raise TypeError("Model Runner V2 calls apply(logits, ctx) with its LogitsContext")
        return self._apply_v1(logits)  # type: ignore[attr-defined]


#: The original public name: the same class.
ThoughtSwitchPenalty = ReasoningInterventions
