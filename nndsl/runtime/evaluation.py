"""When a run evaluates, on how much of the evaluation set, and what its metrics are called.

* **When** (``eval_interval``): ``eval_every`` when the file sets it (steps; epochs in epoch mode),
  else at most ``MAX_EVALUATIONS`` evaluations per run, never more often than once per epoch in
  epoch mode, and only as many as keep evaluation about ``EVAL_SHARE`` of the run's compute (an
  evaluation batch is a forward only, ~1/3 of a training step). A short run evaluates once, at the end.
* **How much**: ``eval_batches`` batches at the intermediate evaluations (None: the whole set);
  the final evaluation always covers the whole set, so the run's final metrics are the set's.
* **Names**: evaluation metrics are reported as ``val_<metric>`` (``val_loss``, ``val_accuracy``),
  the running training loss as ``train_loss``, in logs, progress bars, ``metrics.json`` and the
  value ``fit`` returns.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from tqdm import tqdm

from . import data
from .config import TrainConfig
from .metrics import Metrics
from .precision import autocast

MAX_EVALUATIONS = 10  # per run, by default
EVAL_SHARE = 0.2  # at most this share of a run's compute goes to evaluation by default (intermediate and final)
_FORWARD_COST = 1 / 3  # an evaluation batch (forward only) against a training step (forward + backward)
PREFIX = "val_"  # metrics computed on the evaluation set
TRAIN_LOSS = "train_loss"  # the mean training loss since the previous evaluation


def val_name(metric: str) -> str:
    """``accuracy`` -> ``val_accuracy`` (``train_loss`` and names already prefixed stay)."""
    return metric if metric == TRAIN_LOSS or metric.startswith(PREFIX) else PREFIX + metric


def eval_interval(cfg: TrainConfig, total: int, per_epoch: int, eval_size: Optional[int]) -> int:
    """Optimizer steps between evaluations (the last step always evaluates too).

    ``eval_size``: examples in the evaluation set (None: no evaluation set, only ``train_loss`` is
    logged, still at most ``MAX_EVALUATIONS`` times)."""
    unit = per_epoch if cfg.mode == "epochs" else 1  # epoch mode: evaluate at epoch ends only
    if cfg.eval_every is not None:
        return cfg.eval_every * unit
    units = max(1, math.ceil(total / unit))
    count = min(MAX_EVALUATIONS, units)
    if eval_size is not None:
        eval_steps = cfg.eval_batches or data.batches_per_epoch(eval_size, cfg.batch)
        count = min(count, max(1, math.floor(EVAL_SHARE * total / (_FORWARD_COST * eval_steps))))
    return math.ceil(units / count) * unit


def evaluate(model, source: data.Source, cfg: TrainConfig, loss_fn, output_is_probs: bool,
             dev: torch.device, objective: Optional[Callable] = None, *, limit: Optional[int] = None,
             progress: bool = False) -> dict[str, float]:
    """``cfg.metrics`` as ``val_<metric>`` over ``source`` (all of it, or ``limit`` batches), model in
    eval mode, the forward in ``cfg.precision`` (the metrics in fp32 or wider), with a progress bar.
    The loss is the ``objective``'s where the model has one (the very loss it trains on), else
    ``loss_fn``'s."""
    from .feed import Feed, first, forward, to_device

    was_training = model.training
    model.eval()
    m = Metrics(cfg.metrics, loss_fn, output_is_probs)
    feed = Feed(model, source, cfg, "eval")
    batches = limit if limit is not None else data.batches_per_epoch(len(source), cfg.batch)
    bar = tqdm(total=batches, desc="eval" if limit is None else f"eval ({limit} batches)", unit="batch",
               disable=not progress, leave=False, dynamic_ncols=True)
    try:
        with torch.no_grad():
            for i, batch in enumerate(data.eval_batches(source, cfg.batch, limit, workers=cfg.workers,
                                                        pin=dev.type == "cuda")):
                batch = to_device(batch, dev)
                x = feed.inputs_of(batch)
                with autocast(cfg.precision, dev):
                    pred = first(forward(model, x))
                    loss = objective(*x, *feed.targets_of(batch)) \
                        if objective is not None and "loss" in cfg.metrics else None
                if i == 0:
                    data.check_targets(pred, source, cfg, "eval")
                m.update(pred, feed.scored(batch, x), loss)
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    return {val_name(k): v for k, v in m.compute().items()}


def metrics_without_eval(cfg: TrainConfig) -> Optional[str]:
    """A warning when the file asks for metrics but names no evaluation set to compute them on."""
    if cfg.eval is not None or "metrics" not in cfg.spans:
        return None
    span = cfg.spans["metrics"]
    excerpt = span.excerpt()
    return (f"{span}: warning: metrics [{', '.join(cfg.metrics)}] are computed on the evaluation set, but the "
            f"train section has no `eval = ...`: only {TRAIN_LOSS} will be reported"
            + (f"\n{excerpt}" if excerpt else "")
            + "\n    add an evaluation set, e.g. eval = mnist(\"data/mnist\", split=\"test\"), or remove `metrics`")
