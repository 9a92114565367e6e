"""What the training loop tracks between evaluations, on the device (no host sync per step).

``Interval``: the running training loss and throughput since the last evaluation.
``LossWatch``: the first step whose loss was nan or inf, updated every step with tensor ops and
read (one sync) only at a log interval, before a checkpoint and at an evaluation.
"""
from __future__ import annotations

import math
import time
from typing import Any, Optional

import torch


class Interval:
    """Running training loss and throughput since the last evaluation (the wall clock is read after
    a sync, so CUDA time is counted). Its state goes into checkpoints, so a resumed run reports the
    same interval losses as an uninterrupted one."""

    def __init__(self, dev: torch.device, saved: Optional[dict[str, Any]] = None):
        self.dev, self.loss, self.n = dev, torch.zeros((), device=dev, dtype=torch.float64), 0
        self.start, self.seconds = time.perf_counter(), 0.0
        if saved:
            self.loss.copy_(saved["loss"])
            self.n = int(saved["n"])
            self.start -= float(saved["seconds"])

    def add(self, loss: torch.Tensor, n: int) -> None:
        self.loss += loss.detach() * n
        self.n += n

    def mean(self) -> float:
        return self.loss.item() / max(1, self.n)

    def stop(self) -> float:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        self.seconds = time.perf_counter() - self.start
        return self.seconds

    def rate(self) -> float:
        seconds = self.seconds or time.perf_counter() - self.start
        return self.n / seconds if seconds > 0 else 0.0

    def state(self) -> dict[str, Any]:
        return {"loss": self.loss.detach().cpu(), "n": self.n, "seconds": time.perf_counter() - self.start}


class LossWatch:
    """The first optimizer step (1-based) whose loss was not finite, and that loss, kept on the device."""

    def __init__(self, dev: torch.device):
        self.step = torch.full((), -1, dtype=torch.int64, device=dev)
        self.value = torch.zeros((), dtype=torch.float64, device=dev)

    def update(self, loss: torch.Tensor, step: int) -> None:
        first = ~torch.isfinite(loss.detach()) & (self.step < 0)
        self.step = torch.where(first, step, self.step)
        self.value = torch.where(first, loss.detach().to(torch.float64), self.value)

    def first_bad(self) -> Optional[tuple[int, float]]:
        """(step, loss) of the first non-finite loss, or None (one host sync)."""
        step = int(self.step)
        return None if step < 0 else (step, float(self.value))


def describe_nonfinite(value: float) -> str:
    return "nan" if math.isnan(value) else str(value)
