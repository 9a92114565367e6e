"""Autocast for the custom ops and their wrappers: what runs in the low precision, what in fp32.

Under ``torch.autocast(device, dtype)`` (bf16 or fp16), as PyTorch does for its own ops on CUDA:

  LOW  (matmul, attention, conv2d)                          -> the autocast dtype
  FP32 (layer_norm, rms_norm, softmax, log_softmax, cross_entropy) -> float32

Floating-point tensors on the autocast device are cast, float64 and integer tensors are left
alone; the op then runs with autocast off, so nothing inside it is cast again (the gradients
flow back through the casts, so fp32 master weights get fp32 gradients).

Two places apply the policy. ``register`` puts it on an op's Autocast dispatch key, for callers
of ``torch.ops.nndsl.*`` (torch.compile traces it there). ``torch.library.register_autocast``
serves the FP32 ops as is; it casts to a dtype fixed when it is registered, so the LOW ops get a
kernel of their own that reads the dtype of the autocast region at each call. ``wrap`` applies
the same policy in the public wrappers, before their checks (under autocast a matmul meets bf16
activations and fp32 weights, which the families reject as mixed dtypes) and before they choose
between the op and the family's PyTorch reference.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch

LOW, FP32 = "low", "fp32"
AUTOCAST_KEYS = {"cpu": "AutocastCPU", "cuda": "AutocastCUDA"}  # device type -> its Autocast dispatch key

_LIB = torch.library.Library("nndsl", "FRAGMENT")  # holds the LOW ops' Autocast kernels


def target_dtype(policy: str, device_type: str) -> torch.dtype:
    """The dtype `policy` runs in inside the current autocast region of `device_type`."""
    return torch.get_autocast_dtype(device_type) if policy == LOW else torch.float32


def cast(value: Any, device_type: str, dtype: torch.dtype) -> Any:
    """`value` cast to `dtype` when it is a float tensor (not float64) on `device_type`."""
    if (isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64
            and value.device.type == device_type):
        return value.to(dtype)
    return value


def register(name: str, policy: str) -> None:
    """Give the custom op ``nndsl::<name>`` the autocast `policy` on every device of AUTOCAST_KEYS."""
    overload = getattr(torch.ops.nndsl, name).default
    for device_type, key in AUTOCAST_KEYS.items():
        if policy == FP32:
            torch.library.register_autocast(f"nndsl::{name}", device_type, torch.float32)
            continue

        def kernel(_keyset, *args, _device_type=device_type):
            dtype = target_dtype(LOW, _device_type)
            with torch.autocast(_device_type, enabled=False):  # drops the Autocast key: no recursion
                return overload(*(cast(a, _device_type, dtype) for a in args))

        _LIB.impl(name, kernel, key, with_keyset=True)


def _device_type(args: tuple, kwargs: dict) -> str | None:
    """The device type of the first tensor argument (None: no tensor)."""
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor):
            return v.device.type
    return None


def wrap(policy: str) -> Callable[[Callable], Callable]:
    """Decorate a public wrapper: inside an autocast region its tensors are cast per `policy` and
    it runs with autocast off; outside one it is called unchanged."""
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def call(*args, **kwargs):
            device_type = _device_type(args, kwargs)
            if device_type not in AUTOCAST_KEYS or not torch.is_autocast_enabled(device_type):
                return fn(*args, **kwargs)
            dtype = target_dtype(policy, device_type)
            args = tuple(cast(a, device_type, dtype) for a in args)
            kwargs = {k: cast(v, device_type, dtype) for k, v in kwargs.items()}
            with torch.autocast(device_type, enabled=False):
                return fn(*args, **kwargs)
        call.autocast_policy = policy
        return call
    return decorate
