"""Array datasets: ``.npz`` archives, ``.csv`` tables, and synthetic linear regression."""
from __future__ import annotations

import csv as csvlib
import zipfile
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch

from ...errors import NndslConfigError, NndslDataError, did_you_mean
from .paths import resolve
from .sources import Source

_FLOATS = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}


def _targets(y: np.ndarray) -> torch.Tensor:
    """Integer labels -> i64[N]; anything else -> f32 (a 1-D target becomes [N, 1])."""
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return torch.from_numpy(y.astype(np.int64))
    t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    return t[:, None] if t.dim() == 1 else t


def npz(path: str, x: str = "x_train", y: str = "y_train", scale: float = 1.0,
        dtype: Literal["f32", "f64", "f16", "bf16"] = "f32", *, base_dir: Optional[Path] = None) -> Source:
    """Arrays ``x`` and ``y`` of a NumPy archive: x converted to ``dtype`` and multiplied by ``scale``
    (spoken letters: int16 samples, ``scale=1.0 / 32768``); integer y -> i64 labels."""
    found = resolve(path, base_dir, what="npz file")
    try:
        with np.load(found, allow_pickle=False) as archive:
            keys = list(archive.keys())
            for k in (x, y):
                if k not in keys:
                    raise NndslDataError(f"{found} has no array '{k}'",
                                         hint=did_you_mean(k, keys) or f"its arrays: {', '.join(keys)}")
            xs, ys = archive[x], archive[y]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise NndslDataError(f"cannot read {found}: {e}") from None
    if len(xs) != len(ys):
        raise NndslDataError(f"{found}: '{x}' has {len(xs)} rows but '{y}' has {len(ys)}")
    xt = torch.from_numpy(np.ascontiguousarray(xs)).to(_FLOATS[dtype])
    if scale != 1.0:
        xt.mul_(scale)
    return Source(xt, _targets(ys))


def csv(path: str, target: Union[str, int] = "y", header: bool = True, delimiter: str = ",", *,
        base_dir: Optional[Path] = None) -> Source:
    """A numeric table: column ``target`` (a header name, or an index; -1 = last) is y, the rest x f32[N, F].

    Integer-valued targets become i64 class labels; others f32[N, 1].
    """
    found = resolve(path, base_dir, what="csv file")
    try:
        with open(found, newline="", encoding="utf-8") as f:
            rows = [r for r in csvlib.reader(f, delimiter=delimiter) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csvlib.Error) as e:
        raise NndslDataError(f"cannot read {found}: {e}") from None
    names = [c.strip() for c in rows.pop(0)] if header and rows else []
    if not rows:
        raise NndslDataError(f"{found} has no data rows")
    width = len(rows[0])
    if isinstance(target, str):
        if not header:
            raise NndslConfigError("csv(): a target column name needs header=true; give its index instead")
        if target not in names:
            raise NndslDataError(f"{found} has no column '{target}'",
                                 hint=did_you_mean(target, names) or f"its columns: {', '.join(names)}")
        col = names.index(target)
    else:
        if not -width <= target < width:
            raise NndslDataError(f"{found} has {width} columns; target index {target} is out of range")
        col = target % width
    table = np.empty((len(rows), width), dtype=np.float64)
    for i, r in enumerate(rows):
        line = i + 1 + bool(header)
        if len(r) != width:
            raise NndslDataError(f"{found}:{line}: {len(r)} fields, expected {width}")
        try:
            table[i] = [float(c) for c in r]
        except ValueError:
            bad = next(c for c in r if not _is_float(c))
            raise NndslDataError(f"{found}:{line}: '{bad}' is not a number") from None
    ys = table[:, col]
    if np.all(np.mod(ys, 1) == 0):
        ys = ys.astype(np.int64)
    xs = np.delete(table, col, axis=1).astype(np.float32)
    return Source(torch.from_numpy(xs), _targets(ys))


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def synthetic_regression(n: int = 1000, features: int = 10, noise: float = 0.01, seed: int = 0,
                         part: Literal["train", "test"] = "train", *, base_dir: Optional[Path] = None) -> Source:
    """``y = X w + b + noise * N(0, 1)`` with X ~ N(0, 1): x f32[n, features], y f32[n, 1].

    ``w`` and ``b`` depend on ``seed`` only (exposed as ``true_w`` f32[features], ``true_b`` float),
    so the "train" and "test" parts share them but draw different X.
    """
    if n <= 0 or features <= 0 or noise < 0:
        raise NndslConfigError("synthetic_regression(): need n > 0, features > 0, noise >= 0")
    truth = np.random.default_rng([seed, 0])
    w = truth.normal(size=features)
    b = float(truth.normal())
    rng = np.random.default_rng([seed, 1 if part == "train" else 2])
    xs = rng.normal(size=(n, features))
    ys = xs @ w + b + noise * rng.normal(size=n)
    return Source(torch.from_numpy(xs.astype(np.float32)), torch.from_numpy(ys.astype(np.float32))[:, None],
                  true_w=torch.from_numpy(w.astype(np.float32)), true_b=b)
