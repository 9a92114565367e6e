"""Triton kernels for nndsl's hot paths, each a differentiable function with a PyTorch reference.

Shipped inside the wheel as ``nndsl.kernels`` (the repository keeps them in the top-level
``kernels/`` folder). One family per module: the ``@triton.jit`` kernels, the launcher, the
``torch.autograd.Function``, the ``*_reference`` in plain PyTorch, and the public function.
On CUDA tensors (or on the CPU under ``TRITON_INTERPRET=1``) the Triton kernels run;
otherwise the public functions fall back to their PyTorch reference.

Families are imported lazily, so ``import nndsl.kernels`` does not import Triton.
"""
from __future__ import annotations

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "matmul": "matmul",
    "matmul_reference": "matmul",
    "attention": "attention",
    "attention_reference": "attention",
    "conv2d": "conv2d",
    "conv2d_reference": "conv2d",
    "cross_entropy": "cross_entropy",
    "cross_entropy_reference": "cross_entropy",
    "layer_norm": "norms",
    "layer_norm_reference": "norms",
    "rms_norm": "norms",
    "rms_norm_reference": "norms",
    "softmax": "softmax",
    "softmax_reference": "softmax",
    "log_softmax": "softmax",
    "log_softmax_reference": "softmax",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'nndsl.kernels' has no attribute {name!r}")


def __dir__():
    return __all__
