"""Gradient accumulation and the weight of each micro-batch's loss.

With ``accumulate = k`` a step's batch (this process's slice of it, under torchrun) is cut into k
micro-batches whose gradients add up before one optimizer step. The losses are means over their
micro-batch, so each is weighted by its share of the global batch: micro-batch ``m`` of ``n_m``
examples, out of a global batch of ``n``, is weighted ``world * n_m / n`` (``world``: DDP and FSDP2
average gradients over processes). The weights then sum to one over the whole step: k micro-batches
of ``batch / k`` (or uneven ones: the last batch of an epoch) give the gradient of the one full
batch, never the mean of per-micro-batch means (the classic mistake reported against the Hugging
Face Trainer). A process whose slice of a short last batch is empty still runs one forward and
backward (DDP and FSDP2 need every process in every step): on one example, weighted 0.
"""
from __future__ import annotations

import torch


def micro_batches(batch: dict[str, torch.Tensor], k: int, global_n: int, world: int,
                  spare: dict[str, torch.Tensor]) -> list[tuple[dict[str, torch.Tensor], int, float]]:
    """``batch`` cut into at most ``k`` non-empty micro-batches: ``(micro_batch, examples, weight)``.

    ``global_n``: examples in the step's batch over all processes; ``spare``: a one-example batch
    run with weight 0 when this process has no example in this step.
    """
    n = len(next(iter(batch.values())))
    if n == 0:
        return [(spare, 0, 0.0)]
    parts = [{f: t for f, t in zip(batch, ts)} for ts in zip(*(torch.tensor_split(t, min(k, n)) for t in batch.values()))]
    return [(p, m, world * m / global_n) for p in parts for m in [len(next(iter(p.values())))]]
