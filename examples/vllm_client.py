"""Ask a vLLM server that runs the TIP processor for the same answer with TIP on and with TIP off.

Start a server first, for example:

    tip-decode serve Qwen/QwQ-32B --alpha 0 -- --max-model-len 32768

then run:

    python examples/vllm_client.py --base-url http://127.0.0.1:8000/v1 --model Qwen/QwQ-32B

TIP settings travel per request in `extra_body={"vllm_xargs": {...}}` with the `tip_*` keys.
Without a server it says so in one line (exit status 1).
"""

from __future__ import annotations

import argparse
import sys

from openai import APIConnectionError, OpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--prompt", default="How many positive divisors does 360 have? Think step by step.")
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key="EMPTY", max_retries=0)
    try:
        client.models.list()
    except APIConnectionError:
        sys.exit(f"error: no server answers at {args.base_url}: start one first, e.g. tip-decode serve {args.model} --alpha 0")
    settings = {
        "TIP on": {"tip_alpha": 3.0, "tip_beta": 600, "tip_triggers": ["alternatively", "wait"]},
        "TIP off": {"tip_alpha": 0},
    }
    for label, xargs in settings.items():
        reply = client.completions.create(
            model=args.model,
            prompt=args.prompt,
            max_tokens=args.max_tokens,
            temperature=0.0,
            extra_body={"vllm_xargs": xargs},
        )
        print(f"--- {label} {xargs}\n{reply.choices[0].text}\n")


if __name__ == "__main__":
    main()
