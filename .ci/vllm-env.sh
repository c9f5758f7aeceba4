#!/usr/bin/env bash
# Build one virtual environment holding several vLLM releases' own Python code, for the processor
# tests that need no engine (issue #22: every supported vLLM is tested without a GPU).
#
#   bash .ci/vllm-env.sh VENV_DIR VLLM_VERSION [VLLM_VERSION ...]
#
# The environment has the CPU build of torch, the small packages vLLM's processor interface,
# SamplingParams and config import, tip-decode (editable, from this checkout) and pytest
# (.ci/vllm-interface-requirements.txt). Each release's real `vllm` wheel is installed without its
# dependencies (CUDA torch, flashinfer, the nvidia packages: gigabytes) into a folder of its own,
# VENV_DIR/vllm-VERSION, and VENV_DIR/bin/python-vllm-VERSION runs the environment's Python with that
# folder first on the path. Its compiled kernels do not load there and no engine can start; the
# tests drive the processor through that release's own LogitsProcRequestState / LogitsContext (and
# BatchUpdate where the V1 runner exists).
#
# Prints one line per release: "VERSION PYTHON". What was built from the same inputs (stamp files)
# is reused as it is, so a kept VENV_DIR makes a rerun take seconds.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
USAGE="usage: vllm-env.sh VENV_DIR VLLM_VERSION [VLLM_VERSION ...]"
VENV="${1:?$USAGE}"
shift
mkdir -p "$(dirname "$VENV")"
VENV="$(cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")"
[ $# -gt 0 ] || { echo "$USAGE" >&2; exit 2; }
REQUIREMENTS="$HERE/vllm-interface-requirements.txt"
TORCH_VERSION="2.13.0"

start=$SECONDS
BASE_STAMP="$( (cat "$REQUIREMENTS" "$0"; echo "$TORCH_VERSION") | sha256sum | cut -d' ' -f1)"
PY="$VENV/bin/python"
if [ -x "$PY" ] && [ "$(cat "$VENV/.tip-decode-stamp" 2>/dev/null)" = "$BASE_STAMP" ]; then
    "$PY" -m pip install -q --no-deps -e "$ROOT" >&2
else
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
    "$PY" -m pip install -q "torch==$TORCH_VERSION" >&2
    echo "torch==$("$PY" -c 'import torch; print(torch.__version__)')" > "$VENV/constraints.txt"
    "$PY" -m pip install -q -c "$VENV/constraints.txt" -r "$REQUIREMENTS" >&2
    "$PY" -m pip install -q -c "$VENV/constraints.txt" --no-deps -e "$ROOT" >&2
    echo "$BASE_STAMP" > "$VENV/.tip-decode-stamp"
fi

for version in "$@"; do
    target="$VENV/vllm-$version"
    runner="$VENV/bin/python-vllm-$version"
    if [ "$(cat "$target/.tip-decode-stamp" 2>/dev/null)" != "$BASE_STAMP" ]; then
        rm -rf "$target"
        "$PY" -m pip install -q --no-deps --target "$target" "vllm==$version" >&2
        echo "$BASE_STAMP" > "$target/.tip-decode-stamp"
    fi
    cat > "$runner" <<SH
#!/bin/sh
# The interface environment's Python with vLLM $version first on the path (.ci/vllm-env.sh).
PYTHONPATH="$target\${PYTHONPATH:+:\$PYTHONPATH}" exec "$PY" "\$@"
SH
    chmod +x "$runner"
    # From the checkout: `python -` puts the working directory first on the path.
    (cd "$ROOT" && "$runner" - "$version") <<'PY' >&2
import sys

import vllm
from vllm import SamplingParams  # noqa: F401
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState  # noqa: F401

import tip_decode.vllm

assert vllm.__version__ == sys.argv[1], (vllm.__version__, sys.argv[1])
bases = [b.__module__ for b in tip_decode.vllm.ThoughtSwitchPenalty.__mro__ if b.__module__.startswith("vllm.")]
print(f"vllm {vllm.__version__} from {vllm.__path__[0]} (no engine): processor bases {bases}")
PY
    echo "$version $runner"
done
echo "vLLM $* interface environment ready in $((SECONDS - start)) s at $VENV" >&2
