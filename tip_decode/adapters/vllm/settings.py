"""Per-request settings in vLLM: server defaults, request arguments, admission checks, think markers.

A request's interventions come from its flat `extra_args` (`vllm_xargs` from an OpenAI client) over
the server-wide default, which `tip-decode serve` passes in environment variables: the original TIP
ones (`TIP_DECODE_ALPHA`, `_BETA`, `_TRIGGERS`, `_SCOPE`) and `TIP_DECODE_INTERVENTIONS`, a JSON
object of flat keys for the rest (`{"nowait": 1}`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from tip_decode.adapters.tokenizers import engine_tokenizer
from tip_decode.core.config import TIPConfig
from tip_decode.core.interventions import InterventionSet, plan_for
from tip_decode.core.interventions.plan import namespace_of

# The server defaults are shared with the SGLang adapter; kept importable from here.
from tip_decode.core.server_defaults import (  # noqa: F401
    ENV_ALPHA,
    ENV_BETA,
    ENV_INTERVENTIONS,
    ENV_SCOPE,
    ENV_TOKENIZER,
    ENV_TRIGGERS,
    server_default,
    server_settings,
)
from tip_decode.core.vocabulary import ThinkMarkers

logger = logging.getLogger(__name__)


def request_config(sampling_params: Any, default: TIPConfig) -> TIPConfig:
    """The request's TIP configuration: its `tip_*` extra args over the server default."""
    extra = getattr(sampling_params, "extra_args", None) or {}
    return TIPConfig.from_mapping(extra, default=default)


def request_settings(sampling_params: Any, default: InterventionSet) -> InterventionSet:
    """The request's interventions: its namespaced extra args over the server default.

    vLLM's own `thinking_token_budget` is the maximum thinking length where the engine has it: a
    request may combine it with `budget_min` (and `budget_word`), and `budget_max` must then agree
    with it. The budget then takes it as its maximum, so that at that length both force the same
    end marker (vLLM forces after the processors; a word forced there would tie with it).

    Raises:
        ValueError: a bad or unknown key, or a budget that contradicts `thinking_token_budget`.
    """
    extra = getattr(sampling_params, "extra_args", None) or {}
    settings = InterventionSet.from_mapping(extra, default=default)
    vllm_budget = getattr(sampling_params, "thinking_token_budget", None)
    budget = settings.budget
    if vllm_budget is not None and budget is not None:
        if budget.max is not None and budget.max != vllm_budget:
            raise ValueError(f"`budget_max` has to equal `thinking_token_budget` ({vllm_budget}) when both are set, but is {budget.max}")
        if budget.min > vllm_budget:
            raise ValueError(f"`budget_min` has to be at most `thinking_token_budget` ({vllm_budget}), but is {budget.min}")
        if budget.max is None:
            settings = settings.replace(budget=replace(budget, max=int(vllm_budget)))
    return settings


def vocabulary_restricted(sampling_params: Any) -> bool:
    """Another stage of vLLM may leave only a few of this request's tokens allowed before the processor
    runs: a grammar (structured outputs) or `allowed_token_ids`. Such rows are written with
    `keep_alive` (this processor's bans never remove a row's last finite logit). Masks of single
    tokens (`bad_words`, `min_tokens`, a -inf `logit_bias`) cannot, with our bans, empty a row: they
    need no such check (a forced token they ban is left alone for every request)."""
    if sampling_params is None:
        return False
    return any(getattr(sampling_params, name, None) for name in ("structured_outputs", "guided_decoding", "allowed_token_ids"))


_NO_ARGUMENTS: tuple[Any, ...] = ((), ("NoneType", None))


def arguments_key(sampling_params: Any) -> tuple[Any, ...] | None:
    """A hashable key of everything `request_settings` reads from a request, or None when a value
    cannot be hashed (such a request is parsed every time).

    Each value carries its type: True == 1 == 1.0 and they hash alike, but validate differently
    (`tip_alpha: true` is refused, `tip_alpha: 1` is not).
    """
    extra = getattr(sampling_params, "extra_args", None)
    budget = getattr(sampling_params, "thinking_token_budget", None)
    if not extra and budget is None:
        return _NO_ARGUMENTS  # the usual request without keys: no sorting or hashing per admission
    extra = extra or {}
    try:
        items = sorted((k, _typed(v)) for k, v in extra.items() if isinstance(k, str) and namespace_of(k) is not None)
        key = (tuple(items), _typed(budget))
        hash(key)
    except TypeError:
        return None
    return key


def _typed(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_typed(v) for v in value))
    return (type(value).__name__, value)


# ----- think markers -----


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


def check_against_tokenizer(settings: InterventionSet, tokenizer_path: str | None) -> None:
    """Vocabulary-dependent checks (a trigger with no token, 'think' scope without markers, ...).

    The plan is cached per tokenizer and structure, so after the first request of a structure this
    is a dictionary lookup.
    """
    if settings and tokenizer_path:
        plan_for(engine_tokenizer(tokenizer_path), settings)
