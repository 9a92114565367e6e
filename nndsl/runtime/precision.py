"""Training precision: ``precision = fp32 | bf16 | fp16`` (``--precision`` on ``nndsl run``).

bf16 and fp16 run the forward under ``torch.autocast``: matmuls, convolutions and attention in
the low precision; norms, softmax and the loss in fp32 (PyTorch's autocast lists for the torch
backend's ops, ``nndsl.kernels._autocast`` for the Triton backend's). The weights stay fp32
(master weights: the optimizer updates them in fp32, their gradients arrive in fp32). The loss
is computed with autocast off, from fp32 predictions. fp16 scales the loss (``GradScaler``) so
small gradients do not flush to zero; the scaler's state goes into every checkpoint, so
``--resume`` continues with the same scale. Evaluation runs under the same autocast.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, ContextManager, Optional

import torch

from ..errors import NndslConfigError, Span

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
GROWTH_INTERVAL = 2000  # fp16: steps without an overflow before the loss scale doubles (GradScaler's default)


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The autocast region of `precision` on `device` (fp32: no region)."""
    dtype = DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


class Precision:
    """One run's precision on one device: its autocast region, loss scaling and scaler state."""

    def __init__(self, precision: str, device: torch.device, span: Optional[Span] = None):
        if precision not in PRECISIONS:
            raise NndslConfigError(f'precision: "{precision}" is not one of {", ".join(PRECISIONS)}', span)
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise NndslConfigError(f"precision bf16: the GPU {torch.cuda.get_device_name(device)} has no bf16",
                                   span, "use precision = fp16 (with loss scaling) or fp32")
        self.precision, self.device = precision, device
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16",
                                           growth_interval=GROWTH_INTERVAL)

    def autocast(self) -> ContextManager:
        """Where the forward runs (the training step's and the evaluation's)."""
        return autocast(self.precision, self.device)

    def loss(self, loss_fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """`loss_fn` run with autocast off (nndsl's losses compute in fp32 from fp32 predictions),
        so a loss called inside ``autocast()`` is the same as outside it."""
        if self.precision == "fp32":
            return loss_fn

        @functools.wraps(loss_fn)
        def fp32_loss(pred, y):
            with torch.autocast(self.device.type, enabled=False):
                return loss_fn(pred.float() if pred.is_floating_point() else pred, y)
        return fp32_loss

    def backward(self, loss: torch.Tensor) -> None:
        """Gradients of `loss` (fp16: of the loss times the scale)."""
        self.scaler.scale(loss).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale (before clipping reads them); a no-op unless fp16."""
        self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer) -> None:
        """The optimizer step (fp16: skipped when a gradient overflowed) and the scale's update."""
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The loss scaler's state for a checkpoint (empty unless fp16)."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: Optional[dict[str, Any]]) -> None:
        """Restore the scaler from a checkpoint; a checkpoint of a run without one leaves it fresh."""
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)
