"""The few array operations the soccer rules need, for torch and for numpy.

The rules in `soccer.py` are written once against this small interface. The vector env runs
them on torch tensors (any device, thousands of matches); the PettingZoo env runs the very
same code on numpy arrays with one match, where numpy's per-call overhead is several times lower
than torch's. Only IEEE-exact operations are used (+, -, *, /, sqrt, comparisons, min/max) and no
transcendental functions, so both backends produce bit-identical trajectories on CPU. The one
matrix product (the observation, see `SoccerEngine.observe`) sums at most two exactly signed terms
per entry, so it too gives the same float32 numbers in any summation order.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Iterator

import numpy as np
import torch


class NumpyOps:
    name = "numpy"
    float = np.float32
    int = np.int64

    def __init__(self, device: Any = "cpu") -> None:
        if str(device) != "cpu":
            raise ValueError(f"the numpy backend runs on the CPU only, got device={device!r}")
        self.device = "cpu"

    def asarray(self, x: Any, dtype: Any) -> np.ndarray:
        return np.asarray(x, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def full(self, shape: tuple[int, ...], value: Any, dtype: Any) -> np.ndarray:
        return np.full(shape, value, dtype=dtype)

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.int64)

    def to_float(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)

    def to_int(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.int64)

    def clone(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def cat(self, xs: list[np.ndarray], axis: int) -> np.ndarray:
        return np.concatenate(xs, axis)

    def stack(self, xs: list[np.ndarray], axis: int) -> np.ndarray:
        if axis == 0:  # np.stack is Python code around concatenate, several times dearer on tiny arrays
            return np.concatenate([x[None] for x in xs])
        return np.stack(xs, axis)

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return x

    def recip(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / x

    def positive(self, x: np.ndarray) -> np.ndarray:
        """1.0 where x > 0, else 0.0 (float): one ufunc call (for the arrays here, x is never NaN)."""
        return np.heaviside(x, 0)

    def clip(self, x: np.ndarray, low: float, high: float) -> np.ndarray:
        return np.minimum(np.maximum(x, low), high)  # np.clip has several times the call overhead

    def permute(self, x: np.ndarray, *dims: int) -> np.ndarray:
        return x.transpose(*dims)

    def contiguous(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x)

    def nonzero(self, mask: np.ndarray) -> np.ndarray:
        return np.flatnonzero(mask)

    def rows(self, x: np.ndarray, index: np.ndarray, dim: int = 0) -> np.ndarray:
        return x[index] if dim == 0 else x[(slice(None),) * dim + (index,)]

    def amax(self, x: np.ndarray, dim: int) -> np.ndarray:
        return np.maximum.reduce(x, axis=dim)

    def matmul_is_exact(self) -> bool:
        return True

    def limit_threads(self, n: int | None) -> Any:
        """numpy's ops here run on one thread: nothing to limit."""
        return nullcontext()

    def matmul(self, a: np.ndarray, b: np.ndarray, exact: bool = True) -> np.ndarray:
        """a @ b in float32 (IEEE products and sums, as numpy's BLAS does)."""
        return a @ b

    def take(self, table: np.ndarray, index: np.ndarray) -> np.ndarray:
        return table[index]

    where = staticmethod(np.where)
    sqrt = staticmethod(np.sqrt)
    abs = staticmethod(np.abs)
    sign = staticmethod(np.sign)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)


