"""Checkpoints that cannot tear: each one a folder, published by one rename.

    run_dir/checkpoints/step-000000120/        a periodic checkpoint (the newest ``keep_last`` stay)
        model.safetensors                      the weights (safetensors: data only, nothing to execute)
        state.pt                               optimizer, step, history, every RNG, the sampler, the
                                               running loss (``torch.load(weights_only=True)``)
        manifest.json                          size and sha256 of the two files, written last
    run_dir/checkpoints/best-step-000000080/   the best checkpoint by the ``best`` metric (hard links)

A checkpoint is written into ``.tmp-...`` beside the others, every file and the folder fsync'd,
then renamed to its name: a kill at any instant leaves the previous checkpoints and either the
whole new one or a temp folder (removed at the next start). Reading one checks the manifest, the
sizes and hashes, then the formats; anything wrong is "damaged checkpoint <path>: ...", and
``newest`` falls back to the one before. Weights that are not finite are never written.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import NndslDataError
from .rundir import CHECKPOINTS, TMP_PREFIX, fault, fsync_dir, read_json, write_file

WEIGHTS, STATE, MANIFEST = "model.safetensors", "state.pt", "manifest.json"
FORMAT = "nndsl checkpoint 1"
_NAME = re.compile(r"(best-)?step-(\d{9,})\Z")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    best: bool  # a best-by-metric checkpoint (else periodic)


def name(step: int, best: bool = False) -> str:
    return f"{'best-' if best else ''}step-{step:09d}"


def listing(run_dir: Path) -> list[Checkpoint]:
    """The published checkpoints of ``run_dir``, oldest first (periodic before best at one step)."""
    folder = Path(run_dir) / CHECKPOINTS
    found = []
    for p in folder.iterdir() if folder.is_dir() else []:
        m = _NAME.match(p.name)
        if m and p.is_dir():
            found.append(Checkpoint(p, int(m.group(2)), bool(m.group(1))))
    return sorted(found, key=lambda c: (c.step, not c.best))


# ----------------------------------------------------------------------------- writing
def nonfinite(state_dict: dict[str, torch.Tensor]) -> Optional[str]:
    """The name of the first floating tensor holding nan or inf, or None (of a sharded tensor: in
    this process's shard)."""
    for k, v in state_dict.items():
        v = v.to_local() if hasattr(v, "to_local") else v
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return k
    return None


def write(run_dir: Path, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any], *,
          periodic: bool = True, best: bool = False) -> list[Path]:
    """Publish the checkpoint of ``step`` as a periodic one, a best one, or both; returns the folders."""
    if not (periodic or best):
        return []
    bad = nonfinite(weights)
    if bad is not None:  # the caller checks first; this is the last line of defense
        raise NndslDataError(f"refusing to write a checkpoint: weight '{bad}' holds nan or inf")
    folder = Path(run_dir) / CHECKPOINTS
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name(step)}.", dir=folder))
    write_file(tmp / WEIGHTS, lambda p: save_file(_unshared(weights), p, metadata={"format": "pt"}), "weights")
    fault("after-weights")
    write_file(tmp / STATE, lambda p: torch.save(state, p), "state")
    fault("after-state")
    files = {f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)} for f in (WEIGHTS, STATE)}
    write_file(tmp / MANIFEST, lambda p: Path(p).write_text(_manifest_text(step, files)), "manifest")
    fsync_dir(tmp)
    fault("after-manifest")
    published: list[Path] = []
    for target in [name(step)] * periodic + [name(step, best=True)] * best:
        src = _linked_copy(published[0], folder) if published else tmp
        if (folder / target).exists():  # the same step written again (a resumed run): replace it whole
            remove(folder / target)
        os.rename(src, folder / target)
        fsync_dir(folder)
        published.append(folder / target)
        fault("after-publish")
    return published


def _manifest_text(step: int, files: dict[str, dict[str, Any]]) -> str:
    return json.dumps({"format": FORMAT, "step": step, "files": files}, indent=2) + "\n"


