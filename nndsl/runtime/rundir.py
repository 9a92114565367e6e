"""A run folder: checked before any work, locked for the whole run, written only atomically.

    run_dir/run.json         the model's source, name, hyperparameters, train settings, world_size (``nndsl.load``)
    run_dir/metrics.json     {"final": {...}, "history": [...], "samples_per_second": ..., "seconds": ...}
    run_dir/.lock            held (``fcntl.flock``) by the run using the folder; holds its pid
    run_dir/checkpoints/     one folder per checkpoint (``checkpoint.py``)
    run_dir/log.csv          every logged evaluation, one row each (``tracking.py``)
    run_dir/tensorboard/     TensorBoard event files of the same values (``tracking.py``)
    run_dir/config.json      the resolved hyperparameters and train settings (``records.py``)
    run_dir/train.nn         the same train settings as a train section (``records.py``)
    run_dir/source.nn        the exact source file (``records.py``)

``RunDir.open(path)`` fails at once, with a message naming the folder, when the path lies under a
regular file, cannot be created or written, or another run holds it; under the lock it removes
what a killed run left half-written (temp files and folders). Every file is written to a temp name
beside its final one, fsync'd, then renamed over it: a kill leaves the old file or the new one.
``read_meta`` validates every field of a ``run.json`` before anything uses it.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..errors import NndslConfigError, NndslDataError
from .distributed import env_rank

METRICS, RUN, LOCK, CHECKPOINTS = "metrics.json", "run.json", ".lock", "checkpoints"
TMP_PREFIX = ".tmp-"  # temp files and folders; whatever bears it at a start is a killed run's leftover
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files; finished files get the usual 0666 & ~umask
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# ----------------------------------------------------------------------------- fault injection (tests)
_fault_hits: dict[str, int] = {}


def fault(point: str, path: Optional[Path] = None) -> None:
    """Die by SIGKILL at ``point`` when ``NNDSL_FAULT=ckpt:<point>[:<n>]`` names it (its n-th time, default 1).

    Used by the kill-and-resume tests to stop a run at an exact instant of a checkpoint write. A
    ``during-*`` point first cuts ``path`` to half its size, as a kill in the middle of the write would.
    """
    spec = os.environ.get("NNDSL_FAULT")
    if not spec:
        return
    kind, _, rest = spec.partition(":")
    name, _, nth = rest.partition(":")
    if kind != "ckpt" or name != point:
        return
    _fault_hits[point] = _fault_hits.get(point, 0) + 1
    if _fault_hits[point] != int(nth or 1):
        return
    if path is not None and point.startswith("during-"):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- atomic files
def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, write: Callable[[str], None], point: Optional[str] = None) -> None:
    """Call ``write(path)`` on a new file, make it durable (fsync) and world-readable per the umask."""
    write(str(path))
    if point:
        fault(f"during-{point}", path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    os.chmod(path, 0o666 & ~_UMASK)


def atomic_write(path: Path, write: Callable[[str], None], point: Optional[str] = None) -> None:
    """Call ``write(tmp_path)`` on a fresh temp file beside ``path``, then move it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write_file(Path(tmp), write, point)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_json(path: Path, obj: Any, point: Optional[str] = None) -> None:
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), point)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (torch.Tensor, np.ndarray)):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON-serializable: {type(o).__name__}")


def read_json(path: Path, what: str) -> Any:
    """A JSON file's contents; NaN/Infinity and unreadable text are errors naming ``what``."""
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=no_constants)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise NndslDataError(f"{what}: cannot read {path}: {e}") from None


# ----------------------------------------------------------------------------- the folder and its lock
class RunDir:
    """An open run folder: checked, locked (until ``close``), leftovers of a killed run removed."""

    def __init__(self, path: Path, lock_fd: Optional[int], removed: list[str], writer: bool = True):
        self.path, self._fd, self.removed = path, lock_fd, removed
        self.writer = writer  # False: another rank of a torchrun run (it reads checkpoints, rank 0 writes)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        path = Path(path)
        if env_rank() != 0:  # under torchrun rank 0 checks, locks and writes the folder
            return cls(path, None, [], writer=False)
        _check_place(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / CHECKPOINTS).mkdir(exist_ok=True)
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise NndslConfigError(f"cannot use {path} as the run folder: {e.strerror or e}",
                                   hint="give --out a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise NndslConfigError(f"the run folder {path} is in use by another nndsl run (pid {other})",
                                   hint="wait for it to finish, or give this run another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd, _remove_leftovers(path))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_place(path: Path) -> None:
    """``path`` and every existing folder above it must be folders (not files) we can write into."""
    for p in [path, *path.parents]:
        if p.is_dir():
            if not os.access(p, os.W_OK | os.X_OK):
                raise NndslConfigError(f"cannot use {path} as the run folder: {p} is not writable",
                                       hint="give --out a folder you can write to")
            return
        if p.exists() or p.is_symlink():
            raise NndslConfigError(f"cannot use {path} as the run folder: {p} is a file, not a folder",
                                   hint="give --out a new or existing folder")


def _remove_leftovers(path: Path) -> list[str]:
    """Temp files and folders a killed run left in ``path`` and its checkpoints folder."""
    removed = []
    for folder in (path, path / CHECKPOINTS):
        for p in sorted(folder.glob(f"{TMP_PREFIX}*")):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(str(p))
    return removed


# ----------------------------------------------------------------------------- run.json, validated
def read_meta(run_dir: Path) -> dict[str, Any]:
    """run.json's contents, every field type-checked (an error names the field that is wrong)."""
    run_dir = Path(run_dir)
    path = run_dir / RUN
    if not path.is_file():
        raise NndslDataError(f"{run_dir} is not an nndsl run folder (no {RUN})",
                             hint="`nndsl run FILE.nn --out DIR` writes one")
    meta = read_json(path, "run.json")
    if not isinstance(meta, dict):
        raise NndslDataError(f"{path}: expected a JSON object, got {type(meta).__name__}")

    def bad(field: str, expected: str) -> NndslDataError:
        return NndslDataError(f"{path}: field '{field}' must be {expected}, got {_brief(meta.get(field))}")

    if not isinstance(meta.get("source"), str):
        raise bad("source", "the model's source text (a string)")
    if not isinstance(meta.get("model"), str) or not _IDENT.match(meta["model"]):
        raise bad("model", "a model name (an identifier)")
    hp = meta.get("hyperparams", {})
    if not isinstance(hp, dict) or not all(
            isinstance(k, str) and _IDENT.match(k) and _scalar(v) for k, v in hp.items()):
        raise bad("hyperparams", "an object of names to numbers, strings or booleans")
    vocab = meta.get("vocab")
    if vocab is not None and not (isinstance(vocab, list) and all(isinstance(c, str) and len(c) == 1 for c in vocab)):
        raise bad("vocab", "a list of one-character strings")
    for field, kind, expected in (("file", str, "a string"), ("output_is_probs", bool, "true or false"),
                                  ("train", dict, "an object")):
        if field in meta and not isinstance(meta[field], kind):
            raise bad(field, expected)
    return meta


def _scalar(v: Any) -> bool:
    return isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v))


def _brief(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
