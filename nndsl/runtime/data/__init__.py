"""Datasets a train section can name, loaded from local files only (nndsl never downloads).

    data = mnist("data/mnist", split="train")                     # IDX .gz files      (idx.py)
    data = text("input.txt", context=256, split=0.9, part="val")  # char-level text    (text.py)
    data = npz("letters.npz", x="x_train", y="y_train", scale=1.0 / 32768)   # or a folder of .npy (mmap)
    data = npz("pairs.npz", fields=["a", "b", "label"], split=0.9)           # named fields, a split
    data = csv("table.csv", target="y", normalize=true, on=["x"])  # numeric table      (arrays.py)
    data = synthetic_regression(n=1000, features=10)

Every set yields named fields (``x``, ``y``, npz keys, csv columns) that feed the model's inputs
and the loss by name (``fields.py``); what was done to them is recorded with a run (``record.py``).
Each constructor is a plain function; its Python signature (names, annotations, defaults) is the
signature the train section is checked against. The keyword-only ``base_dir`` is the .nn file's
folder, where relative paths are looked up first (``paths.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ...errors import NndslError
from .arrays import csv, npz, synthetic_regression
from .idx import fashion_mnist, mnist, read_idx
from .fields import FieldDesc, Plan, adapt, input_fields, target_field
from .record import Preprocess, record
from .sources import (EpochBatches, Mapped, Source, TextSource, batches_per_epoch, eval_batches, global_batch,
                      loader, train_batches)
from .text import text
from .validate import check_targets, fits as check_fits, loaded

DATASETS: dict[str, Callable[..., Source]] = {
    "mnist": mnist,
    "fashion_mnist": fashion_mnist,
    "text": text,
    "npz": npz,
    "csv": csv,
    "synthetic_regression": synthetic_regression,
}


def load(spec, base_dir: Optional[Path]) -> Source:
    """The dataset a ``Spec`` names, checked on its own (``validate.loaded``: non-empty, finite);
    errors without a location get the spec's (the train entry's)."""
    try:
        return loaded(DATASETS[spec.name](**spec.kwargs, base_dir=base_dir), _what(spec))
    except NndslError as e:
        if e.span is None:
            e.span = spec.span
        raise


def _what(spec) -> str:
    """``npz('letters.npz')``: the set named as in messages."""
    first = next(iter(spec.kwargs.values()), None) if spec.name != "synthetic_regression" else None
    return f"{spec.name}({first!r})" if isinstance(first, str) else f"{spec.name}()"


__all__ = ["DATASETS", "load", "loaded", "check_fits", "check_targets", "Source", "TextSource", "Mapped", "EpochBatches",
           "FieldDesc", "Plan", "adapt", "input_fields", "target_field", "Preprocess", "record",
           "batches_per_epoch", "global_batch", "eval_batches", "loader", "train_batches", "mnist", "fashion_mnist", "text", "npz", "csv", "synthetic_regression",
           "read_idx"]