def _unshared(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors; tied ones cloned (safetensors refuses tensors sharing memory)."""
    tensors, seen = {}, set()
    for k, v in state_dict.items():
        t = v.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        tensors[k] = t.clone() if key in seen else t
        seen.add(key)
    return tensors


def _linked_copy(src: Path, folder: Path) -> Path:
    """A temp folder holding hard links to ``src``'s files (a copy where links are not supported)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{src.name}.", dir=folder))
    for f in (WEIGHTS, STATE, MANIFEST):
        try:
            os.link(src / f, tmp / f)
        except OSError:
            write_file(tmp / f, lambda p, f=f: shutil.copyfile(src / f, p))
    fsync_dir(tmp)
    return tmp


def remove(path: Path) -> None:
    """Rename to a temp name first, so a kill mid-delete leaves a leftover, never a half checkpoint."""
    trash = path.with_name(f"{TMP_PREFIX}trash-{path.name}-{os.getpid()}")
    os.rename(path, trash)
    fault("during-prune")
    shutil.rmtree(trash)


def prune(run_dir: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` periodic checkpoints and the newest best one."""
    found = listing(run_dir)
    periodic = [c for c in found if not c.best]
    best = [c for c in found if c.best]
    for c in periodic[:-keep_last] + best[:-1]:
        remove(c.path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- reading
def read(ckpt: Checkpoint, with_state: bool = True) -> tuple[dict[str, torch.Tensor], Optional[dict[str, Any]]]:
    """(weights, training state) of a checkpoint, verified; "damaged checkpoint <path>: ..." otherwise."""
    def damaged(why: str) -> NndslDataError:
        return NndslDataError(f"damaged checkpoint {ckpt.path}: {why}")

    try:
        manifest = read_json(ckpt.path / MANIFEST, "manifest")
    except NndslDataError as e:
        raise damaged(e.message) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("format") != FORMAT or manifest.get("step") != ckpt.step \
            or set(files) != {WEIGHTS, STATE}:
        raise damaged(f"{MANIFEST} is not an nndsl manifest for step {ckpt.step}")
    for f, info in files.items():
        path = ckpt.path / f
        if not isinstance(info, dict) or not path.is_file():
            raise damaged(f"{f} is missing")
        if path.stat().st_size != info.get("bytes") or _sha256(path) != info.get("sha256"):
            raise damaged(f"{f} does not match its size and sha256 in {MANIFEST} (truncated or changed)")
    try:
        weights = load_file(str(ckpt.path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise damaged(f"{WEIGHTS}: {e}") from None
    if not with_state:
        return weights, None
    try:
        state = torch.load(ckpt.path / STATE, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign or damaged file: pickle, zip and torch errors alike
        raise damaged(f"{STATE}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    problem = _check_state(state, ckpt.step)
    if problem:
        raise damaged(f"{STATE}: {problem}")
    return weights, state


def _check_state(state: Any, step: int) -> Optional[str]:
    if not isinstance(state, dict):
        return "not a training state"
    need = {"step": int, "history": list, "optimizer": dict, "rng": dict, "sampler": torch.Tensor,
            "final": dict, "samples": int, "seconds": float, "train_seconds": float}
    for k, kind in need.items():
        if not isinstance(state.get(k), kind):
            return f"'{k}' is missing or not a {kind.__name__}"
    if state["step"] != step:
        return f"it is the state of step {state['step']}, not {step}"
    return None


def newest(run_dir: Path, *, best: Optional[bool] = None, with_state: bool = True,
           log: Optional[Callable[[str], None]] = None):
    """(checkpoint, weights, state) of the newest checkpoint that verifies, or None when there is none.

    ``best``: only best ones (True), only periodic ones (False), or any (None). A damaged one is
    reported through ``log`` and the one before it is tried; when all are damaged the newest's
    error is raised.
    """
    found = [c for c in listing(run_dir) if best is None or c.best == best]
    first_error = None
    for c in reversed(found):
        try:
            weights, state = read(c, with_state)
        except NndslDataError as e:
            first_error = first_error or e
            if log is not None:
                log(f"{e.message}; trying the checkpoint before it")
            continue
        return c, weights, state
    if first_error is not None:
        raise first_error
    return None


def load_weights(run_dir: Path, which: str = "latest") -> tuple[Path, dict[str, torch.Tensor]]:
    """(where, weights) of a run's newest good checkpoint (``which="best"``: its best one), finite.

    A run folder from before checkpoint folders (a lone ``model.safetensors``) still loads.
    """
    if which not in ("latest", "best"):
        raise NndslDataError(f'which="{which}": expected "latest" or "best"')
    run_dir = Path(run_dir)
    found = newest(run_dir, best=True if which == "best" else None, with_state=False,
                   log=lambda m: warnings.warn(m, stacklevel=3))
    if found is not None:
        where, weights = found[0].path / WEIGHTS, found[1]
    elif which == "latest" and (run_dir / WEIGHTS).is_file():
        where = run_dir / WEIGHTS
        try:
            weights = load_file(str(where))
        except (SafetensorError, OSError, ValueError) as e:
            raise NndslDataError(f"damaged weights {where}: {e}") from None
    else:
        what = "a best checkpoint" if which == "best" else "a checkpoint"
        raise NndslDataError(f"{run_dir} has no {what} yet (the run saved none)")
    bad = nonfinite(weights)
    if bad is not None:
        raise NndslDataError(f"{where}: weight '{bad}' holds nan or inf; refusing to load it")
    return where, weights


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
    try:
        random.setstate(_tuples(state["python"]))
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise NndslDataError(f"damaged checkpoint: its RNG state cannot be restored ({e})") from None
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x: Any) -> Any:
    return tuple(_tuples(i) for i in x) if isinstance(x, (list, tuple)) else x

