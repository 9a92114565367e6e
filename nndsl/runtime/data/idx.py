"""MNIST and Fashion-MNIST from their original IDX files (gzipped or not).

IDX: two zero bytes, a type code, the number of dims, then each dim as a big-endian u32, then the
data. Image files have magic 2051 (u8, 3 dims), label files 2049 (u8, 1 dim).
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from ...errors import NndslDataError
from . import validate
from .paths import resolve
from .sources import Source

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# per-dataset pixel mean / std after scaling to [0, 1] (over the training images)
_STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}
CLASSES = {"mnist": tuple("0123456789"),
           "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                             "Bag", "Ankle boot")}


def read_idx(path: Path, expect_magic: Optional[int] = None) -> np.ndarray:
    """The array in an IDX file; checks the magic number, the type code and the byte count."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise NndslDataError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise NndslDataError(f"{path} is not an IDX file (bad header {raw[:4].hex() or 'empty'})")
    magic = int.from_bytes(raw[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise NndslDataError(f"{path}: magic number {magic} ({_layout(magic)}), expected {expect_magic} "
                             f"({_layout(expect_magic)})")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise NndslDataError(f"{path}: truncated header")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    want = math.prod(dims) * dtype.itemsize  # Python ints: a forged header cannot overflow it
    if len(raw) - head != want:
        raise NndslDataError(f"{path}: {len(raw) - head} data bytes, expected {want} for shape {list(dims)}")
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(dims)


def _layout(magic: int) -> str:
    """``u8, 1 dim``: what an IDX magic number says of its file."""
    dtype, ndim = np.dtype(_IDX_TYPES[(magic >> 8) & 0xFF]), magic & 0xFF
    return f"{dtype.kind}{dtype.itemsize * 8}, {ndim} dim{'s' * (ndim != 1)}"


def _find(root: str, name: str, base_dir: Optional[Path]) -> Path:
    """``root/name.gz`` or ``root/name`` in the first candidate root folder that has one."""
    def has(folder: Path) -> bool:
        return (folder / f"{name}.gz").is_file() or (folder / name).is_file()

    folder = resolve(root, base_dir, what=f"folder with {name}.gz", accept=has)
    gz = folder / f"{name}.gz"
    return gz if gz.is_file() else folder / name


def load_idx_pair(kind: str, root: str, split: str, normalize: bool, base_dir: Optional[Path]) -> Source:
    images_name, labels_name = _FILES[split]
    images = read_idx(_find(root, images_name, base_dir), IMAGES_MAGIC)
    labels = read_idx(_find(root, labels_name, base_dir), LABELS_MAGIC)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise NndslDataError(f"{kind} {split}: images {list(images.shape)} do not match labels {list(labels.shape)}",
                             hint="expected images [N, H, W] and labels [N]")
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)  # [N, 1, H, W] in [0, 1]
    if normalize:
        mean, std = _STATS[kind]
        x.sub_(mean).div_(std)
    y = validate.labels(labels, "y", f"{kind} {split}")
    prep = {"dtype": "f32", "scale": 1.0 / 255.0}
    if normalize:
        prep.update(mean=_STATS[kind][0], std=_STATS[kind][1])
    return Source(x, y, num_classes=10, preprocess={"x": prep}, classes=list(CLASSES[kind]))


def mnist(root: str = "data/mnist", split: Literal["train", "test"] = "train", normalize: bool = True, *,
          base_dir: Optional[Path] = None) -> Source:
    """MNIST digits: x f32[N, 1, 28, 28] (scaled to [0, 1], then (x - 0.1307) / 0.3081), y i64[N]."""
    return load_idx_pair("mnist", root, split, normalize, base_dir)


def fashion_mnist(root: str = "data/fashion-mnist", split: Literal["train", "test"] = "train",
                  normalize: bool = True, *, base_dir: Optional[Path] = None) -> Source:
    """Fashion-MNIST: as ``mnist``, normalized with its own statistics (0.2860, 0.3530)."""
    return load_idx_pair("fashion_mnist", root, split, normalize, base_dir)
