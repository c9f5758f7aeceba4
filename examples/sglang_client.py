"""Ask an SGLang server for the same answer with TIP on and with TIP off, on each of its three routes.

Start a server first, for example:

    tip-decode serve Qwen/QwQ-32B --engine sglang --alpha 0 -- --context-length 32768

then run:

    python examples/sglang_client.py --url http://127.0.0.1:8000

A request opts in by naming the processor (`custom_logit_processor`) and carries its settings in
`custom_params`; `generate_fields` / `openai_fields` build both and validate the settings first.
The client needs neither SGLang nor dill. Without a server it says so in one line (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

from openai import OpenAI

from tip_decode.sglang import generate_fields, openai_fields


def generate(url: str, prompt: str, max_new_tokens: int, fields: dict) -> str:
    """SGLang's native route: `custom_params` goes inside `sampling_params`."""
    body = {
        "text": prompt,
        "custom_logit_processor": fields["custom_logit_processor"],
        "sampling_params": {"temperature": 0.0, "max_new_tokens": max_new_tokens, **fields["sampling_params"]},
    }
    request = urllib.request.Request(url + "/generate", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as reply:
        return json.loads(reply.read())["text"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's root URL")
    parser.add_argument("--model", default="default", help="model name for the OpenAI routes")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--prompt", default="How many positive divisors does 360 have? Think step by step.")
    args = parser.parse_args()

    try:
        urllib.request.urlopen(args.url + "/health", timeout=10).close()
    except urllib.error.HTTPError:
        pass  # something answers; the requests below say what
    except (OSError, ValueError) as err:
        sys.exit(f"error: no server answers at {args.url} ({getattr(err, 'reason', err)}): start one first, e.g. tip-decode serve MODEL --engine sglang")
    client = OpenAI(base_url=args.url + "/v1", api_key="EMPTY")
    settings = {
        "TIP on": {"alpha": 3.0, "beta": 600, "triggers": ["alternatively", "wait"]},
        "TIP off": {"alpha": 0},
    }
    for label, tip in settings.items():
        text = generate(args.url, args.prompt, args.max_new_tokens, generate_fields(**tip))
        print(f"--- /generate, {label} {tip}\n{text}\n")

        reply = client.completions.create(
            model=args.model, prompt=args.prompt, max_tokens=args.max_new_tokens, temperature=0.0, extra_body=openai_fields(**tip)
        )
        print(f"--- /v1/completions, {label}\n{reply.choices[0].text}\n")

        chat = client.chat.completions.create(
            model=args.model,
            messages=[{"role": "user", "content": args.prompt}],
            max_tokens=args.max_new_tokens,
            temperature=0.0,
            extra_body=openai_fields(**tip),
        )
        print(f"--- /v1/chat/completions, {label}\n{chat.choices[0].message.content}\n")


if __name__ == "__main__":
    main()
