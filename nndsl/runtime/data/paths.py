"""Where data files are looked for. nndsl never downloads anything.

A relative path is tried, in order, against: the folder of the .nn file, ``$NNDSL_DATA``, the
current directory. A miss is an ``NndslDataError`` that lists every path tried (and says which
exist but are not what was asked for: a folder where a file is expected).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from ...errors import NndslDataError

NEVER_DOWNLOADS = ("nndsl never downloads data: put it next to the .nn file, or set $NNDSL_DATA "
                   "to the folder that holds it")


def candidates(path: str, base_dir: Optional[Path]) -> list[Path]:
    """Where ``path`` may be, in the order they are tried."""
    p = _expand(path)
    if p.is_absolute():
        return [p]
    out = []
    if base_dir is not None:
        out.append(Path(base_dir) / p)
    env = os.environ.get("NNDSL_DATA")
    if env:
        out.append(_expand(env) / p)
    out.append(Path.cwd() / p)
    seen, unique = set(), []
    for c in out:
        key = os.path.abspath(c)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def _expand(path: str) -> Path:
    """``path`` with ``~`` expanded; ``~user`` of an unknown user stays as written (a plain miss later)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


def resolve(path: str, base_dir: Optional[Path], what: str = "data file",
            accept: Callable[[Path], bool] = Path.is_file) -> Path:
    """The first candidate for ``path`` that ``accept``s, or an error naming every path tried."""
    tried = candidates(path, base_dir)
    for c in tried:
        if accept(c):
            return c
    listing = "\n".join(f"      {t}{_why_not(t, what, accept)}" for t in tried)
    unset = "" if os.environ.get("NNDSL_DATA") or Path(path).is_absolute() else " ($NNDSL_DATA is not set)"
    raise NndslDataError(f"{what} '{path}' not found; tried:\n{listing}", hint=NEVER_DOWNLOADS + unset)


def _why_not(path: Path, what: str, accept: Callable[[Path], bool]) -> str:
    """Why an existing ``path`` was passed over (empty when it does not exist)."""
    if not path.exists():
        return ""
    if accept is Path.is_file:
        return "  (a folder, not a file)" if path.is_dir() else "  (not a regular file)"
    return f"  (exists, but is not a {what})"


def text_position(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, column) of byte ``offset`` (the column counts characters of the decoded line)."""
    line_start = raw.rfind(b"\n", 0, offset) + 1
    col = len(raw[line_start:offset].decode("utf-8", errors="replace")) + 1
    return raw.count(b"\n", 0, offset) + 1, col
