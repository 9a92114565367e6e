"""A trained classifier on files: ``nndsl predict RUN --input FILE...``.

Each file gives one or more examples in the form the training data had before preprocessing
(pixels 0..255 for MNIST): an image (PNG, JPEG, BMP, GIF: read by Pillow, made grayscale or RGB
and resized to the model's input), a ``.npy``/``.npz`` array (one example, or one per row of the
first axis; a ``.npz`` names its array with ``key`` unless it holds one), or a ``.csv`` file (one
example per row; a header row is skipped). The run's recorded preprocessing (``nndsl.load``:
scale, normalization) is applied, and ``top_k`` gives the ``k`` most probable classes per example
with the run's class names (or the class indices where the data named none).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .errors import NndslDataError, escape
from .ir import dims as D

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Prediction:
    """The ``k`` best classes of one example: (class name or index, probability), best first."""

    source: str  # "digit.png", "batch.npz[3]", "rows.csv:4"
    top: list[tuple[str, float]]


def example_shape(module: torch.nn.Module) -> tuple[int, ...]:
    """One example's shape as the data gave it (run.json's field), else the model input's static dims."""
    data = (getattr(module, "nndsl_meta", None) or {}).get("data") or {}
    field = (data.get("inputs") or [None])[0]
    shape = ((data.get("fields") or {}).get(field) or {}).get("shape")
    if isinstance(shape, list) and all(isinstance(d, int) for d in shape):
        return tuple(shape)
    dims = module.graph.inputs[0].type.shape[1:]
    if not all(D.is_static(d) for d in dims):
        raise NndslDataError(f"the model's input {module.graph.inputs[0].type} has a symbolic size beyond the "
                             "batch: predict reads fixed-size examples")
    return tuple(dims)


def read_examples(path: Path, shape: tuple[int, ...], key: Optional[str] = None) -> list[tuple[str, np.ndarray]]:
    """(label, array of ``shape``) for each example in file ``path``."""
    if not path.is_file():
        raise NndslDataError(f"no such file: {escape(str(path))}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return [(path.name, read_image(path, shape))]
    if suffix in (".npy", ".npz"):
        arr = _array(path, key)
    elif suffix == ".csv":
        return _csv_rows(path, shape)
    else:
        raise NndslDataError(f"{escape(path.name)}: cannot read {suffix or 'a file without a suffix'}",
                             hint="give an image (" + ", ".join(IMAGE_SUFFIXES) + "), .npy, .npz or .csv")
    per = int(np.prod(shape))
    if arr.size == per:
        return [(path.name, arr.reshape(shape))]
    if arr.ndim >= 2 and int(np.prod(arr.shape[1:])) == per:
        return [(f"{path.name}[{i}]", row.reshape(shape)) for i, row in enumerate(arr)]
    raise NndslDataError(f"{escape(path.name)}: an array of shape {list(arr.shape)} is neither one example of "
                         f"shape {list(shape)} nor a stack of them")


def read_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The image's pixels (0..255) as one example of ``shape``: [C, H, W] (C 1 or 3), [H, W], or a flat
    vector of H*W pixels of a square image."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise NndslDataError("reading images needs Pillow", hint="pip install pillow") from None
    if len(shape) == 3 and shape[0] in (1, 3):
        channels, (h, w) = shape[0], shape[1:]
    elif len(shape) == 2:
        channels, (h, w) = 1, shape
    elif len(shape) == 1 and round(shape[0] ** 0.5) ** 2 == shape[0]:
        channels, h, w = 1, round(shape[0] ** 0.5), round(shape[0] ** 0.5)
    else:
        raise NndslDataError(f"{escape(path.name)}: the model takes examples of shape {list(shape)}, not an image "
                             "(expected [C, H, W] with C 1 or 3, or [H, W])")
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            pixels = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise NndslDataError(f"{escape(path.name)}: not an image Pillow can read ({e})") from None
    if channels == 3:
        pixels = pixels.transpose(2, 0, 1)
    return pixels.reshape(shape)


def _array(path: Path, key: Optional[str]) -> np.ndarray:
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise NndslDataError(f"{escape(path.name)}: not a readable .npy/.npz file ({e})") from None
    if isinstance(f, np.ndarray):
        return f
    with f:
        keys = list(f.keys())
        if key is None and len(keys) != 1:
            raise NndslDataError(f"{escape(path.name)} holds {len(keys)} arrays ({', '.join(map(escape, keys))}): "
                                 "say which with --key")
        name = key if key is not None else keys[0]
        if name not in keys:
            raise NndslDataError(f"{escape(path.name)} has no array '{escape(name)}' (it has {', '.join(map(escape, keys))})")
        return f[name]


def _csv_rows(path: Path, shape: tuple[int, ...]) -> list[tuple[str, np.ndarray]]:
    """One example per row of numbers; a first row that is not numbers is a header."""
    per = int(np.prod(shape))
    out = []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                values = [float(c) for c in row]
            except ValueError:
                if line == 1:
                    continue
                raise NndslDataError(f"{escape(path.name)}:{line}: not a row of numbers") from None
            if len(values) != per:
                raise NndslDataError(f"{escape(path.name)}:{line}: {len(values)} values, the model takes {per} "
                                     f"per example (shape {list(shape)})")
            out.append((f"{path.name}:{line}", np.asarray(values).reshape(shape)))
    if not out:
        raise NndslDataError(f"{escape(path.name)}: no rows of numbers")
    return out


@torch.no_grad()
def predict_files(module: torch.nn.Module, paths: Sequence[Path], top_k: int = 3,
                  key: Optional[str] = None) -> list[Prediction]:
    """The ``top_k`` classes of every example in ``paths`` under a model from ``nndsl.load``."""
    shape = example_shape(module)
    examples = [ex for p in paths for ex in read_examples(Path(p), shape, key)]
    out = module.predict(np.stack([a for _, a in examples]))
    out = out[0] if isinstance(out, (tuple, list)) else out
    if out.dim() != 2:
        raise NndslDataError(f"predict is for classifiers (an output [B, classes]); this model gives "
                             f"{list(out.shape)} for {len(examples)} example(s)")
    probs = out.double() if getattr(module, "output_is_probs", False) else torch.softmax(out.double(), dim=-1)
    names = module.classes
    best = torch.topk(probs, min(top_k, probs.shape[1]), dim=-1)
    return [Prediction(label, [(names[i] if names is not None and i < len(names) else str(i), float(p))
                               for p, i in zip(ps.tolist(), ix.tolist())])
            for (label, _), ps, ix in zip(examples, best.values, best.indices)]


def format_predictions(preds: Sequence[Prediction]) -> str:
    """One line per example: ``digit.png: 7 (0.981)  2 (0.012)  3 (0.004)``."""
    return "\n".join(f"{escape(p.source)}: " + "  ".join(f"{escape(n)} ({q:.3f})" for n, q in p.top) for p in preds)
