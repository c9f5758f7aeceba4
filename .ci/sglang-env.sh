#!/usr/bin/env bash
# Build the SGLang virtual environment the SGLang tests run their servers and engines in.
#
#   bash .ci/sglang-env.sh VENV_DIR
#
# SGLang on a CPU machine (see docs/sglang.md): the CPU build of torch, then `sglang` without its
# dependencies (its declared ones pull CUDA torch and the nvidia packages: an 11 GB venv), then the
# pure-Python dependencies it imports, every version pinned in .ci/sglang-requirements.txt. tip-decode
# itself is installed editable from this checkout so that the server imports the processor under test.
# Prints the Python to point TIP_DECODE_SGLANG_PYTHON at. A VENV_DIR that was already built from the
# same requirements (stamp file) is reused as it is.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${1:?usage: sglang-env.sh VENV_DIR}"
REQUIREMENTS="$HERE/sglang-requirements.txt"
TORCH_VERSION="2.13.0"
SGLANG_VERSION="0.5.23"

stamp_of() { cat "$REQUIREMENTS" "$0" | sha256sum | cut -d' ' -f1; }
STAMP="$(stamp_of)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.tip-decode-stamp" 2>/dev/null)" = "$STAMP" ]; then
    # Reuse: only make sure tip-decode points at this checkout.
    "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
    echo "$VENV/bin/python"
    exit 0
fi

start=$SECONDS
rm -rf "$VENV"
python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >&2
# The CPU build of torch first; a constraints file keeps every later install from replacing it with
# a CUDA build.
"$PY" -m pip install -q "torch==$TORCH_VERSION" >&2
TORCH_EXACT="$("$PY" -c 'import torch; print(torch.__version__)')"
CONSTRAINTS="$VENV/constraints.txt"
echo "torch==$TORCH_EXACT" > "$CONSTRAINTS"
"$PY" -m pip install -q --no-deps "sglang==$SGLANG_VERSION" >&2
"$PY" -m pip install -q -c "$CONSTRAINTS" -r "$REQUIREMENTS" >&2
"$PY" -m pip install -q -c "$CONSTRAINTS" --no-deps -e "$ROOT" >&2

# torchvision from the index is a CUDA build whose C++ ops do not load against CPU torch; SGLang
# imports it unconditionally, and transformers then fails on "operator torchvision::nms does not
# exist". Declaring the two op schemas at interpreter start-up lets the Python side import; no
# SGLang code path used here calls the ops.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$SITE/sitecustomize.py" <<'PY'
"""tip-decode's SGLang venv: declare torchvision's op schemas that its CUDA build cannot register on CPU torch."""
try:
    import torch

    _lib = torch.library.Library("torchvision", "FRAGMENT")
    for _name in ("nms", "qnms"):
        try:
            _lib.define(f"{_name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # already defined (a CPU torchvision build)
            pass
except Exception:  # never break the interpreter start-up
    pass
PY

"$PY" - <<'PY' >&2
import sglang, torch, transformers, tip_decode
from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor  # noqa: F401
print(f"sglang {sglang.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, tip-decode {tip_decode.__version__}")
PY
echo "$STAMP" > "$VENV/.tip-decode-stamp"
echo "SGLang environment built in $((SECONDS - start)) s at $VENV" >&2
echo "$PY"
