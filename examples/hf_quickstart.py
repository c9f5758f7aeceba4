"""TIP in Hugging Face `generate`: the same prompt decoded with and without the penalty.

    python examples/hf_quickstart.py                          # offline, on the demo model shipped with tip-decode
    python examples/hf_quickstart.py --model Qwen/QwQ-32B --max-new-tokens 4096

Both runs sample with the same seed, so they differ only where TIP acts. Prints both responses and
where each one switched thoughts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import tip_decode
from tip_decode import SwitchVocabulary, find_switches, prompt_ends_in_open_think
from tip_decode.hf import TIPLogitsProcessor

DEMO_MODEL = Path(tip_decode.__file__).parent / "demo" / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEMO_MODEL), help="local folder or Hub id")
    parser.add_argument("--prompt", default=None, help="question (default: one the demo model knows how to solve)")
    parser.add_argument("--alpha", type=float, default=3.0)
    parser.add_argument("--beta", type=int, default=600)
    parser.add_argument("--triggers", default="alternatively,wait")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    question = args.prompt or default_question(args.model)
    messages = [{"role": "user", "content": question}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    prompt_len = inputs["input_ids"].shape[1]

    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, args.triggers)
    tip = TIPLogitsProcessor(vocabulary, alpha=args.alpha, beta=args.beta)
    prompt_open = prompt_ends_in_open_think(inputs["input_ids"][0].tolist(), vocabulary.think)
    for name, processors in (("without TIP", []), (f"with TIP (alpha={args.alpha}, beta={args.beta})", [tip])):
        torch.manual_seed(args.seed)
        with torch.no_grad():
            out = model.generate(
                **inputs,
                logits_processor=processors,
                do_sample=True,
                temperature=args.temperature,
                top_k=0,
                max_new_tokens=args.max_new_tokens,
            )
        generated = out[0, prompt_len:].tolist()
        switches = find_switches(vocabulary, generated, tip.scope, prompt_open)
        print(f"--- {name}: {len(generated)} tokens, switches at {[s.position for s in switches]}")
        print(tokenizer.decode(generated, skip_special_tokens=False))


def default_question(model: str) -> str:
    if Path(model) == DEMO_MODEL:
        from tip_decode.demo import task

        # A held-out problem of the demo's synthetic task, in the demo tokenizer's words.
        return task.make_problems(1, seed=7)[0].prompt_text()
    return "How many positive divisors does 2025 have?"


if __name__ == "__main__":
    main()
