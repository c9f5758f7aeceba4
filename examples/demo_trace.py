"""Sample one held-out problem from the shipped demo model, without and with TIP, and show the thoughts.

    python examples/demo_trace.py [--problem N] [--seed S] [--alpha A] [--beta B]

Runs offline on a CPU in a few seconds. Each line is one thought (a walk with one step size),
marked with where it leads, so you can see the model abandon a promising walk at baseline and
TIP keep it going (or keep a dead end going: both happen). Without --problem it shows the first
held-out problem where the two decodings differ (on many problems the model does not switch at all
with this seed, and then TIP has nothing to change).
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tip_decode import SwitchVocabulary, TIPConfig, find_switches
from tip_decode.demo import MODEL_DIR
from tip_decode.demo.evaluate import DEMO_TRIGGERS, sample
from tip_decode.demo.task import make_problems, parse_answer

#: Held-out problems searched for one where baseline and TIP differ (when --problem is not given).
SEARCH = 50


def show(title: str, problem, tokenizer, vocab, ids: list[int]) -> None:
    switches = [e.position for e in find_switches(vocab, ids, scope="auto", prompt_open=True)]
    bounds = [0, *switches, len(ids)]
    answer = parse_answer(tokenizer.decode(ids, skip_special_tokens=True))
    print(f"--- {title}: {len(switches)} switches, {len(ids)} tokens, answer {answer} ({'correct' if answer == problem.answer else 'wrong'})")
    for start, end in zip(bounds, bounds[1:]):
        words = tokenizer.convert_ids_to_tokens(ids[start:end])
        step = next((int(w[1:]) for w in words if w.startswith("+")), None)
        where = "reaches the goal" if step == problem.answer else "dead end" if step else "no step"
        print(f"  [{end - start:3d} tokens, step +{step}: {where}] {' '.join(words)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", type=int, default=None, help="index of the held-out problem (default: the first where baseline and TIP differ)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=3.0)
    parser.add_argument("--beta", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()
    vocab = SwitchVocabulary.from_tokenizer(tokenizer, DEMO_TRIGGERS)
    tip = TIPConfig(alpha=args.alpha, beta=args.beta, triggers=DEMO_TRIGGERS)
    problems = make_problems(max(args.problem or 0, SEARCH) + 1)
    index, runs = args.problem, None
    if index is None:
        # The first problem where TIP changes the response: at baseline it switched, and the
        # penalty made it do otherwise.
        for candidate in range(SEARCH):
            runs = [sample(model, tokenizer, [problems[candidate]], tip=config, seed=args.seed)[0] for config in (None, tip)]
            if runs[0] != runs[1] and find_switches(vocab, runs[0], scope="auto", prompt_open=True):
                index = candidate
                break
        else:
            index, runs = 0, None
    problem = problems[index]
    how = "" if args.problem is not None else f", the first held-out problem where baseline and TIP differ with seed {args.seed}"
    print(f"problem {index}: {problem.prompt_text()}  (answer: step +{problem.answer}, {problem.steps_to_goal(problem.answer)} steps to the goal{how})")
    if runs is None:
        runs = [sample(model, tokenizer, [problem], tip=config, seed=args.seed)[0] for config in (None, tip)]
    for title, ids in zip(("baseline", f"TIP alpha={args.alpha:g} beta={args.beta}"), runs):
        show(title, problem, tokenizer, vocab, ids)
    if runs[0] == runs[1]:
        print("(the same response twice: with this seed the model never got to switch, so TIP had nothing to change; try another --seed or --problem)")


if __name__ == "__main__":
    main()
