"""Print thought switches live while a `vllm serve` (or `tip-decode serve`) server streams.

Start a server first, e.g. `tip-decode serve Qwen/QwQ-32B --port 8000`, then:

    python examples/analysis_live_vllm.py --base-url http://127.0.0.1:8000/v1 --model Qwen/QwQ-32B \
        --tokenizer Qwen/QwQ-32B --prompt "How many r's are in strawberry?"

The completions stream asks vLLM for token ids (`return_tokens_as_token_ids`) and the top-5
log-probabilities of each step, so the monitor segments exactly the generated ids and reports the
abandoned thought's mean entropy (top-k approximation). `--bias` adds a logit bias to the switch
tokens (handy to see events from a small test model). `--summary` prints one JSON line at the end.
Without a server, or with a tokenizer that cannot be loaded, it says so in one line (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import sys

import click
from openai import APIConnectionError, OpenAI

from tip_decode import SwitchVocabulary
from tip_decode.analysis import LiveMonitor, token_id_of
from tip_decode.cli.common import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokenizer", required=True, help="the served model's tokenizer (folder or Hub id)")
    parser.add_argument("--prompt", default="Solve: what is 17 * 23? Think step by step.")
    parser.add_argument("--triggers", default="alternatively,wait")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--premature-threshold", type=int, default=600)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bias", type=float, default=0.0, help="logit bias for switch tokens (demo only)")
    parser.add_argument("--summary", action="store_true", help="print a JSON summary line at the end")
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key="EMPTY", max_retries=0)
    try:
        client.models.list()
    except APIConnectionError:
        sys.exit(f"error: no server answers at {args.base_url}: start one first, e.g. tip-decode serve {args.model}")
    try:
        tokenizer = load_tokenizer(args.tokenizer)
    except click.ClickException as err:
        sys.exit(f"error: {err.message}")
    vocabulary = SwitchVocabulary.from_tokenizer(tokenizer, args.triggers)
    # Completions have no chat template, so nothing opens a think block: watch the whole response.
    monitor = LiveMonitor(vocabulary, scope="all", premature_threshold=args.premature_threshold)
    logit_bias = {str(i): args.bias for i in vocabulary.token_ids} if args.bias else None
    stream = client.completions.create(
        model=args.model,
        prompt=args.prompt,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
        logprobs=5,
        stream=True,
        logit_bias=logit_bias,
        extra_body={"return_tokens_as_token_ids": True},
    )
    for chunk in stream:
        for choice in chunk.choices:
            logprobs = choice.logprobs
            if logprobs is None or not logprobs.tokens:
                continue
            tops = logprobs.top_logprobs or [None] * len(logprobs.tokens)
            for token, top in zip(logprobs.tokens, tops):
                token_id = token_id_of(token)
                if token_id is None:
                    raise SystemExit(f"the server sent token text {token!r}, not ids: is it vLLM?")
                for event in monitor.push(token_id, top_logprobs=top):
                    entropy = "-" if event.mean_entropy is None else f"{event.mean_entropy:.2f}"
                    print(
                        f"switch at token {event.position} ({event.trigger!r}): abandoned a "
                        f"{event.abandoned_length}-token thought, premature={event.premature}, "
                        f"mean entropy {entropy} nats",
                        flush=True,
                    )
    print(f"{monitor.position} tokens, {len(monitor.events)} switches")
    if args.summary:
        print(json.dumps({"token_ids": monitor.token_ids, "switch_positions": [e.position for e in monitor.events]}))


if __name__ == "__main__":
    main()
