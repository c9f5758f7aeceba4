"""The demo's synthetic reasoning task ("step search") and its trace generator.

A problem gives a start number, a goal number and a few candidate step sizes. Counting modulo
`MODULUS` from the start in steps of `d` reaches the goal for exactly one candidate (the answer);
for every other candidate the walk cycles back to the start without ever meeting the goal (a dead
end). A trace writes one walk per thought, one step at a time ("5 +7 12 +7 19 ..."). The writer
abandons the current walk with a fixed per-step hazard that does not depend on whether the walk
is the promising one, and always abandons a walk that has come back to its start. A walk that
meets the goal ends the think block, and the answer (the step size) is boxed.

The task models underthinking because a promising walk needs many steps and the writer often
leaves it before it arrives; it models the cost of persisting because a dead-end walk, kept alive,
spends tokens until it cycles. See docs/demo.md for the full design and its limits.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

#: Walks count modulo this number. 36 has many divisors, so dead ends (steps sharing a factor with
#: 36 that the goal distance lacks) are plentiful and their cycles have several lengths.
MODULUS = 36
#: Candidate step sizes a problem may offer.
STEP_SIZES = tuple(range(1, 13))
SWITCH_WORDS = ("Alternatively", "Wait")
THINK_START, THINK_END = "<think>", "</think>"
BOX_OPEN, BOX_CLOSE = "\\boxed{", "}"
USER, ASSISTANT, EOS, PAD, UNK = "<|user|>", "<|assistant|>", "<|end|>", "<|pad|>", "<|unk|>"


def step_token(step: int) -> str:
    return f"+{step}"


@dataclass(frozen=True)
class TaskSettings:
    """Knobs of the problem distribution and of the trace writer.

    Args:
        candidates: step sizes offered per problem (one leads to the goal, the rest are dead ends).
        min_steps / max_steps: how many steps the promising walk needs to reach the goal.
        hazard: probability that the writer abandons the current walk after any step, whatever
            the walk; this is what the model learns as its habit of switching.
        notice: probability that the writer abandons a walk that is back at its start (a dead end
            that has proved itself); below 1 so that a strong penalty can keep a dead end looping.
        max_trace_tokens: traces longer than this are not used for training (keeps sequences short).
    """

    candidates: int = 3
    min_steps: int = 4
    max_steps: int = 16
    hazard: float = 0.12
    notice: float = 0.5
    max_trace_tokens: int = 240

    def __post_init__(self) -> None:
        if not isinstance(self.candidates, int) or not 2 <= self.candidates <= 6:
            raise ValueError(f"`candidates` has to be an integer in 2..6, but is {self.candidates!r}")
        if not 1 <= self.min_steps <= self.max_steps < MODULUS:
            raise ValueError(
                f"`min_steps` and `max_steps` have to satisfy 1 <= min_steps <= max_steps < {MODULUS}, but are {self.min_steps!r} and {self.max_steps!r}"
            )
        if not 0.0 <= self.hazard < 1.0:
            raise ValueError(f"`hazard` has to be in [0, 1), but is {self.hazard!r}")
        if not 0.0 < self.notice <= 1.0:
            raise ValueError(f"`notice` has to be in (0, 1], but is {self.notice!r}")


@dataclass(frozen=True)
class Problem:
    """One step-search problem. `answer` is the only candidate whose walk reaches `goal`."""

    start: int
    goal: int
    candidates: tuple[int, ...]
    answer: int

    def prompt_text(self) -> str:
        """The problem statement in the demo tokenizer's words."""
        steps = " ".join(step_token(d) for d in self.candidates)
        return f"start {self.start} goal {self.goal} steps {steps}"

    def steps_to_goal(self, step: int) -> int | None:
        """Steps the walk with `step` needs to reach the goal, or None if it is a dead end."""
        return steps_to_goal(self.start, self.goal, step)


def steps_to_goal(start: int, goal: int, step: int) -> int | None:
    """Walk from `start` in steps of `step` (mod MODULUS) until the goal or back at the start."""
    value = start
    for count in range(1, MODULUS + 1):
        value = (value + step) % MODULUS
        if value == goal:
            return count
        if value == start:
            return None
    return None


def cycle_length(step: int) -> int:
    """Steps a walk takes to come back to where it started."""
    value, count = step % MODULUS, 1
    while value != 0:
        value, count = (value + step) % MODULUS, count + 1
    return count


SPLITS = ("train", "test")


def split_of(start: int, goal: int) -> str:
    """Which split a (start, goal) pair belongs to: one pair in eight is held out for testing.

    Splitting on the pair (not on a seed) guarantees that the model never trained on a held-out
    problem's start and goal, whichever candidates the problem offers.
    """
    return "test" if (start * 7 + goal * 5) % 8 == 0 else "train"


