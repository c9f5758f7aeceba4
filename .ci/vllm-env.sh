#!/usr/bin/env bash
# Build a virtual environment with one vLLM release's own Python code, for the processor tests that
# need no engine (issue #22: every supported vLLM is tested without a GPU).
#
#   bash .ci/vllm-env.sh VENV_DIR VLLM_VERSION
#
# The real `vllm` wheel of that release is installed without its dependencies next to the CPU build
# of torch, with the small packages its processor interface, SamplingParams and config import
# (.ci/vllm-interface-requirements.txt). Its compiled kernels do not load there and no engine can
# start; the tests drive the processor through that release's own LogitsProcRequestState /
# LogitsContext (and BatchUpdate where the V1 runner exists). tip-decode is installed editable from
# this checkout. Prints the Python to run the tests with. A VENV_DIR built from the same inputs
# (stamp file) is reused as it is.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${1:?usage: vllm-env.sh VENV_DIR VLLM_VERSION}"
VLLM_VERSION="${2:?usage: vllm-env.sh VENV_DIR VLLM_VERSION}"
REQUIREMENTS="$HERE/vllm-interface-requirements.txt"
TORCH_VERSION="2.13.0"

STAMP="$( (cat "$REQUIREMENTS" "$0"; echo "$VLLM_VERSION") | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.tip-decode-stamp" 2>/dev/null)" = "$STAMP" ]; then
    "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
    echo "$VENV/bin/python"
    exit 0
fi

start=$SECONDS
rm -rf "$VENV"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >&2
"$PY" -m pip install -q "torch==$TORCH_VERSION" >&2
CONSTRAINTS="$VENV/constraints.txt"
echo "torch==$("$PY" -c 'import torch; print(torch.__version__)')" > "$CONSTRAINTS"
"$PY" -m pip install -q --no-deps "vllm==$VLLM_VERSION" >&2
"$PY" -m pip install -q -c "$CONSTRAINTS" -r "$REQUIREMENTS" >&2
"$PY" -m pip install -q -c "$CONSTRAINTS" --no-deps -e "$ROOT" >&2
"$PY" - "$VLLM_VERSION" <<'PY' >&2
import sys

import vllm
from vllm import SamplingParams  # noqa: F401
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState  # noqa: F401

import tip_decode.vllm

assert vllm.__version__ == sys.argv[1], (vllm.__version__, sys.argv[1])
print(f"vllm {vllm.__version__} (no engine), processor bases {[b.__module__ for b in tip_decode.vllm.ThoughtSwitchPenalty.__mro__[1:-2]]}")
PY
echo "$STAMP" > "$VENV/.tip-decode-stamp"
echo "vLLM $VLLM_VERSION interface environment built in $((SECONDS - start)) s at $VENV" >&2
echo "$PY"
