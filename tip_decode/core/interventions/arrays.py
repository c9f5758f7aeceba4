"""The array operations a rule's step uses, for torch tensors and for numpy arrays.

The rules are written once, against `ArrayOps`. A state on the device runs them as torch
operations; a state in host memory (a CPU plan none of whose rules reads the logits) runs them on
numpy views of the same memory, because for the few hundred numbers a step touches, numpy's cost
per operation is a third of torch's dispatch (docs/performance.md). Either way the results are
the same numbers (tests/test_interventions.py runs every rule through both).

Operators (`==`, `&`, `+`, `<`, indexing, slicing, `[:, None]`) are the same for both; what differs
in name or signature is here. Tables (a rule's tensors) are built by a `TableBuilder` (handed to
`Rule.compile`) and read through `table`, which gives numpy views of host tensors once and keeps
them. This is the torch side of the intervention family: the rule modules themselves import
neither torch nor this module at run time.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class ArrayOps:
    """Operations over one array library; `TORCH` and `NUMPY` are the two instances."""

    name = ""

    def where(self, condition: Any, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def clip(self, x: Any, low: int, high: int) -> Any:
        raise NotImplementedError

    def stack(self, arrays: tuple[Any, ...], axis: int) -> Any:
        raise NotImplementedError

    def broadcast_to(self, x: Any, shape: tuple[int, ...]) -> Any:
        raise NotImplementedError

    def floats(self, x: Any) -> Any:
        """`x` as float32."""
        raise NotImplementedError

    def copy(self, x: Any) -> Any:
        raise NotImplementedError

    def full(self, shape: tuple[int, ...], value: float, like: Any) -> Any:
        """A float32 array of `shape` filled with `value`, where `like` lives."""
        raise NotImplementedError

    def remainder(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def table(self, tensor: torch.Tensor) -> Any:
        """A rule's table in this library (the tensor itself, or a numpy view of it)."""
        raise NotImplementedError

    def add_columns(self, target: Any, index: Any, values: Any) -> Any:
        """A copy of `target` with `values` added at columns `index` (distinct columns)."""
        raise NotImplementedError

    def argmax(self, x: Any) -> Any:
        """Per row, the column of the largest value (the first one on ties)."""
        raise NotImplementedError

    def any(self, x: Any, axis: int) -> Any:
        raise NotImplementedError

    def entropy(self, logits: Any) -> Any:
        """Per row, the entropy in nats of softmax(logits) (float32); -inf logits count as probability 0."""
        raise NotImplementedError

    def row_max(self, x: Any) -> Any:
        """Per row, the largest value."""
        raise NotImplementedError

    def logsumexp(self, x: Any) -> Any:
        """Per row, log(sum(exp(x))) (float32); -inf entries count as 0, a row of -inf is -inf."""
        raise NotImplementedError

    def top_k(self, x: Any, k: int) -> Any:
        """Per row, the `k` largest values (float32, in no particular order)."""
        raise NotImplementedError

    def take_columns(self, x: Any, columns: Any) -> Any:
        """Per row i, `x[i, columns[i]]`."""
        raise NotImplementedError

    def put_columns(self, x: Any, columns: Any, values: Any) -> None:
        """Per row i, `x[i, columns[i]] = values[i]`, in place (`x` may be a view of the state)."""
        raise NotImplementedError

    def isfinite(self, x: Any) -> Any:
        """Elementwise: finite (not +-inf, not NaN)."""
        raise NotImplementedError


class _TorchOps(ArrayOps):
    name = "torch"

    def where(self, condition, a, b):
        return torch.where(condition, a, b)

    def clip(self, x, low, high):
        return x.clamp(low, high)

    def stack(self, arrays, axis):
        return torch.stack(arrays, axis)

    def broadcast_to(self, x, shape):
        return x.expand(shape)

    def floats(self, x):
        return x.to(torch.float32)

    def copy(self, x):
        return x.clone()

    def full(self, shape, value, like):
        return torch.full(shape, value, dtype=torch.float32, device=like.device)

    def remainder(self, a, b):
        return torch.remainder(a, b)

    def table(self, tensor):
        return tensor

    def add_columns(self, target, index, values):
        return target.index_add(1, index, values.to(target.dtype))

    def argmax(self, x):
        return x.argmax(dim=-1)

    def any(self, x, axis):
        return x.any(dim=axis)

    def entropy(self, logits):
        # One batched dot product of softmax and (clamped) log-softmax, which
        # benchmarks/bench_analysis.py measured 3-4x faster on CPU than element-wise exp / entr / sum.
        logits = logits.float()
        probs = torch.softmax(logits, dim=-1)
        logp = torch.log_softmax(logits, dim=-1).clamp_(min=torch.finfo(torch.float32).min)
        return -(probs.unsqueeze(1) @ logp.unsqueeze(2)).view(-1)

    def row_max(self, x):
        return x.amax(dim=-1)

    def logsumexp(self, x):
        return torch.logsumexp(x.float(), dim=-1)

    def top_k(self, x, k):
        return x.float().topk(k, dim=-1, sorted=False).values

    def take_columns(self, x, columns):
        return x.gather(1, columns[:, None]).view(-1)

    def put_columns(self, x, columns, values):
        x.scatter_(1, columns[:, None], values[:, None].to(x.dtype))

    def isfinite(self, x):
        return torch.isfinite(x)


