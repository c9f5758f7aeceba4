#!/usr/bin/env bash
# One GPU check of TIPLogitsProcessor (CI has no GPU). Run it as is on a machine with a CUDA GPU,
# PyTorch and transformers (no vLLM, no network, no tokenizer files needed):
#
#     bash benchmarks/gpu_check.sh
#
# It checks, on CUDA: exactness of the eager and the CUDA-graph step against tests/reference.py in
# real `generate` calls (greedy, sampling, beam search, assisted decoding, one instance across
# calls), the same for ReasoningInterventionsProcessor with every intervention at once against
# tests/reference_interventions.py (graph run equal to the eager run), that the steady-state steps
# make no host-device synchronisation
# (torch.cuda.set_sync_debug_mode("error")), and measures the processor's per-call cost and its
# share of a decode step of a Qwen2.5-0.5B-shaped random model at batch 1 / 16 / 64.
# Everything goes to one JSON file, $OUT/gpu_check.json ($OUT unset: ./gpu_check_out).
#
# Exit status: 0 every check passed; 1 a check failed (see "failures" in the JSON);
# 2 no CUDA device (nothing checked). The whole run is cut at 7 min 50 s.
# `bash benchmarks/gpu_check.sh --cpu-dry-run` runs smaller sections on the CPU (no graph, no sync
# check) to test the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir="${OUT:-./gpu_check_out}"
mkdir -p "$out_dir"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python="${PYTHON:-$(command -v python3 || command -v python)}"
exec timeout --signal=INT --kill-after=10 470 "$python" benchmarks/gpu_check.py --json "$out_dir/gpu_check.json" "$@"