class TorchOps:
    name = "torch"
    float = torch.float32
    int = torch.int64

    def __init__(self, device: Any = "cpu") -> None:
        self.device = torch.device(device)
        # eager CPU code takes numpy's sqrt on the tensors' memory (see `sqrt`); False when the
        # rules are traced by torch.compile
        self.numpy_sqrt = True

    def asarray(self, x: Any, dtype: Any) -> torch.Tensor:
        return torch.as_tensor(np.array(x), dtype=dtype, device=self.device)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype, device=self.device)

    def full(self, shape: tuple[int, ...], value: Any, dtype: Any) -> torch.Tensor:
        return torch.full(shape, value, dtype=dtype, device=self.device)

    def arange(self, n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.int64, device=self.device)

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32)

    def to_int(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.int64)

    def clone(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def cat(self, xs: list[torch.Tensor], axis: int) -> torch.Tensor:
        return torch.cat(xs, axis)

    def stack(self, xs: list[torch.Tensor], axis: int) -> torch.Tensor:
        return torch.stack(xs, axis)

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().numpy()

    def recip(self, x: torch.Tensor) -> torch.Tensor:
        # `1.0 / tensor` is the same correctly rounded division as numpy's on the CPU
        return torch.reciprocal(x)

    def minimum(self, a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
        return torch.clamp(a, max=b) if isinstance(b, (int, float)) else torch.minimum(a, b)

    def maximum(self, a: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
        return torch.clamp(a, min=b) if isinstance(b, (int, float)) else torch.maximum(a, b)

    def sqrt(self, x: torch.Tensor) -> torch.Tensor:
        # torch's float32 sqrt on the CPU is not correctly rounded (numpy's is; docs/benchmarks.md
        # has how many values differ). Eager CPU code takes numpy's, on the same memory (much
        # faster than the float64 round trip); traced code (torch.compile) takes
        # sqrt in float64 rounded to float32, also correctly rounded (double rounding is innocuous
        # for sqrt when 53 >= 2*24 + 2).
        if self.device.type == "cpu":
            if self.numpy_sqrt:
                return torch.from_numpy(np.sqrt(x.detach().numpy()))
            return torch.sqrt(x.double()).float()
        return torch.sqrt(x)

    def positive(self, x: torch.Tensor) -> torch.Tensor:
        """1.0 where x > 0, else 0.0 (float). Computed as sign(relu(x)): on the CPU, comparisons
        and `where` are several times slower than plain float ops for these shapes."""
        return torch.sign(torch.clamp(x, min=0.0))

    def clip(self, x: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return torch.clamp(x, low, high)

    def permute(self, x: torch.Tensor, *dims: int) -> torch.Tensor:
        return x.permute(*dims)

    def contiguous(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous()

    def nonzero(self, mask: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(mask)[:, 0]

    def rows(self, x: torch.Tensor, index: torch.Tensor, dim: int = 0) -> torch.Tensor:
        # index_select is several times faster than advanced indexing for a row gather
        return torch.index_select(x, dim, index)

    def amax(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.amax(x, dim)

    @contextmanager
    def limit_threads(self, n: int | None) -> Iterator[None]:
        """Run the block with at most `n` CPU threads (None: torch's count, untouched).

        torch's count is process-wide: it is lowered for the block and restored afterwards, and
        torch work in other Python threads meanwhile sees it too. Only an env built with
        `cpu_threads` (see `SoccerEngine`) calls this with a number."""
        current = torch.get_num_threads() if self.device.type == "cpu" else 0
        if n is None or current <= n:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(current)

    def matmul_is_exact(self) -> bool:
        """Whether float32 matrix products are IEEE float32 (no TF32 / bfloat16 shortcuts) now."""
        if torch.get_float32_matmul_precision() != "highest":
            return False
        try:
            if self.device.type == "cuda":
                return not torch.backends.cuda.matmul.allow_tf32
            return torch.backends.mkldnn.matmul.fp32_precision in ("none", "ieee")
        except AttributeError:  # older torch: the global setting above is all there is
            return True

    def matmul(self, a: torch.Tensor, b: torch.Tensor, exact: bool = True) -> torch.Tensor:
        """a @ b with IEEE float32 products and sums: in float64 (then rounded, which for the
        observation's two-term sums is the same number) when TF32 / bfloat16 matmuls are enabled."""
        if exact:
            return torch.mm(a, b)
        return torch.mm(a.double(), b.double()).float()

    def take(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.take(table, index)

    where = staticmethod(torch.where)
    abs = staticmethod(torch.abs)
    sign = staticmethod(torch.sign)


def make_ops(backend: str, device: Any = "cpu") -> NumpyOps | TorchOps:
    if backend == "torch":
        return TorchOps(device)
    if backend == "numpy":
        return NumpyOps(device)
    raise ValueError(f"backend={backend!r} is invalid: expected 'torch' or 'numpy'")


def resolve_device(device: Any = "auto") -> torch.device:
    """`"auto"` picks CUDA when present, else the CPU; anything else is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is invalid: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return resolved
