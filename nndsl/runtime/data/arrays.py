"""Array datasets: ``.npz`` archives, ``.csv`` tables, and synthetic linear regression."""
from __future__ import annotations

import csv as csvlib
import functools
import io
import zipfile
import zlib
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import torch

from ...errors import NndslConfigError, NndslDataError, did_you_mean
from . import validate
from .paths import resolve, text_position
from .sources import Mapped, Source

_FLOATS = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}


def npz(path: str, x: str = "x_train", y: str = "y_train", fields: list[str] = [], scale: float = 1.0,
        normalize: bool = False, on: list[str] = ["x"], split: float = 1.0, part: Literal["train", "val"] = "train",
        dtype: Literal["f32", "f64", "f16", "bf16"] = "f32", *, base_dir: Optional[Path] = None) -> Source:
    """Arrays of a NumPy archive (or of a folder of ``.npy`` files, memory-mapped) as named fields.

    Without ``fields``: ``x`` is the array named by ``x`` and ``y`` the one named by ``y`` (an archive
    without ``x_train`` / ``y_train`` gives its ``x`` / ``y``). With ``fields``: exactly those arrays,
    under their own names (and ``x`` / ``y`` where the archive has them). Integer arrays stay
    integers (i64: labels, token ids); float arrays become ``dtype``. ``scale`` multiplies and
    ``normalize`` standardizes (per feature, by the training part's mean and std) exactly the fields
    named in ``on``, which become ``dtype``. ``split`` < 1 keeps a fixed shuffle's first ``split`` of
    the rows as part "train", the rest as "val". A string array named ``classes`` names the classes.

    Never unpickles (``allow_pickle=False``): an archive of Python objects is refused, not run."""
    found = resolve_arrays(path, base_dir)
    wanted = _wanted(found, x, y, fields)
    arrays, classes = _read_arrays(found, wanted)
    return table_source(arrays, found, scale=scale, normalize=normalize, on=on, split=split, part=part,
                        dtype=dtype, classes=classes, keys={f: k for f, (k, _) in wanted.items()})


def resolve_arrays(path: str, base_dir) -> Path:
    """Where ``npz(path)`` reads: an .npz archive, else a folder of .npy files (the archive's error
    when neither exists)."""
    try:
        return resolve(path, base_dir, what="npz file")
    except NndslDataError as miss:
        try:
            return resolve(path, base_dir, what="folder of .npy files", accept=_npy_folder)
        except NndslDataError:
            raise miss from None


def _npy_folder(p: Path) -> bool:
    return p.is_dir() and any(p.glob("*.npy"))


def _wanted(found: Path, x: str, y: str, fields: list[str]) -> dict[str, tuple[str, bool]]:
    """field name -> (array name, required) for the archive ``found``."""
    names = set(archive_names(found))
    out: dict[str, tuple[str, bool]] = {}
    for field, key, default in (("x", x, "x_train"), ("y", y, "y_train")):
        if key == default and key not in names and field in names:
            key = field  # an archive of x and y
        out[field] = (key, not fields)
    for f in fields:
        out[f] = (f, True)
    return {f: (k, req) for f, (k, req) in out.items() if req or k in names}


def archive_names(found: Path) -> list[str]:
    """The array names of an ``.npz`` archive (its zip members) or of a folder of ``.npy`` files."""
    if found.is_dir():
        return sorted(p.stem for p in found.glob("*.npy"))
    try:
        with zipfile.ZipFile(found) as z:
            return [n.removesuffix(".npy") for n in z.namelist() if n.endswith(".npy")]
    except (OSError, zipfile.BadZipFile):
        return []


def table_source(arrays: dict[str, np.ndarray], found: Path, *, scale: float, normalize: bool, on: list[str],
                 split: float, part: str, dtype: str, classes: Optional[list[str]] = None,
                 keys: Optional[dict[str, str]] = None) -> Source:
    """Named arrays -> a Source: split, typed, ``scale`` / ``normalize`` on the fields ``on`` (recorded).
    ``keys``: each field's name in the file, for messages."""
    keys = keys or {}
    for f in on:
        if (scale != 1.0 or normalize) and f not in arrays:
            raise NndslConfigError(f"scale/normalize name the field '{f}', but {found.name} gives "
                                   f"{', '.join(arrays)}", hint=did_you_mean(f, arrays))
    n = len(next(iter(arrays.values())))
    for k, a in arrays.items():
        if len(a) != n:
            first = next(iter(arrays))
            raise NndslDataError(f"{found}: '{keys.get(first, first)}' has {n} rows but '{keys.get(k, k)}' has "
                                 f"{len(a)}")
    train_rows, rows = split_rows(n, split, part)
    fields: dict[str, Any] = {}
    prep: dict[str, dict] = {}
    for k, a in arrays.items():
        touched = k in on and (scale != 1.0 or normalize)
        if not touched:
            fields[k] = _take(_as_field(a, keys.get(k, k), str(found), dtype), rows)
            continue
        rec = {"dtype": dtype, "scale": float(scale)}
        if normalize:
            sample = np.asarray(a[train_rows] if train_rows is not None else a, dtype=np.float64) * scale
            std = sample.std(axis=0)
            rec.update(mean=sample.mean(axis=0).tolist(), std=np.where(std > 0, std, 1.0).tolist())
        prep[k] = rec
        if isinstance(a, np.memmap):
            fields[k] = Mapped(a, rows, functools.partial(apply_prep, rec))
        else:
            fields[k] = apply_prep(rec, np.asarray(a)[rows] if rows is not None else a)
    return Source(fields=fields, preprocess=prep, classes=classes)


