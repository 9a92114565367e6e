"""Gradient accumulation and the weight of each micro-batch's loss.

With ``accumulate = k`` a step's batch (this process's slice of it, under torchrun) is cut into k
micro-batches whose gradients add up before one optimizer step. The losses are means over their
micro-batch, so each is weighted by its share of the global batch: micro-batch ``m`` of ``n_m``
examples, out of a global batch of ``n``, is weighted ``world * n_m / n`` (``world``: DDP and FSDP2
average gradients over processes). The weights then sum to one over the whole step: k micro-batches
of ``batch / k`` (or uneven ones: the last batch of an epoch) give the gradient of the one full
batch, never the mean of per-micro-batch means (the classic mistake reported against the Hugging
Face Trainer). Every process runs the same number of micro-batches, ``min(k, batch / world)``
(DDP and FSDP2 communicate in each forward or on the last backward, so all must take part): a
micro-batch with no example (a process's slice of a short last batch, cut in k) runs one spare
example, weighted 0.
"""
from __future__ import annotations

import torch


def micro_batches(batch: dict[str, torch.Tensor], parts: int, global_n: int, world: int,
                  spare: dict[str, torch.Tensor]) -> list[tuple[dict[str, torch.Tensor], int, float]]:
    """``batch`` cut into ``parts`` micro-batches: ``(micro_batch, examples, weight)``.

    ``global_n``: examples in the step's batch over all processes; ``spare``: a one-example batch
    that stands in, weighted 0, for a micro-batch with no example.
    """
    cuts = zip(*(torch.tensor_split(t, parts) for t in batch.values()))
    out = []
    for micro in ({f: t for f, t in zip(batch, ts)} for ts in cuts):
        m = len(next(iter(micro.values())))
        out.append((micro, m, world * m / global_n) if m else (spare, 0, 0.0))
    return out
