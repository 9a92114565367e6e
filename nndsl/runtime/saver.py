"""When ``fit`` checkpoints, what it keeps, and what it refuses to save.

A periodic checkpoint every ``checkpoint_every`` epochs (step mode: steps; default every epoch, or
every evaluation in step mode), also whenever ``checkpoint_minutes`` have passed since the last one,
and always at the end; the newest ``keep_last`` stay. A best checkpoint is written when an
evaluation improves the ``best`` metric. Nothing with non-finite weights is ever written.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..errors import NndslConfigError, NndslDataError
from . import checkpoint as ckpt
from .config import HIGHER_IS_BETTER, TrainConfig
from .evaluation import val_name

AGREE_EVERY = 25  # steps between readings of the checkpoint clock under torchrun (one broadcast each)


def best_metric(cfg: TrainConfig, has_eval: bool) -> Optional[tuple[str, float]]:
    """(metric, sign) to rank checkpoints by (sign +1: higher is better), or None for no best checkpoint:
    ``best``, else the early-stopping metric, else the first of ``metrics`` (train_loss without eval)."""
    stop = cfg.early_stop.kwargs["metric"] if cfg.early_stop is not None else "best"
    name = cfg.best or (stop if stop != "best" else None) or default_metric(cfg, has_eval)
    return None if name == "none" else ranking(name)


def default_metric(cfg: TrainConfig, has_eval: bool) -> str:
    return cfg.metrics[0] if has_eval and cfg.metrics else "train_loss"


def ranking(name: str) -> tuple[str, float]:
    """A metric as the train section names it ("accuracy", "-loss") -> (recorded name, sign)."""
    if name[0] in "+-":  # evaluation metrics are recorded as val_<metric>
        return val_name(name[1:]), 1.0 if name[0] == "+" else -1.0
    return val_name(name), 1.0 if name.removeprefix("val_") in HIGHER_IS_BETTER else -1.0


def better(entry: dict[str, Any], metric: tuple[str, float], than: Optional[float], what: str) -> Optional[float]:
    """``entry``'s value of ``metric`` when it is finite and beats ``than`` (None: nothing yet), else None."""
    key, sign = metric
    if key not in entry:
        raise NndslConfigError(f"{what} = {key}: the run computes no '{key}' (it has {', '.join(entry)})",
                               hint="pick one of `metrics` (with an eval set), or train_loss")
    value = float(entry[key])
    if not math.isfinite(value) or (than is not None and sign * value <= sign * than):
        return None
    return value


class Saver:
    """Writes the checkpoints of one run into ``run_dir`` (None: writes nothing)."""

    def __init__(self, run_dir: Optional[Path], cfg: TrainConfig, *, every: int, has_eval: bool,
                 log: Callable[[str], None], agree: Optional[Callable[[bool], bool]] = None):
        self.run_dir, self.every, self.keep_last, self.log = run_dir, every, cfg.keep_last, log
        self.agree = agree  # many processes: rank 0's reading of the clock, for every rank
        self.seconds = cfg.checkpoint_minutes * 60.0
        self.metric = best_metric(cfg, has_eval)
        self.best_value: Optional[float] = None  # restored from the state on resume
        self.last_saved: Optional[int] = None  # the step of the newest good checkpoint
        self.clock = time.monotonic()

    def due(self, step: int) -> bool:
        """A periodic checkpoint is due at ``step`` (by count or by time; with many processes the
        clock is read every ``AGREE_EVERY`` steps, rank 0's, so that all save together)."""
        if step % self.every == 0:
            return True
        late = time.monotonic() - self.clock >= self.seconds
        if self.agree is None:
            return late
        return step % AGREE_EVERY == 0 and self.agree(late)

    def improved(self, entry: dict[str, Any]) -> bool:
        """Whether the evaluation ``entry`` beats the best so far by the ``best`` metric."""
        if self.metric is None or self.run_dir is None:
            return False
        value = better(entry, self.metric, self.best_value, "best")
        if value is None:
            return False
        self.best_value = value
        return True

    def save(self, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any], *, periodic: bool = True,
             best: bool = False) -> None:
        """Write the checkpoint of ``step`` (weights must be finite: the caller checks) and prune."""
        if self.run_dir is None or not (periodic or best):
            return
        state = dict(state, best_value=self.best_value)
        ckpt.write(self.run_dir, step, weights, state, periodic=periodic, best=best)
        ckpt.prune(self.run_dir, self.keep_last)
        self.clock = time.monotonic()
        self.last_saved = step

    def where(self) -> str:
        """Where the last good checkpoint is, for messages."""
        if self.run_dir is None:
            return "no run folder, nothing was saved"
        if self.last_saved is None:
            return f"no checkpoint was written in {self.run_dir}"
        return f"the last good checkpoint (step {self.last_saved}) is kept in {self.run_dir / 'checkpoints'}"


def claim(run_dir: Path, *, resume: bool, overwrite: bool, log: Callable[[str], None], dry: bool = False) -> None:
    """Check, before any work, that the run folder fits the request: ``resume`` needs a checkpoint;
    a fresh run refuses a folder holding an earlier run's checkpoints unless ``overwrite`` (then
    they are removed, unless ``dry``: the CLI checks before compiling, ``fit`` removes)."""
    found = ckpt.listing(run_dir)
    if resume:
        if not found:
            raise NndslDataError(f"nothing to resume: {run_dir} holds no checkpoint",
                                 hint="--resume continues a run whose folder has checkpoints/step-*")
        return
    if found and not overwrite:
        raise NndslConfigError(f"{run_dir} already holds a run (checkpoints up to step {found[-1].step})",
                               hint="continue it with --resume, start afresh with --overwrite, or give another --out")
    if dry:
        return
    for c in found:
        ckpt.remove(c.path)
    if found:
        log(f"--overwrite: removed the {len(found)} checkpoints of the earlier run in {run_dir}")
