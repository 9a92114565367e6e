"""Training losses, built from a train section's ``loss = ...`` Spec.

``output_is_probs`` (the compiled model ends in softmax/sigmoid) picks the numerically right form:
cross-entropy on probabilities is NLL on ``log(p)``; binary cross-entropy on logits uses the
``with_logits`` form. Sequence outputs ``[B, T, V]`` with targets ``[B, T]`` are flattened.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import NndslConfigError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_EPS = 1e-12


def class_log_probs(pred: torch.Tensor, output_is_probs: bool) -> torch.Tensor:
    """Log-probabilities over the last axis, from logits or from probabilities."""
    if output_is_probs:
        return torch.log(pred.float().clamp_min(_EPS))
    return F.log_softmax(pred.float(), dim=-1)


def flatten_classes(pred: torch.Tensor, y: torch.Tensor, what: str = "cross_entropy"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``[..., C]`` predictions and ``[...]`` integer targets -> ``[N, C]`` and ``[N]``."""
    if y.is_floating_point() or y.is_complex():
        raise NndslConfigError(f"{what} takes integer class labels, but the targets are {_dtype(y)}",
                               hint="store y as integers for class labels; for real-valued targets use loss = mse")
    if pred.dim() < 1 or y.shape != pred.shape[:-1]:
        raise NndslConfigError(f"{what}: the model's output {list(pred.shape)} does not fit targets "
                               f"{list(y.shape)} (expected output [..., classes] for targets [...])")
    return pred.reshape(-1, pred.shape[-1]), y.reshape(-1).long()


def cross_entropy(pred: torch.Tensor, y: torch.Tensor, *, output_is_probs: bool = False,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of integer targets ``y`` under ``pred`` (logits, or probabilities)."""
    pred, y = flatten_classes(pred, y)
    if not output_is_probs:
        return F.cross_entropy(pred.float(), y, label_smoothing=label_smoothing)
    logp = class_log_probs(pred, True)
    nll = F.nll_loss(logp, y)
    if label_smoothing == 0.0:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * logp.mean(dim=-1).mean()


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _as_pred(pred: torch.Tensor, y: torch.Tensor, name: str) -> torch.Tensor:
    """``y`` as a float tensor of ``pred``'s shape ([N] targets for [N, 1] outputs are fine)."""
    if y.shape != pred.shape:
        if y.numel() != pred.numel():
            raise NndslConfigError(f"{name}: the model's output {list(pred.shape)} does not fit targets "
                                   f"{list(y.shape)}")
        y = y.reshape(pred.shape)
    return y.to(pred.dtype if pred.is_floating_point() else torch.float32)


def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.float(), _as_pred(pred, y, "mse").float())


def binary_cross_entropy(pred: torch.Tensor, y: torch.Tensor, *, output_is_probs: bool = False) -> torch.Tensor:
    """Mean BCE of 0/1 targets; ``pred`` are probabilities (``output_is_probs``) or logits."""
    t = _as_pred(pred, y, "binary_cross_entropy").float()
    if output_is_probs:
        return F.binary_cross_entropy(pred.float().clamp(_EPS, 1.0 - 1e-7), t)
    return F.binary_cross_entropy_with_logits(pred.float(), t)


def make_loss(spec, output_is_probs: bool) -> Loss:
    """The loss function a ``Spec`` (from config) names, closed over its arguments."""
    if spec.name == "cross_entropy":
        smoothing = float(spec.kwargs.get("label_smoothing", 0.0))
        return lambda p, y: cross_entropy(p, y, output_is_probs=output_is_probs, label_smoothing=smoothing)
    if spec.name == "binary_cross_entropy":
        return lambda p, y: binary_cross_entropy(p, y, output_is_probs=output_is_probs)
    if spec.name == "mse":
        return mse
    raise NndslConfigError(f"unknown loss '{spec.name}'", spec.span)
