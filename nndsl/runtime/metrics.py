"""Evaluation metrics, accumulated over batches so the result is the whole set's, not a mean of means.

``DESCRIPTIONS`` says what each metric is (docs/runtime.md is generated from it); a run reports
them as ``val_<metric>`` (``evaluation.py``).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .losses import class_log_probs, flatten_classes

DESCRIPTIONS = {
    "loss": "the training loss on the evaluation set, weighted by batch size",
    "accuracy": "argmax over the last axis against integer targets (one output per target: "
                "threshold 0.5 on probabilities, 0 on logits)",
    "f1": "macro F1 from a confusion matrix over the whole set; classes that never occur in targets "
          "or predictions are left out of the mean (as scikit-learn does)",
    "mse": "mean squared error over all output elements",
    "mae": "mean absolute error over all output elements",
    "r2": "coefficient of determination per output column, averaged over columns",
    "perplexity": "exp of the mean per-token cross-entropy (from the model's outputs, whatever the loss)",
}


class Metrics:
    """Accumulates ``names`` over ``update(pred, y)`` calls; ``compute()`` returns {name: value}."""

    def __init__(self, names: list[str], loss_fn: Optional[Callable] = None, output_is_probs: bool = False):
        self.names = list(names)
        self.loss_fn = loss_fn
        self.output_is_probs = output_is_probs
        self.n = 0  # examples (batch rows) seen
        self.sums: dict[str, float] = {}
        self.confusion: Optional[torch.Tensor] = None
        self.r2_sums: Optional[torch.Tensor] = None  # per column: count, sum y, sum y^2, sum residual^2

    def _add(self, key: str, value: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(value)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, y: torch.Tensor, loss: Optional[torch.Tensor] = None) -> None:
        b = len(y)
        self.n += b
        if "loss" in self.names:
            value = loss if loss is not None else self.loss_fn(pred, y)
            self._add("loss", float(value) * b)
        if "accuracy" in self.names or "f1" in self.names:
            self._classes(pred, y)
        if any(m in self.names for m in ("mse", "mae", "r2")):
            self._regression(pred, y)
        if "perplexity" in self.names:
            p, t = flatten_classes(pred, y, "perplexity")
            nll = -class_log_probs(p, self.output_is_probs).gather(1, t[:, None])
            self._add("nll", nll.double().sum().item())
            self._add("tokens", len(t))

    def _classes(self, pred: torch.Tensor, y: torch.Tensor) -> None:
        if pred.dim() >= 1 and pred.shape[:-1] == y.shape and pred.shape[-1] > 1:
            classes = pred.shape[-1]
            guess, truth = flatten_classes(pred, y, "accuracy" if "accuracy" in self.names else "f1")
            guess = guess.argmax(dim=-1)
        else:  # one output per target: binary
            classes = 2
            threshold = 0.5 if self.output_is_probs else 0.0
            guess = (pred.reshape(-1) > threshold).long()
            truth = (y.reshape(-1).float() > 0.5).long()
        self._add("correct", (guess == truth).sum().item())
        self._add("counted", truth.numel())
        if "f1" in self.names:
            if self.confusion is None or len(self.confusion) < classes:
                grown = torch.zeros(classes, classes, dtype=torch.int64)
                if self.confusion is not None:
                    k = len(self.confusion)
                    grown[:k, :k] = self.confusion
                self.confusion = grown
            k = len(self.confusion)
            ok = (truth >= 0) & (truth < k)
            counts = torch.bincount((truth[ok] * k + guess[ok]).cpu(), minlength=k * k)
            self.confusion += counts.reshape(k, k)

    def _regression(self, pred: torch.Tensor, y: torch.Tensor) -> None:
        p = pred.double()
        t = (y.reshape(pred.shape) if y.shape != pred.shape and y.numel() == pred.numel() else y).double()
        err = p - t
        self._add("sq", (err * err).sum().item())
        self._add("abs", err.abs().sum().item())
        self._add("elems", err.numel())
        cols_t, cols_e = t.reshape(len(t), -1), err.reshape(len(err), -1)
        s = torch.stack([torch.full_like(cols_t[0], len(cols_t)), cols_t.sum(0), (cols_t ** 2).sum(0),
                         (cols_e ** 2).sum(0)]).cpu()
        self.r2_sums = s if self.r2_sums is None else self.r2_sums + s

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in self.names:
            value = getattr(self, f"_{name}")()
            if value is not None:
                out[name] = value
        return out

    def _loss(self) -> Optional[float]:
        return self.sums["loss"] / self.n if self.n else None

    def _accuracy(self) -> Optional[float]:
        return self.sums["correct"] / self.sums["counted"] if self.sums.get("counted") else None

    def _f1(self) -> Optional[float]:
        return macro_f1(self.confusion) if self.confusion is not None else None

    def _mse(self) -> Optional[float]:
        return self.sums["sq"] / self.sums["elems"] if self.sums.get("elems") else None

    def _mae(self) -> Optional[float]:
        return self.sums["abs"] / self.sums["elems"] if self.sums.get("elems") else None

    def _r2(self) -> Optional[float]:
        if self.r2_sums is None:
            return None
        n, sy, syy, ss_res = self.r2_sums
        ss_tot = syy - sy * sy / n
        r2 = torch.where(ss_tot > 0, 1.0 - ss_res / ss_tot.clamp_min(1e-300), torch.zeros_like(ss_tot))
        return float(r2.mean())

    def _perplexity(self) -> Optional[float]:
        if not self.sums.get("tokens"):
            return None
        return math.exp(min(self.sums["nll"] / self.sums["tokens"], 700.0))


def macro_f1(confusion: torch.Tensor) -> float:
    """Mean over classes of 2TP / (2TP + FP + FN); rows are true classes, columns predictions."""
    c = confusion.double()
    tp = c.diag()
    fp = c.sum(0) - tp
    fn = c.sum(1) - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    if not present.any():
        return 0.0
    return float((2 * tp[present] / denom[present]).mean())


def fmt(v: float) -> str:
    """A metric for a log line: 4 decimals, or 4 significant digits for small values."""
    return f"{v:.4f}" if v == 0 or abs(v) >= 0.01 else f"{v:.3e}"
