"""Torch helpers shared by the regression estimators: device/dtype choice, numpy <-> tensor, thread pinning for
small ops.

Why a module of its own: the PLS, ridge and Gram code (and the fit stage that batches them) all move arrays the
same way, and each needs the same rule for when threads help.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from convrnn.threads import torch_threads

__all__ = ["column_mean", "like_input", "resolve_device", "threads_for", "to_tensor"]


def resolve_device(
    device: str | torch.device | None, dtype: torch.dtype | str | None
) -> tuple[torch.device, torch.dtype]:
    """Pick device and dtype: float64 on CPU (parity with sklearn), float32 on accelerators, unless told."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is None:
        dtype = torch.float64 if dev.type == "cpu" else torch.float32
    return dev, dtype


def to_tensor(x: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``x`` (numpy, memmap or tensor) as a tensor on ``device`` in ``dtype``; read-only arrays are copied."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    arr = np.asarray(x)
    if not arr.flags.writeable:  # e.g. a read-only memmap: torch must not alias it
        arr = np.array(arr)
    return torch.as_tensor(arr, device=device).to(dtype)


def like_input(y: torch.Tensor, reference: Any) -> Any:
    """Return numpy when the caller gave numpy (sklearn style), a tensor when the caller gave a tensor."""
    if isinstance(reference, torch.Tensor):
        return y
    return y.detach().cpu().numpy()


def column_mean(X: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Column means of ``X`` accumulated in float64 (a wide float32 memmap loses digits otherwise)."""
    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype).mean(0)
    return torch.as_tensor(np.asarray(X).mean(axis=0, dtype=np.float64), device=device).to(dtype)


def threads_for(work: float, device: torch.device) -> contextlib.AbstractContextManager:
    """One thread for CPU ops under ~3e7 multiply-adds (about a millisecond), all threads above.

    Why: q x q eigendecompositions and O(n q) updates gain little from threads, and on a loaded machine the
    OpenMP hand-off of every small call costs more than the call itself (measured on 2 busy cores: 100 ms vs
    5 ms for a 168 x 168 ``eigh``; 3.6 ms vs 0.2 ms for a [12, 576, 42] batched contraction). Big products
    (Gram matrices, K @ V) stay multi-threaded. One thread is :func:`convrnn.threads.torch_threads` ``(1)``.
    """
    if device.type == "cpu" and work < 3e7:
        return torch_threads(1)
    return contextlib.nullcontext()
