"""Prompt building: the standard reasoning instruction through the model's chat template."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

from tip_decode.grading import CHOICE_LETTERS
from tip_decode.harness.preflight import InputError
from tip_decode.harness.problems import Problem

#: The user-message template: the instruction DeepSeek-R1 and Qwen reasoning models are evaluated with.
DEFAULT_TEMPLATE = "{question}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
#: For multiple choice, the options follow the question and the answer is a letter.
DEFAULT_CHOICE_TEMPLATE = "{question}\n\n{choices}\n\nPlease reason step by step, and put the letter of your final answer within \\boxed{{}}."

PromptBuilder = Callable[[Problem], str]


def format_choices(choices: tuple[str, ...]) -> str:
    return "\n".join(f"{CHOICE_LETTERS[i]}) {option}" for i, option in enumerate(choices))


def check_template(template: str) -> None:
    """`InputError` unless `template` is a format string that uses `{question}` and no other field but `{choices}`."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise InputError(f"--template {template!r} is not a format string ({err}); write literal braces as {{{{ and }}}}") from None
    unknown = sorted(f for f in fields if f not in ("question", "choices"))
    if unknown:
        raise InputError(
            f"--template {template!r} uses {', '.join('{' + f + '}' for f in unknown)}; only {{question}} and {{choices}} exist (write literal braces as {{{{ and }}}})"
        )
    if "question" not in fields:
        raise InputError(f"--template {template!r} has no {{question}}: every prompt would be the same text without the problem")


def user_message(problem: Problem, template: str | None = None) -> str:
    """The user message for `problem`: `template` formatted with `{question}` and `{choices}`."""
    if template is None:
        template = DEFAULT_CHOICE_TEMPLATE if problem.choices else DEFAULT_TEMPLATE
    choices = format_choices(problem.choices) if problem.choices else ""
    try:
        return template.format(question=problem.question, choices=choices)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"`template` has to be a format string using only {{question}} and {{choices}} (write literal braces as {{{{ }}}}), but {template!r} fails: {err!r}"
        ) from None


def chat_prompt_builder(tokenizer: Any, system: str | None = None, template: str | None = None) -> PromptBuilder:
    """A prompt builder that renders the user message through `tokenizer`'s chat template.

    A tokenizer without a chat template gets the system text and user message joined by blank lines.
    The builder carries `system` and `template` as attributes (run.json records them).
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))

    def build(problem: Problem) -> str:
        content = user_message(problem, template)
        if not has_template:
            return f"{system}\n\n{content}\n\n" if system else f"{content}\n\n"
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # What made the prompts, for run.json (a rerun into the folder must build the same ones).
    build.system = system  # type: ignore[attr-defined]
    build.template = template  # type: ignore[attr-defined]
    return build
