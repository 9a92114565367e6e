"""Triton kernels for nndsl's hot paths, each a differentiable function with a PyTorch reference.

Shipped inside the wheel as ``nndsl.kernels`` (the repository keeps them in the top-level
``kernels/`` folder). One family per module: the ``@triton.jit`` kernels, the launcher, the
``torch.autograd.Function``, the ``*_reference`` in plain PyTorch, and the public function.
On CUDA tensors (or on the CPU under ``TRITON_INTERPRET=1``) the Triton kernels run;
otherwise the public functions fall back to their PyTorch reference.

The public names are bound here after the family modules are imported, so
``nndsl.kernels.matmul`` is the function (its module is ``nndsl.kernels.matmul`` in
``sys.modules``, reachable with ``importlib.import_module``).
"""
from __future__ import annotations

from .attention import attention, attention_reference
from .conv2d import conv2d, conv2d_reference
from .cross_entropy import cross_entropy, cross_entropy_reference
from .linear_cross_entropy import linear_cross_entropy, linear_cross_entropy_reference
from .matmul import matmul, matmul_reference
from .norms import layer_norm, layer_norm_reference, rms_norm, rms_norm_reference
from .softmax import log_softmax, log_softmax_reference, softmax, softmax_reference
from . import library  # noqa: E402  (torch.library custom ops over the families above)

__all__ = [
    "attention", "attention_reference",
    "conv2d", "conv2d_reference",
    "cross_entropy", "cross_entropy_reference",
    "linear_cross_entropy", "linear_cross_entropy_reference",
    "layer_norm", "layer_norm_reference", "rms_norm", "rms_norm_reference",
    "log_softmax", "log_softmax_reference", "softmax", "softmax_reference",
    "matmul", "matmul_reference",
]
