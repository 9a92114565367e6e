"""The on-disk cache of generated kernels: a second run of the same model generates no source.

A kernel's file is ``<cache>/kernels/<spec key>-<versions>.py``: the spec key hashes the kernel's
canonical kernel-IR text (``KernelSpec.signature``), the versions part hashes the nndsl, Triton
and torch versions and the code generator's own version, so an upgrade never reads a stale
kernel. ``<cache>`` is ``$NNDSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/nndsl``, else
``~/.cache/nndsl`` — never /tmp, unless none of those can be written (then a warning says so).
Triton keeps the compiled binaries in its own cache, keyed by the source: an unchanged file
compiles nothing either.

Files are written whole or not at all (a temporary file in the same folder, then ``os.replace``),
so a crash or a second process writing the same kernel never leaves half a file; a file whose
recorded hash does not match its body, or that fails the source check, is regenerated.
``STATS`` counts what happened in this process (``generated``, ``loaded``): tests and
``--explain`` read it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional

CODEGEN_VERSION = "1"
STATS = {"generated": 0, "loaded": 0}
_modules: dict[str, object] = {}
_fallback_dir: list[Path] = []


def cache_dir() -> Path:
    env = os.environ.get("NNDSL_CACHE_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nndsl"


def versions() -> str:
    import torch

    from ... import __version__

    try:
        import triton

        tv = triton.__version__
    except Exception:  # pragma: no cover - depends on the install
        tv = "none"
    text = f"nndsl {__version__} triton {tv} torch {torch.__version__} codegen {CODEGEN_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _kernel_dir() -> Path:
    d = cache_dir() / "kernels"
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return d
    except OSError as e:
        if not _fallback_dir:
            _fallback_dir.append(Path(tempfile.mkdtemp(prefix="nndsl-kernels-")))
            warnings.warn(f"nndsl: cannot write the kernel cache {d} ({e.strerror}); generated kernels go to "
                          f"{_fallback_dir[0]} for this process only (set NNDSL_CACHE_DIR to a writable folder)")
        return _fallback_dir[0]


_HEADER = "# nndsl generated kernel; body sha256 "


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def load(key: str, fn_name: str, make_source: Callable[[], str], check: Callable[[str, str], None]):
    """The kernel function ``fn_name`` of the module cached under ``key``; ``make_source`` runs only
    when the file is missing or damaged."""
    name = f"{key}-{versions()}"
    if name in _modules:
        return getattr(_modules[name], fn_name)
    path = _kernel_dir() / f"{name}.py"
    src = _read_valid(path, fn_name, check)
    if src is None:
        body = make_source()
        check(body, fn_name)
        STATS["generated"] += 1
        _write_atomic(path, _HEADER + _digest(body) + "\n" + body)
    else:
        STATS["loaded"] += 1
    module = _import(path, f"nndsl_generated_{name.replace('-', '_')}")
    _modules[name] = module
    return getattr(module, fn_name)


def source_of(key: str) -> Optional[str]:
    """The cached source of kernel ``key`` (without the header line), if it is in the cache."""
    path = _kernel_dir() / f"{key}-{versions()}.py"
    try:
        text = path.read_text()
    except OSError:
        return None
    return text.split("\n", 1)[1] if text.startswith(_HEADER) else None


def _read_valid(path: Path, fn_name: str, check) -> Optional[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    first, _, body = text.partition("\n")
    if not first.startswith(_HEADER) or first[len(_HEADER):] != _digest(body):
        return None
    try:
        check(body, fn_name)
    except Exception:
        return None
    return body


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".py", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _import(path: Path, mod_name: str):
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # Triton resolves the kernel's globals through its module
    spec.loader.exec_module(module)
    return module
