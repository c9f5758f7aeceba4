"""Sample the demo model on held-out problems and score it (used by training and the tests).

The demo command measures through the comparison harness; this module is the small, direct check
that the training script records in the model's metadata and that the tests hold the shipped
model to: accuracy, how often the model switches, and whether its walks follow the task's rule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tip_decode.core.config import TIPConfig
from tip_decode.demo.task import EOS, Problem, check_trace, parse_answer

logger = logging.getLogger(__name__)

#: Generation settings of the demo: the model's own distribution (temperature 1), because its
#: switching habit is a probability that greedy decoding would hide.
DEMO_MAX_NEW_TOKENS = 160
DEMO_TEMPERATURE = 1.0
DEMO_TRIGGERS = ("alternatively", "wait")


@dataclass(frozen=True)
class DemoScore:
    """Aggregate over one batch of sampled responses."""

    problems: int
    accuracy: float
    answered: float
    switches_per_response: float
    valid_walks: float
    mean_tokens: float


def sample(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    tip: TIPConfig | None = None,
    max_new_tokens: int = DEMO_MAX_NEW_TOKENS,
    seed: int = 0,
    batch_size: int = 256,
) -> list[list[int]]:
    """Generated token ids (prompt and padding removed, eos kept) for every problem."""
    import torch

    from tip_decode.hf import TIPLogitsProcessor

    tokenizer.padding_side = "left"
    out: list[list[int]] = []
    torch.manual_seed(seed)
    for first in range(0, len(problems), batch_size):
        chunk = problems[first : first + batch_size]
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p.prompt_text()}], tokenize=False, add_generation_prompt=True) for p in chunk]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        processors = []
        if tip is not None and tip.enabled:
            processors.append(TIPLogitsProcessor.from_config(tokenizer, tip))
        with torch.no_grad():
            generated = model.generate(
                **batch,
                do_sample=True,
                temperature=DEMO_TEMPERATURE,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                logits_processor=processors,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        width = batch["input_ids"].shape[1]
        for row in generated[:, width:].tolist():
            ids = []
            for token in row:
                if token == tokenizer.pad_token_id:
                    break
                ids.append(token)
                if token == tokenizer.eos_token_id:
                    break
            out.append(ids)
    return out


def score(tokenizer: Any, problems: Sequence[Problem], responses: Sequence[Sequence[int]]) -> DemoScore:
    """Accuracy, answer rate, switch words per response and rule-following of sampled responses."""
    from tip_decode.core.vocabulary import SwitchVocabulary

    switch_ids = set(SwitchVocabulary.from_tokenizer(tokenizer, DEMO_TRIGGERS).token_ids)
    correct = answered = switches = valid = tokens = 0
    for problem, ids in zip(problems, responses):
        text = tokenizer.decode(ids, skip_special_tokens=True)
        answer = parse_answer(text)
        answered += answer is not None
        correct += answer == problem.answer
        switches += sum(1 for t in ids if t in switch_ids)
        tokens += len(ids)
        words = tokenizer.convert_ids_to_tokens([t for t in ids if t != tokenizer.eos_token_id])
        valid += answer is not None and not check_trace(problem, words)
    n = max(len(problems), 1)
    return DemoScore(len(problems), correct / n, answered / n, switches / n, valid / n, tokens / n)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (for stated minimums that allow for noise)."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (centre - half, centre + half)


__all__ = ["DEMO_MAX_NEW_TOKENS", "DEMO_TRIGGERS", "DemoScore", "sample", "score", "wilson_interval", "EOS"]
