"""Sample one held-out problem from the shipped demo model, without and with TIP, and show the thoughts.

    python examples/demo_trace.py [--problem N] [--seed S] [--alpha A] [--beta B]

Runs offline on a CPU in a few seconds. Each line is one thought (a walk with one step size),
marked with where it leads, so you can see the model abandon a promising walk at baseline and
TIP keep it going (or keep a dead end going: both happen).
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tip_decode import SwitchVocabulary, TIPConfig, find_switches
from tip_decode.demo import MODEL_DIR
from tip_decode.demo.evaluate import DEMO_TRIGGERS, sample
from tip_decode.demo.task import make_problems, parse_answer


def show(title: str, problem, tokenizer, vocab, ids: list[int]) -> None:
    switches = [e.position for e in find_switches(vocab, ids, scope="auto", prompt_open=True)]
    bounds = [0, *switches, len(ids)]
    answer = parse_answer(tokenizer.decode(ids, skip_special_tokens=True))
    print(f"--- {title}: {len(switches)} switches, {len(ids)} tokens, answer {answer} "
          f"({'correct' if answer == problem.answer else 'wrong'})")
    for start, end in zip(bounds, bounds[1:]):
        words = tokenizer.convert_ids_to_tokens(ids[start:end])
        step = next((int(w[1:]) for w in words if w.startswith("+")), None)
        where = "reaches the goal" if step == problem.answer else "dead end" if step else "no step"
        print(f"  [{end - start:3d} tokens, step +{step}: {where}] {' '.join(words)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", type=int, default=0, help="index of the held-out problem")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=3.0)
    parser.add_argument("--beta", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()
    vocab = SwitchVocabulary.from_tokenizer(tokenizer, DEMO_TRIGGERS)
    problem = make_problems(args.problem + 1)[args.problem]
    print(f"problem: {problem.prompt_text()}  (answer: step +{problem.answer}, "
          f"{problem.steps_to_goal(problem.answer)} steps to the goal)")
    tip = TIPConfig(alpha=args.alpha, beta=args.beta, triggers=DEMO_TRIGGERS)
    for title, config in (("baseline", None), (f"TIP alpha={args.alpha:g} beta={args.beta}", tip)):
        ids = sample(model, tokenizer, [problem], tip=config, seed=args.seed)[0]
        show(title, problem, tokenizer, vocab, ids)


if __name__ == "__main__":
    main()
