"""What a run leaves on disk, written atomically (a temp file in the same folder, then ``os.replace``):

    run_dir/model.safetensors   the weights (safetensors)
    run_dir/optimizer.pt        optimizer state, step, history and every RNG state (for --resume)
    run_dir/metrics.json        {"final": {...}, "history": [...], "samples_per_second": ..., "seconds": ...}
    run_dir/run.json            the model's source text, name and hyperparameters (``nndsl.load`` rebuilds it)

A crash or Ctrl-C mid-write leaves the previous file intact, never a truncated one.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import NndslDataError

WEIGHTS, STATE, METRICS, RUN = "model.safetensors", "optimizer.pt", "metrics.json", "run.json"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files; finished files get the usual 0666 & ~umask


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a fresh temp file beside ``path``, then move it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """A state dict as safetensors (tied tensors are stored once per name)."""
    tensors, seen = {}, set()
    for k, v in state_dict.items():
        t = v.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        tensors[k] = t.clone() if key in seen else t  # safetensors refuses tensors that share memory
        seen.add(key)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise NndslDataError(f"no weights at {path}") from None
    except (SafetensorError, OSError) as e:
        raise NndslDataError(f"cannot read weights {path}: {e}") from None


def save_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (torch.Tensor, np.ndarray)):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON-serializable: {type(o).__name__}")


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Training state (optimizer, step, RNG states) with torch.save; loadable with weights_only."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NndslDataError(f"nothing to resume: {path} does not exist",
                             hint="--resume continues a run whose folder holds optimizer.pt") from None
    except Exception as e:  # a foreign or damaged file
        raise NndslDataError(f"cannot read training state {path}: {e}") from None


# ----------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Every global RNG's state, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    out = {"python": random.getstate(), "torch": torch.get_rng_state(),
           "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x: Any) -> Any:
    return tuple(_tuples(i) for i in x) if isinstance(x, (list, tuple)) else x


# ----------------------------------------------------------------------------- a finished run
def load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(run.json's contents, the weights) of a run folder written by ``fit``."""
    run_dir = Path(run_dir)
    meta_path = run_dir / RUN
    if not meta_path.is_file():
        raise NndslDataError(f"{run_dir} is not an nndsl run folder (no {RUN})",
                             hint="`nndsl run FILE.nn --out DIR` writes one")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NndslDataError(f"cannot read {meta_path}: {e}") from None
    if not (run_dir / WEIGHTS).is_file():
        raise NndslDataError(f"{run_dir} has no {WEIGHTS} yet (the run saved no checkpoint)")
    return meta, load_weights(run_dir / WEIGHTS)
