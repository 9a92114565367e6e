"""Helpers shared by every kernel family: when to launch Triton, argument checks."""
from __future__ import annotations

import os

import torch

try:  # Triton is optional: without it every family runs its PyTorch reference.
    import triton  # noqa: F401
    import triton.language as tl  # noqa: F401

    HAS_TRITON = True
except Exception:  # pragma: no cover - depends on the install
    HAS_TRITON = False

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(*tensors: torch.Tensor | None) -> bool:
    """Launch the Triton kernel when every tensor is on CUDA, or on CPU under the interpreter.

    Anything else (CPU without the interpreter, no Triton installed) runs the PyTorch reference.
    """
    if not HAS_TRITON:
        return False
    ts = [t for t in tensors if t is not None]
    if not ts:
        return False
    if all(t.is_cuda for t in ts):
        return True
    return interpreting() and all(t.device.type == "cpu" for t in ts)


def check_float(name: str, t: torch.Tensor, *, ndim: int | tuple[int, ...] | None = None) -> None:
    """Raise a ValueError naming `name` when `t` is not a float tensor of a supported rank/dtype."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"{name} has dtype {t.dtype}; supported: float32, float16, bfloat16")
    if ndim is not None:
        ok = (t.dim() in ndim) if isinstance(ndim, tuple) else (t.dim() == ndim)
        if not ok:
            raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(t.shape)}")


def check_same(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise a ValueError when two tensors differ in dtype or device."""
    if a.dtype != b.dtype:
        raise ValueError(f"{name_a} ({a.dtype}) and {name_b} ({b.dtype}) must have the same dtype")
    if a.device != b.device:
        raise ValueError(f"{name_a} ({a.device}) and {name_b} ({b.device}) must be on the same device")