def split_rows(n: int, split: float, part: str) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The training part's rows and ``part``'s rows (None, None: every row, no split)."""
    if not 0.0 < split <= 1.0:
        raise NndslConfigError(f"split must be in (0, 1] (the training fraction), got {split}")
    if split == 1.0:
        if part == "val":
            raise NndslConfigError('part="val" needs split < 1 (e.g. split=0.9)')
        return None, None
    order = np.random.default_rng(0).permutation(n)
    cut = int(n * split)
    return np.sort(order[:cut]), np.sort(order[cut:] if part == "val" else order[:cut])


def apply_prep(rec: dict, a) -> torch.Tensor:
    """``(a * scale - mean) / std`` as ``rec["dtype"]``: the preprocessing a field records."""
    if isinstance(a, np.ndarray):
        a = np.ascontiguousarray(a) if a.flags.writeable else np.array(a)  # torch wants writable memory
    t = torch.as_tensor(a).to(torch.float64)
    t = t * rec.get("scale", 1.0)
    if "mean" in rec:
        t = (t - torch.as_tensor(rec["mean"], dtype=torch.float64)) / torch.as_tensor(rec["std"], dtype=torch.float64)
    return t.to(_FLOATS[rec.get("dtype", "f32")])


def _as_field(a: np.ndarray, name: str, where: str, dtype: str) -> Any:
    """Integers (and bools) -> i64, floats -> ``dtype``; a memory-mapped array converts per batch."""
    def convert(rows: np.ndarray) -> torch.Tensor:
        if np.issubdtype(rows.dtype, np.integer) or rows.dtype == np.bool_:
            return validate.labels(rows, name, where)
        return torch.from_numpy(np.ascontiguousarray(rows)).to(_FLOATS[dtype])

    return Mapped(a, None, convert) if isinstance(a, np.memmap) else convert(a)


def _take(t: Any, rows: Optional[np.ndarray]) -> Any:
    if rows is None:
        return t
    if isinstance(t, Mapped):
        return Mapped(t.array, rows, t.convert)
    return t[torch.from_numpy(rows)]


def _read_arrays(found: Path, wanted: dict[str, tuple[str, bool]]) -> tuple[dict[str, np.ndarray], Optional[list]]:
    """field -> the numeric array ``wanted`` names (a folder's ``.npy`` files memory-mapped), and the
    archive's class names; every way it can be wrong is a data error."""
    names = archive_names(found)
    if not found.is_dir() and not zipfile.is_zipfile(found):
        empty = " (the file is empty)" if found.stat().st_size == 0 else ""
        raise NndslDataError(f"{found} is not an .npz archive{empty}",
                             hint="np.savez(path, x_train=..., y_train=...) writes one")
    if not names:
        raise NndslDataError(f"{found} holds no arrays",
                             hint=f"expected arrays {', '.join(k for k, _ in wanted.values())}")
    for k, _ in wanted.values():
        if k not in names:
            guess = did_you_mean(k, names)
            raise NndslDataError(f"{found} has no array '{k}'",
                                 hint=f"{guess + ' ' if guess else ''}its arrays: {', '.join(names)}")
    try:
        if found.is_dir():
            out = {f: validate.numeric(np.load(found / f"{k}.npy", mmap_mode="r", allow_pickle=False), k, str(found))
                   for f, (k, _) in wanted.items()}
            return out, None
        with np.load(found, allow_pickle=False) as archive:
            out = {f: validate.numeric(_member(archive, found, k), k, str(found)) for f, (k, _) in wanted.items()}
            classes = _class_names(archive, found) if "classes" in names else None
            return out, classes
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise NndslDataError(f"cannot read {found}: {e}") from None


def _class_names(archive, found: Path) -> Optional[list[str]]:
    names = _member(archive, found, "classes")
    return [str(c) for c in names.reshape(-1)] if names.dtype.kind in "US" else None


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


def csv(path: str, target: Union[str, int] = "y", header: bool = True, delimiter: str = ",",
        scale: float = 1.0, normalize: bool = False, on: list[str] = ["x"], split: float = 1.0,
        part: Literal["train", "val"] = "train", *, base_dir: Optional[Path] = None) -> Source:
    """A numeric table: column ``target`` (a header name, or an index; -1 = last) is y, the rest x f32[N, F];
    with a header, each column is also a field of its own, f32[N], under its name.

    Whole-number targets that fit int64 become i64 class labels; others f32[N, 1]. ``scale``,
    ``normalize``, ``on``, ``split`` and ``part`` as for ``npz``. Every bad cell (not a number, NaN,
    inf) is reported at its line of the file.
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
    arrays = {"x": np.delete(table, col, axis=1).astype(np.float32), "y": ys}
    arrays.update({c: table[:, j].astype(np.float32) for j, c in enumerate(names)
                   if c.isidentifier() and c not in arrays})
    src = table_source(arrays, found, scale=scale, normalize=normalize, on=on, split=split, part=part, dtype="f32")
    if src.y.is_floating_point() and src.y.dim() == 1:
        src.fields["y"] = src.y[:, None]  # one real-valued target per row
    return src


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
