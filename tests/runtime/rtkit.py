"""Helpers for the runtime and CLI tests: tiny IDX files, train sections from source text, configs."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any, Optional

import numpy as np

from nndsl.frontend.parser import parse
from nndsl.runtime.config import TrainConfig, train_config

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
          np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = True, magic_override: Optional[int] = None) -> Path:
    """``arr`` as an IDX file (big-endian header; gzipped when ``gz``)."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "fi" and arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    head = bytes([0, 0, _CODES[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    if magic_override is not None:
        head = struct.pack(">I", magic_override) + head[4:]
    raw = head + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_mnist_dir(folder: Path, n_train: int = 7, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny MNIST-format folder (28x28 uint8 images, labels 0-9); returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


MODEL = "model M(x: f32[B, 3], width: int = 4, ctx: int = 8) -> f32[B, 2] {\n    return linear(x, 2)\n}\n"


def section(body: str, hyperparams: Optional[dict[str, Any]] = None, base_dir: Path = Path("."),
            overrides: Optional[dict[str, Any]] = None, file: str = "t.nn") -> TrainConfig:
    """``train { body }`` after a one-line model, evaluated into a TrainConfig."""
    src = MODEL + "train {\n" + body.strip("\n") + "\n}\n"
    prog = parse(src, file)
    hp = {"width": 4, "ctx": 8} if hyperparams is None else hyperparams
    return train_config(prog.trains[0], hp, base_dir, overrides or {})


def source_line(src_body: str, needle: str) -> int:
    """The 1-based line of the first line containing ``needle`` once ``src_body`` is put in ``section``."""
    lines = (MODEL + "train {\n" + src_body.strip("\n")).splitlines()
    return next(i + 1 for i, l in enumerate(lines) if needle in l)
