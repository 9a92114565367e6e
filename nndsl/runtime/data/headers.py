"""What a data set's fields are, read from file headers only: ``nndsl check`` without loading a set.

* IDX (mnist, fashion_mnist): the magic number and dims at the start of each (gzipped) file;
* npz: each member's ``.npy`` header inside the zip (a folder of ``.npy``: memory-mapped);
* csv: the header line and the first data row;
* text: the file's size; its vocabulary only when the file is small (``TEXT_VOCAB_LIMIT``),
  else that check waits for ``nndsl run``.

``fields(spec, base_dir)`` -> ``{field: FieldDesc}``, the same description ``validate.fits_plan``
checks against a model as it checks a loaded set (without the checks that need values).
"""
from __future__ import annotations

import csv as csvlib
import gzip
import struct
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...errors import NndslDataError, NndslError
from .arrays import _FLOATS, _wanted, archive_names, resolve_arrays
from .fields import FieldDesc
from .idx import _FILES, _IDX_TYPES, _find
from .paths import resolve

TEXT_VOCAB_LIMIT = 8 << 20  # bytes: a larger text's vocabulary is checked when it is loaded


def fields(spec, base_dir: Optional[Path]) -> dict[str, FieldDesc]:
    """The fields the data ``spec`` gives (errors without a location get the spec's)."""
    try:
        return _READERS[spec.name](base_dir=base_dir, **spec.kwargs)
    except NndslError as e:
        if e.span is None:
            e.span = spec.span
        raise


def _idx_dims(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """The element type and dims an IDX file's header declares."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] or head[1] or head[2] not in _IDX_TYPES:
                raise NndslDataError(f"{path} is not an IDX file (bad header {head.hex() or 'empty'})")
            dims = struct.unpack(f">{head[3]}I", f.read(4 * head[3]))
    except (OSError, EOFError, struct.error) as e:
        raise NndslDataError(f"cannot read {path}: {e}") from None
    return np.dtype(_IDX_TYPES[head[2]]), dims


def _idx(root: str = "data/mnist", split: str = "train", normalize: bool = True, *, base_dir=None) -> dict:
    images, labels = (_idx_dims(_find(root, name, base_dir)) for name in _FILES[split])
    if len(images[1]) != 3 or len(labels[1]) != 1 or images[1][0] != labels[1][0]:
        raise NndslDataError(f"{root} {split}: images {list(images[1])} do not match labels {list(labels[1])}",
                             hint="expected images [N, H, W] and labels [N]")
    return {"x": FieldDesc(torch.float32, (1, *images[1][1:])), "y": FieldDesc(torch.int64, (), classes=10)}


def _text(path: str, context: int, split: float = 0.9, part: str = "train", *, base_dir=None) -> dict:
    from .text import _encode

    found = resolve(path, base_dir, what="text file")
    vocab = None
    if found.stat().st_size <= TEXT_VOCAB_LIMIT:
        vocab = len(_encode(str(found), found.stat().st_mtime)[1])
    return {k: FieldDesc(torch.int64, (context,), vocab_size=vocab) for k in ("x", "y")}


def _npy_header(stream) -> tuple[np.dtype, tuple[int, ...]]:
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(stream)
    return dtype, shape


def _npz(path: str, x: str = "x_train", y: str = "y_train", fields: list = (), scale: float = 1.0,
         normalize: bool = False, on: list = ("x",), split: float = 1.0, part: str = "train", dtype: str = "f32",
         *, base_dir=None) -> dict:
    found = resolve_arrays(path, base_dir)
    names = archive_names(found)
    out = {}
    for f, (key, _) in _wanted(found, x, y, list(fields)).items():
        if key not in names:
            raise NndslDataError(f"{found} has no array '{key}'", hint=f"its arrays: {', '.join(names)}")
        try:
            if found.is_dir():
                a = np.load(found / f"{key}.npy", mmap_mode="r", allow_pickle=False)
                kind, shape = a.dtype, a.shape
            else:
                with zipfile.ZipFile(found) as z, z.open(f"{key}.npy") as member:
                    kind, shape = _npy_header(member)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise NndslDataError(f"cannot read {found}: {e}") from None
        scaled = f in on and (scale != 1.0 or normalize)
        t = _FLOATS[dtype] if scaled or kind.kind == "f" else torch.int64
        out[f] = FieldDesc(t, tuple(shape[1:]))
    return out


def _csv(path: str, target="y", header: bool = True, delimiter: str = ",", *, base_dir=None, **_) -> dict:
    found = resolve(path, base_dir, what="csv file")
    try:
        with open(found, newline="", encoding="utf-8") as f:
            rows = []
            for r in csvlib.reader(f, delimiter=delimiter):
                if r and any(c.strip() for c in r):
                    rows.append(r)
                if len(rows) == 1 + header:
                    break
    except (OSError, UnicodeDecodeError, csvlib.Error) as e:
        raise NndslDataError(f"cannot read {found}: {e}") from None
    if len(rows) < 1 + header:
        raise NndslDataError(f"{found} has no data rows")
    names = [c.strip() for c in rows[0]] if header else []
    first = rows[-1]
    col = names.index(target) if isinstance(target, str) and target in names else \
        (target % len(first) if isinstance(target, int) else None)
    if col is None:
        raise NndslDataError(f"{found} has no column '{target}'", hint=f"its columns: {', '.join(names)}")
    try:
        whole = float(first[col]) % 1 == 0
    except ValueError:
        whole = False
    out = {"x": FieldDesc(torch.float32, (len(first) - 1,)),
           "y": FieldDesc(torch.int64, ()) if whole else FieldDesc(torch.float32, (1,))}
    out.update({c: FieldDesc(torch.float32, ()) for c in names if c.isidentifier() and c not in out})
    return out


def _synthetic(n: int = 1000, features: int = 10, *, base_dir=None, **_) -> dict:
    return {"x": FieldDesc(torch.float32, (features,)), "y": FieldDesc(torch.float32, (1,))}


_READERS = {"mnist": _idx, "fashion_mnist": _idx, "text": _text, "npz": _npz, "csv": _csv,
            "synthetic_regression": _synthetic}


def check_data(checked, cfg) -> list[str]:
    """``nndsl check``: the train section's sets against the checked model and its loss, from headers.
    Returns one line per set checked (its fields)."""
    from ...compiler import objective
    from .validate import fits_plan
    from .fields import Plan

    obj = objective(checked)
    plan = Plan.of(checked.graph, obj.graph if obj is not None and str(obj.spec) == _spec_text(cfg.loss) else None)
    lines = []
    for key in ("data", "eval"):
        spec = getattr(cfg, key)
        if spec is None:
            continue
        found = fields(spec, cfg.base_dir)
        fits_plan(plan, found, cfg, key, checked.graph)
        shown = ", ".join(f"{k} {str(f.dtype).removeprefix('torch.')}{list(f.shape)}" for k, f in found.items())
        lines.append(f"  {key} fields: {shown}")
    return lines


def _spec_text(loss) -> str:
    from ...objective import LossSpec

    return str(LossSpec.of(loss.name, loss.kwargs))
