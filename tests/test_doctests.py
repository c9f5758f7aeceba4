"""Every docstring example in the package runs, on the CPU, against the code it documents.

Examples that need a model download, a GPU or a running server carry `# doctest: +SKIP`; the rest use
the demo model's tokenizer that ships with the package. Modules of an engine that is not installed
(vLLM, SGLang) are skipped with the reason; CI's main environment has vLLM.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tip_decode

# Modules that import an optional engine at import time, and the engine.
_ENGINE_MODULES = {
    "tip_decode.vllm": "vllm",
    "tip_decode.adapters.vllm": "vllm",
    "tip_decode.llama_cpp": "llama_cpp",
    "tip_decode.adapters.llama_cpp": "llama_cpp",
    "tip_decode.mlx": "mlx_lm",
    "tip_decode.adapters.mlx": "mlx_lm",
}


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(tip_decode.__path__, prefix="tip_decode."):
        spec = importlib.util.find_spec(info.name)
        origin = spec.origin if spec else None
        if origin and origin.endswith(".py") and ">>>" in open(origin, encoding="utf-8").read():
            names.append(info.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_the_package_has_examples():
    assert len(MODULES) >= 10, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    for prefix, engine in _ENGINE_MODULES.items():
        if name == prefix or name.startswith(prefix + "."):
            pytest.importorskip(engine)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name} (see the output above)"
