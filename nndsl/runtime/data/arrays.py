"""Array datasets: ``.npz`` archives, ``.csv`` tables, and synthetic linear regression."""
from __future__ import annotations

import csv as csvlib
import io
import zipfile
import zlib
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch

from ...errors import NndslConfigError, NndslDataError, did_you_mean
from . import validate
from .paths import resolve, text_position
from .sources import Source

_FLOATS = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}


def _targets(y: np.ndarray, field: str, where: str) -> torch.Tensor:
    """Integer labels -> i64[N]; anything else -> f32 (a 1-D target becomes [N, 1])."""
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return validate.labels(y, field, where)
    t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    return t[:, None] if t.dim() == 1 else t


def npz(path: str, x: str = "x_train", y: str = "y_train", scale: float = 1.0,
        dtype: Literal["f32", "f64", "f16", "bf16"] = "f32", *, base_dir: Optional[Path] = None) -> Source:
    """Arrays ``x`` and ``y`` of a NumPy archive: x converted to ``dtype`` and multiplied by ``scale``
    (spoken letters: int16 samples, ``scale=1.0 / 32768``); integer y -> i64 labels.

    Never unpickles (``allow_pickle=False``): an archive of Python objects is refused, not run."""
    found = resolve(path, base_dir, what="npz file")
    xs, ys = _read_npz(found, x, y)
    if len(xs) != len(ys):
        raise NndslDataError(f"{found}: '{x}' has {len(xs)} rows but '{y}' has {len(ys)}")
    xt = torch.from_numpy(np.ascontiguousarray(xs)).to(_FLOATS[dtype])
    if scale != 1.0:
        xt.mul_(scale)
    return Source(xt, _targets(ys, y, str(found)))


def _read_npz(found: Path, *keys: str) -> list[np.ndarray]:
    """The numeric arrays ``keys`` of the archive ``found``; every way it can be wrong is a data error."""
    try:
        if not zipfile.is_zipfile(found):
            empty = " (the file is empty)" if found.stat().st_size == 0 else ""
            raise NndslDataError(f"{found} is not an .npz archive{empty}",
                                 hint="np.savez(path, x_train=..., y_train=...) writes one")
        with np.load(found, allow_pickle=False) as archive:
            names = list(archive.files)
            if not names:
                raise NndslDataError(f"{found} holds no arrays", hint=f"expected arrays {', '.join(keys)}")
            for k in keys:
                if k not in names:
                    guess = did_you_mean(k, names)
                    raise NndslDataError(f"{found} has no array '{k}'",
                                         hint=f"{guess + ' ' if guess else ''}its arrays: {', '.join(names)}")
            return [validate.numeric(_member(archive, found, k), k, str(found)) for k in keys]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise NndslDataError(f"cannot read {found}: {e}") from None


def _member(archive, found: Path, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as e:
        if "pickle" in str(e) or "Object arrays" in str(e):
            raise NndslDataError(f"{found}: array '{key}' holds Python objects (pickled data); nndsl loads "
                                 "numeric arrays only and never unpickles (allow_pickle=False): unpickling "
                                 "can run any code", hint="save it as a numeric array, e.g. np.asarray(a, "
                                 "dtype=np.float32)") from None
        raise NndslDataError(f"{found}: cannot read array '{key}': {e}") from None


def csv(path: str, target: Union[str, int] = "y", header: bool = True, delimiter: str = ",", *,
        base_dir: Optional[Path] = None) -> Source:
    """A numeric table: column ``target`` (a header name, or an index; -1 = last) is y, the rest x f32[N, F].

    Whole-number targets that fit int64 become i64 class labels; others f32[N, 1]. Every bad cell
    (not a number, NaN, inf) is reported at its line of the file.
    """
    found = resolve(path, base_dir, what="csv file")
    if len(delimiter) != 1:
        raise NndslConfigError(f"csv(): delimiter must be one character, got {delimiter!r}")
    lines, rows = _read_rows(found, delimiter)
    names = [c.strip() for c in rows.pop(0)] if header and rows else []
    head_line = lines.pop(0) if names else None
    if not rows:
        raise NndslDataError(f"{found} has no data rows")
    width = len(rows[0])
    if names and len(names) != width:
        raise NndslDataError(f"{found}:{head_line}: the header has {len(names)} names, but the rows have "
                             f"{width} fields")
    if width < 2:
        raise NndslDataError(f"{found}: {width} column; a table needs the target and at least one feature")
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
    for i, (line, r) in enumerate(zip(lines, rows)):
        if len(r) != width:
            raise NndslDataError(f"{found}:{line}: {len(r)} fields, expected {width}")
        try:
            table[i] = [float(c) for c in r]
        except ValueError:
            j = next(j for j, c in enumerate(r) if not _is_float(c))
            raise NndslDataError(f"{found}:{line}: '{r[j]}' is not a number ({_column(names, j)})") from None
    if not np.isfinite(table).all():
        i, j = (int(k) for k in np.argwhere(~np.isfinite(table))[0])
        raise NndslDataError(f"{found}:{lines[i]}: '{rows[i][j].strip()}' ({_column(names, j)}); the "
                             "data must be finite numbers", hint="drop or fill the missing values")
    ys = table[:, col]
    if np.all(np.mod(ys, 1) == 0) and np.all(np.abs(ys) < 2.0**63):
        ys = ys.astype(np.int64)
    xs = np.delete(table, col, axis=1).astype(np.float32)
    return Source(torch.from_numpy(xs), _targets(ys, "y", str(found)))


def _read_rows(found: Path, delimiter: str) -> tuple[list[int], list[list[str]]]:
    """The non-blank rows of a csv file and the line each starts on."""
    lines, rows = [], []
    try:
        raw = found.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = text_position(raw, e.start)
        raise NndslDataError(f"{found}:{line}:{col}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
    except OSError as e:
        raise NndslDataError(f"cannot read {found}: {e.strerror or e}") from None
    reader = csvlib.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        start = 1
        for r in reader:
            if r and any(c.strip() for c in r):
                lines.append(start)
                rows.append(r)
            start = reader.line_num + 1
    except csvlib.Error as e:
        raise NndslDataError(f"{found}:{reader.line_num}: {e}") from None
    return lines, rows


def _column(names: list[str], j: int) -> str:
    return f"column '{names[j]}'" if names else f"column {j + 1}"


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
