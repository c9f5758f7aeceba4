"""Manual GPU check of TIPLogitsProcessor (CI has no GPU): CUDA-graph steps against the slow reference.

Runs real `generate` calls of a tiny random-weight Qwen2 on CUDA (greedy batch, sampling with several
return sequences, beam search) with recording processors around TIP, and checks every call against
tests/reference.py exactly as tests/test_hf.py does on the CPU. Also checks that the per-step path
makes no host-device synchronisation (torch.cuda.set_sync_debug_mode("error")).

    python benchmarks/gpu_check_hf.py --tokenizer ../shared/tokenizers/qwen3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, LogitsProcessorList, Qwen2Config, Qwen2ForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_hf import PROMPTS, Recorder, bias, check_against_reference  # noqa: E402

from tip_decode.hf import TIPLogitsProcessor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", default=str(ROOT.parent / "shared" / "tokenizers" / "qwen3"))
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=151936, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2)
    model = Qwen2ForCausalLM(config).cuda().eval()
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="left").to("cuda")
    cases = {
        "greedy": dict(do_sample=False),
        "sampling x3": dict(do_sample=True, num_return_sequences=3, top_k=0),
        "beam 4": dict(num_beams=4, num_return_sequences=2, do_sample=False),
    }
    for name, kwargs in cases.items():
        for graphs in (True, False):
            tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=2.0, beta=5, triggers=("alternatively", "hmm"))
            tip.use_cuda_graphs = graphs
            before, after = Recorder(), Recorder()
            torch.manual_seed(1)
            model.generate(**inputs, logits_processor=LogitsProcessorList([bias(tokenizer), before, tip, after]),
                           max_new_tokens=40, pad_token_id=tokenizer.pad_token_id, **kwargs)
            checked, fired = check_against_reference(before, after, tip, inputs["input_ids"].shape[1])
            print(f"{name:12s} cuda_graphs={graphs!s:5s}: {checked} row-steps equal the reference, penalty acted in {fired}; graph captured: {tip._graph is not None}")
    # no host-device sync in the steady-state step
    tip = TIPLogitsProcessor.from_tokenizer(tokenizer, alpha=3.0, beta=600, triggers="reflection")
    ids = torch.randint(0, 150000, (8, 100), device="cuda")
    scores = torch.randn(8, 151936, device="cuda")
    tip(ids, scores)
    torch.cuda.set_sync_debug_mode("error")
    for _ in range(20):
        ids = torch.cat((ids, ids[:, -1:]), dim=1)
        tip(ids, scores)
    torch.cuda.set_sync_debug_mode(0)
    print("20 steady-state steps under sync debug mode 'error': no host-device synchronisation")


if __name__ == "__main__":
    main()
