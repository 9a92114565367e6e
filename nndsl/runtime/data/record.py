"""The data's preprocessing, recorded with a run and applied again to raw inputs after ``nndsl.load``.

``record(src, inputs)`` is what run.json keeps under ``"data"``::

    {"inputs": ["x"],                                   # the field feeding each model input, in order
     "fields": {"x": {"dtype": "float32", "shape": [1, 28, 28]}, "y": {...}},
     "preprocess": {"x": {"dtype": "f32", "scale": 0.00392, "mean": 0.1307, "std": 0.3081}},
     "classes": ["0", "1", ...]}                        # class names, where the data name them

``Preprocess`` reads it back (every part type-checked) and turns raw inputs (pixels 0..255, int16
samples, a string of text) into what the model was trained on.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from ...errors import NndslDataError
from ...ir.types import DTYPES
from .arrays import apply_prep
from .sources import Source, TextSource


def record(src: Source, inputs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The JSON-able description of ``src``'s fields and preprocessing (``inputs``: (field, type) per model input)."""
    fields = {}
    for name in src.fields:
        dtype, shape = src.field_type(name)
        fields[name] = {"dtype": str(dtype).removeprefix("torch."), "shape": list(shape)}
    out: dict[str, Any] = {"inputs": [f for f, _ in inputs], "fields": fields, "preprocess": dict(src.preprocess)}
    if src.classes is not None:
        out["classes"] = list(src.classes)
    if isinstance(src, TextSource):
        out["vocab"] = list(src.vocab)
    return out


class Preprocess:
    """A run's recorded preprocessing, applied to raw inputs (``nndsl.load(run).preprocess(...)``)."""

    def __init__(self, rec: Optional[dict], input_types: Sequence[Any], where: str):
        rec = rec or {}
        if not isinstance(rec, dict):
            raise NndslDataError(f"{where}: field 'data' must be an object, got {type(rec).__name__}")
        self.inputs = list(rec.get("inputs") or [None] * len(input_types))
        self.steps = rec.get("preprocess") or {}
        self.classes = rec.get("classes")
        self.vocab = rec.get("vocab")
        self.types = list(input_types)
        ok = (len(self.inputs) == len(self.types) and isinstance(self.steps, dict)
              and all(isinstance(v, dict) and all(k in ("dtype", "scale", "mean", "std") for k in v)
                      for v in self.steps.values())
              and (self.classes is None or all(isinstance(c, str) for c in self.classes))
              and (self.vocab is None or all(isinstance(c, str) and len(c) == 1 for c in self.vocab)))
        if not ok:
            raise NndslDataError(f"{where}: field 'data' does not describe this model's inputs and preprocessing")

    def __call__(self, *raw: Any) -> list[torch.Tensor]:
        """Each raw input as the model takes it: text encoded by the vocabulary, then the recorded
        scale and normalization, the model's dtype, and its per-example shape where only that differs."""
        if len(raw) != len(self.types):
            raise NndslDataError(f"the model takes {len(self.types)} input(s), got {len(raw)}")
        return [self._one(r, f, t) for r, f, t in zip(raw, self.inputs, self.types)]

    def _one(self, raw: Any, field: Optional[str], want) -> torch.Tensor:
        if isinstance(raw, str):
            raw = [self.encode(raw)]
        step = self.steps.get(field) if field is not None else None
        t = apply_prep(step, _as_array(raw)) if step else torch.as_tensor(_as_array(raw))
        t = t.to(DTYPES[want.dtype]) if want.is_float or not t.is_floating_point() else t
        static = [d for d in want.shape[1:] if isinstance(d, int)]
        if len(static) == want.rank - 1 and t.dim() != want.rank and t.numel() % max(1, _prod(static)) == 0:
            t = t.reshape(-1, *static)
        return t

    def encode(self, text: str) -> list[int]:
        if self.vocab is None:
            raise NndslDataError("this run was not trained on text: it has no vocabulary to encode a string")
        index = {c: i for i, c in enumerate(self.vocab)}
        missing = sorted({c for c in text if c not in index})
        if missing:
            raise NndslDataError(f"characters outside the run's vocabulary: {''.join(missing)!r}")
        return [index[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        if self.vocab is None:
            raise NndslDataError("this run was not trained on text: it has no vocabulary to decode ids")
        return "".join(self.vocab[int(i)] for i in ids)


def _as_array(raw: Any):
    import numpy as np

    return raw if isinstance(raw, torch.Tensor) else np.asarray(raw)


def _prod(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def attach(module: torch.nn.Module, rec: Optional[dict], where: str) -> None:
    """Give a loaded ``module`` its run's preprocessing: ``module.preprocess(*raw)`` -> model inputs,
    ``module.predict(*raw, labels=False)`` -> outputs (or class names), ``module.classes``."""
    import types

    prep = Preprocess(rec, [v.type for v in module.graph.inputs], where)
    module.__dict__.update(preprocess=prep, classes=prep.classes, predict=types.MethodType(_predict, module))


@torch.no_grad()
def _predict(module: torch.nn.Module, *raw: Any, labels: bool = False) -> Any:
    """The model (in eval mode) on raw inputs; ``labels``: the class name (or index) of each example's argmax."""
    device = next(iter(module.parameters()), torch.empty(0)).device
    out = module(*(t.to(device) for t in module.preprocess(*raw)))
    if not labels:
        return out
    first = out[0] if isinstance(out, (tuple, list)) else out
    best = first.argmax(dim=-1).reshape(-1).tolist()
    names = module.preprocess.classes
    return [names[i] if names is not None and i < len(names) else i for i in best]
