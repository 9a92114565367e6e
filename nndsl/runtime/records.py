"""What a run was trained from, kept in its folder: the resolved configuration and the exact source.

    run_dir/config.json   {"model", "file", "hyperparams", "train", "base_dir"}: the model's
                          hyperparameters and the train settings after the file, every --set and
                          every option (--steps, --lr, ...) — what the run actually used
    run_dir/train.nn      the same train settings as a ``train`` section of the language
                          (``as_section``): paste it into the source to train the same way again
    run_dir/source.nn     the source file, byte for byte

run.json (``rundir.py``) holds the same facts for ``nndsl.load``; these files are for people and
other tools. Each is written atomically (temp file + rename).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .config import KEYS, Spec, TrainConfig
from .rundir import atomic_write, save_json

CONFIG, TRAIN_NN, SOURCE = "config.json", "train.nn", "source.nn"
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def save_records(run_dir: Path, cfg: TrainConfig, meta: dict[str, Any]) -> None:
    """Write config.json, train.nn and (when ``meta`` has the model's source) source.nn into ``run_dir``."""
    run_dir = Path(run_dir)
    hyper = dict(meta.get("hyperparams") or {})
    save_json(run_dir / CONFIG, {"model": meta.get("model"), "file": meta.get("file"),
                                 "hyperparams": hyper, "train": cfg.as_dict(), "base_dir": str(cfg.base_dir)})
    _write_text(run_dir / TRAIN_NN, as_section(cfg, meta.get("model"), hyper))
    if isinstance(meta.get("source"), str):
        _write_text(run_dir / SOURCE, meta["source"])


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(text.encode("utf-8")))


def as_section(cfg: TrainConfig, model: Optional[str] = None, hyperparams: Optional[dict[str, Any]] = None) -> str:
    """``cfg`` as a ``train`` section that evaluates back to the same settings (unset keys left out)."""
    lines = ["# the resolved train settings of this run (the file's, after every command-line override);",
             f"# relative data paths start at {cfg.base_dir}"]
    if hyperparams:
        lines.append("# hyperparameters: " + ", ".join(f"{k}={_literal(v)}" for k, v in hyperparams.items()))
    lines.append(f"train {model} {{" if model else "train {")
    for key in KEYS:
        value = getattr(cfg, key)
        if value is None:
            continue
        if key == "loss" and value.name == "expression":
            text = value.kwargs["text"]
        elif key == "metrics":
            text = "[" + ", ".join(value) + "]"
        else:
            text = _literal(value)
        lines.append(f"    {key} = {text}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _literal(v: Any) -> str:
    """A value as the language writes it: ``adam(lr=0.001, betas=[0.9, 0.999])``, ``"text"``, ``true``."""
    if isinstance(v, Spec):
        args = ", ".join(f"{k}={_literal(x)}" for k, x in v.kwargs.items() if x is not None)
        return f"{v.name}({args})" if args else v.name
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_literal(x) for x in v) + "]"
    return '"' + "".join(_ESCAPES.get(c, c) for c in str(v)) + '"'