def make_problem(rng: random.Random, settings: TaskSettings = TaskSettings(), split: str = "test") -> Problem:
    """Draw a problem of `split` with exactly one promising candidate that needs min..max steps."""
    if split not in SPLITS:
        raise ValueError(f"`split` has to be one of {SPLITS}, but is {split!r}")
    while True:
        start = rng.randrange(MODULUS)
        answer = rng.choice(STEP_SIZES)
        needed = rng.randint(settings.min_steps, settings.max_steps)
        goal = (start + needed * answer) % MODULUS
        if split_of(start, goal) != split or steps_to_goal(start, goal, answer) != needed:
            continue  # the walk meets the goal earlier, or cycles first
        dead = [d for d in STEP_SIZES if d != answer and steps_to_goal(start, goal, d) is None]
        if len(dead) < settings.candidates - 1:
            continue
        candidates = [answer, *rng.sample(dead, settings.candidates - 1)]
        rng.shuffle(candidates)
        return Problem(start, goal, tuple(candidates), answer)


#: Seed of the held-out problems the demo and the tests evaluate on.
TEST_SEED = 2026


def make_problems(count: int, seed: int = TEST_SEED, settings: TaskSettings = TaskSettings(), split: str = "test") -> list[Problem]:
    """`count` problems of `split` drawn with a private generator seeded by `seed` (reproducible)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"`count` has to be a non-negative integer, but is {count!r}")
    rng = random.Random(seed)
    return [make_problem(rng, settings, split) for _ in range(count)]


def write_trace(problem: Problem, rng: random.Random, settings: TaskSettings = TaskSettings()) -> list[str]:
    """A reasoning trace (the assistant's words after `<think>`) for `problem`.

    Each thought picks a candidate other than the one just left (uniformly) and walks it step by
    step. After every step that is not at the goal, the writer leaves with probability `hazard`,
    or with probability `notice` when the walk is back at its start. Leaving writes a switch word and begins the
    next thought. The trace ends with `</think> \\boxed{ answer }` once a walk meets the goal.
    """
    words: list[str] = []
    previous: int | None = None
    while True:
        choices = [d for d in problem.candidates if d != previous]
        step = rng.choice(choices)
        if words:
            words.append(rng.choice(SWITCH_WORDS))
        value = problem.start
        words.append(str(value))
        while True:
            value = (value + step) % MODULUS
            words += [step_token(step), str(value)]
            if value == problem.goal:
                return words + [THINK_END, BOX_OPEN, str(step), BOX_CLOSE, EOS]
            if rng.random() < (settings.notice if value == problem.start else settings.hazard):
                break
        previous = step


def prompt_words(problem: Problem) -> list[str]:
    """The whole prompt as the chat template renders it, ending inside an open think block."""
    return [USER, *problem.prompt_text().split(), ASSISTANT, THINK_START]


def parse_answer(text: str) -> int | None:
    """The boxed step size of a decoded response, or None."""
    from tip_decode.grading import extract_boxed

    boxed = extract_boxed(text)
    if boxed is None:
        return None
    try:
        return int(boxed.strip().lstrip("+"))
    except ValueError:
        return None


def check_trace(problem: Problem, words: Sequence[str]) -> list[str]:
    """Problems with a trace (empty when valid): every step follows the rule, answer is right."""
    errors: list[str] = []
    if THINK_END not in words:
        return ["no </think>"]
    end = list(words).index(THINK_END)
    thoughts: list[list[str]] = [[]]
    for word in words[:end]:
        if word in SWITCH_WORDS:
            thoughts.append([])
        else:
            thoughts[-1].append(word)
    for i, thought in enumerate(thoughts):
        if not thought or thought[0] != str(problem.start):
            errors.append(f"thought {i} does not start at {problem.start}")
            continue
        value = problem.start
        for op, number in zip(thought[1::2], thought[2::2]):
            if not (op.startswith("+") and op[1:].isdigit()):
                errors.append(f"thought {i}: {op!r} is not a step")
                break
            step = int(op[1:])
            if step not in problem.candidates:
                errors.append(f"thought {i} uses step {step}, not a candidate")
            value = (value + step) % MODULUS
            if str(value) != number:
                errors.append(f"thought {i}: {op} gives {value}, not {number}")
                break
    tail = list(words[end + 1 :])
    if tail[:1] != [BOX_OPEN] or len(tail) < 3 or tail[1] != str(problem.answer):
        errors.append(f"answer {tail[1:2]} is not {problem.answer}")
    return errors