class _NumpyOps(ArrayOps):
    name = "numpy"

    def __init__(self) -> None:
        # Keyed by id and dropped when the tensor dies (tensors compare elementwise, so they
        # cannot be dictionary keys): the tables of an evicted plan are not kept alive.
        self._views: dict[int, np.ndarray] = {}

    def where(self, condition, a, b):
        return np.where(condition, a, b)

    def clip(self, x, low, high):
        return x.clip(low, high)

    def stack(self, arrays, axis):
        return np.stack(arrays, axis)

    def broadcast_to(self, x, shape):
        return np.broadcast_to(x, shape)

    def floats(self, x):
        return x.astype(np.float32, copy=False)

    def copy(self, x):
        return x.copy()

    def full(self, shape, value, like):
        return np.full(shape, value, dtype=np.float32)

    def remainder(self, a, b):
        return np.remainder(a, b)

    def table(self, tensor):
        view = self._views.get(id(tensor))
        if view is None:
            view = self._views[id(tensor)] = tensor.numpy()
            weakref.finalize(tensor, self._views.pop, id(tensor), None)
        return view

    def add_columns(self, target, index, values):
        out = target.copy()
        out[:, index] += values
        return out

    def argmax(self, x):
        return x.argmax(axis=-1)

    def any(self, x, axis):
        return x.any(axis=axis)

    def entropy(self, logits):
        logits = logits.astype(np.float32, copy=False)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            shifted = logits - logits.max(axis=-1, keepdims=True)
            log_total = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
            logp = np.maximum(shifted - log_total, np.finfo(np.float32).min)
            probs = np.exp(shifted - log_total)
            return -(probs * logp).sum(axis=-1, dtype=np.float32)

    def row_max(self, x):
        return x.max(axis=-1)

    def logsumexp(self, x):
        x = x.astype(np.float32, copy=False)
        top = x.max(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            shift = np.where(np.isfinite(top), top, 0).astype(np.float32)
            return (np.log(np.exp(x - shift).sum(axis=-1, dtype=np.float32)) + shift[:, 0]).astype(np.float32)

    def top_k(self, x, k):
        return np.partition(x.astype(np.float32, copy=False), -k, axis=-1)[:, -k:]

    def take_columns(self, x, columns):
        return np.take_along_axis(x, columns[:, None], axis=1)[:, 0]

    def put_columns(self, x, columns, values):
        np.put_along_axis(x, columns[:, None], np.asarray(values, dtype=x.dtype)[:, None], axis=1)

    def isfinite(self, x):
        return np.isfinite(x)


TORCH: ArrayOps = _TorchOps()
NUMPY: ArrayOps = _NumpyOps()


def ops_of(array: Any) -> ArrayOps:
    return NUMPY if isinstance(array, np.ndarray) else TORCH


class TableBuilder:
    """Makes a rule's tables as tensors on one device (what `Rule.compile` is handed).

    Rules build their tables from host values (lists, numpy arrays) through this, so that the rule
    modules need no torch: the tensors are read in a step through `ArrayOps.table`.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)

    def ints(self, values: Sequence[int] | np.ndarray) -> torch.Tensor:
        """An int64 tensor."""
        return self.array(np.asarray(values, dtype=np.int64))

    def bools(self, values: Sequence[bool] | np.ndarray) -> torch.Tensor:
        return self.array(np.asarray(values, dtype=bool))

    def array(self, values: np.ndarray) -> torch.Tensor:
        """A numpy array as a tensor of the same dtype and shape."""
        return torch.from_numpy(np.ascontiguousarray(values)).to(self.device)
