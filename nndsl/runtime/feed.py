"""Which field of a batch feeds each model input and each data field of the objective, on the device."""
from __future__ import annotations

import torch

from . import data
from .config import TrainConfig


def to_device(batch: dict, dev: torch.device) -> dict:
    nb = dev.type == "cuda"
    return {k: t.to(dev, non_blocking=nb) for k, t in batch.items()}


def forward(model, x):
    return model(*x) if isinstance(x, (list, tuple)) else model(x)


def first(pred):
    return pred[0] if isinstance(pred, (tuple, list)) else pred


class Feed:
    """Which field of a batch feeds each model input and each data field of the objective
    (``data.fields``' rules), converted to the type each takes."""

    def __init__(self, model, source: data.Source, cfg: TrainConfig, key: str):
        plan = data.Plan.of_module(model, cfg.loss)
        span, what, names = cfg.spans.get(key), f"the {'training' if key == 'data' else 'eval'} set", list(source.fields)
        if plan is None:  # a plain torch module: x in, y for the loss
            self.inputs, self.targets = [("x", None)], [("y", None)]
            return
        fields = data.input_fields([v.name for v in plan.inputs], names, span, what)
        self.inputs = [(f, v.type) for f, v in zip(fields, plan.inputs)]
        self.targets = [(data.target_field(v.name, names, cfg.spans.get("loss") or span, what), v.type)
                        for v in plan.targets]

    def inputs_of(self, batch: dict) -> list[torch.Tensor]:
        return [data.adapt(batch[f], t) for f, t in self.inputs]

    def targets_of(self, batch: dict) -> list[torch.Tensor]:
        return [data.adapt(batch[f], t) for f, t in self.targets]

    def scored(self, batch: dict, inputs: list[torch.Tensor]) -> torch.Tensor:
        """What metrics compare the first output with: ``y``, else (an autoencoder) the first input."""
        return batch["y"] if "y" in batch else inputs[0]
