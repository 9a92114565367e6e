"""Training curves of one or more runs as one image (``nndsl plot``): a panel per quantity, runs overlaid.

The panels: ``loss`` (train_loss solid, val_loss dashed), one per other logged value
(``val_accuracy``, ``val_r2``, ...) and ``lr``; ``samples_per_second`` when asked for. Each run
keeps one color across the panels; the legend names the run folders. The rows come from each
run's ``log.csv`` (``runtime/tracking.py``), or the history in ``metrics.json`` for older runs.
Drawn with matplotlib's Agg canvas (no display needed, no global pyplot state).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from .errors import NndslConfigError, did_you_mean
from .runtime.rundir import atomic_write
from .runtime.tracking import read_log

PANEL_INCHES = (4.8, 3.2)  # one panel's width and height
DPI = 100
MAX_COLUMNS = 3
_NOT_PANELS = ("step", "epoch", "lr", "samples_per_second", "train_loss", "val_loss")


def panels_of(logs: Sequence[list[dict[str, float]]], wanted: Optional[Sequence[str]] = None) -> list[str]:
    """The panels to draw: ``wanted`` (checked against what the runs logged), else the default set."""
    cols: list[str] = []
    for rows in logs:
        for r in rows:
            cols += [k for k in r if k not in cols]
    available = (["loss"] if {"train_loss", "val_loss"} & set(cols) else []) + \
        [c for c in cols if c not in _NOT_PANELS] + (["lr"] if "lr" in cols else [])
    if not wanted:
        return available
    choices = available + [c for c in cols if c not in available and c not in ("step", "epoch")]
    out = []
    for name in wanted:
        found = next((c for c in (name, f"val_{name}") if c in choices), None)
        if found is None:
            raise NndslConfigError(f"--metric {name}: the runs logged no '{name}'",
                                   hint=did_you_mean(name, choices) or f"logged: {', '.join(choices)}")
        if found not in out:
            out.append(found)
    return out


def run_labels(runs: Sequence[Path]) -> list[str]:
    """The legend's names: each folder's name, or its path where two runs share a name."""
    names = [Path(r).name or str(r) for r in runs]
    return [n if names.count(n) == 1 else str(r) for n, r in zip(names, runs)]


def plot_runs(runs: Sequence[Path], out: Path, metrics: Optional[Sequence[str]] = None,
              size: Optional[tuple[int, int]] = None, dpi: int = DPI) -> tuple[int, int]:
    """Draw the curves of ``runs`` into ``out`` (its suffix picks the format); returns (width, height) in
    pixels. ``size``: the image's size in pixels (default: 480x320 per panel, up to three in a row, four as 2x2)."""
    import matplotlib
    from matplotlib.figure import Figure

    logs = [read_log(r) for r in runs]
    for r, rows in zip(runs, logs):
        if not rows:
            raise NndslConfigError(f"{r} has logged no evaluation yet: nothing to plot")
    panels = panels_of(logs, metrics)
    ncols = 2 if len(panels) == 4 else min(MAX_COLUMNS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    width, height = size or (round(ncols * PANEL_INCHES[0] * dpi), round(nrows * PANEL_INCHES[1] * dpi))
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    out = _checked_out(Path(out), fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for ax, panel in zip(axes, panels):
        series = [("train_loss", "-", "train"), ("val_loss", "--", "val")] if panel == "loss" else [(panel, "-", "")]
        for rows, label, color in zip(logs, run_labels(runs), colors):
            for key, style, kind in series:
                pts = [(r["step"], r[key]) for r in rows if key in r]
                if pts:
                    xs, ys = zip(*pts)
                    name = f"{label} ({kind})" if kind and len(series) > 1 else label
                    ax.plot(xs, ys, style, color=color, marker="o", markersize=3, label=name)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if panel in ("loss", "lr") and _positive(logs, [k for k, _, _ in series]):
            ax.set_yscale("log")
        ax.legend(fontsize="small")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # titles and legends stay text in an SVG
        atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix[1:].lower(), dpi=dpi))
    return width, height


def _positive(logs: Sequence[list[dict[str, float]]], keys: list[str]) -> bool:
    """Every value of ``keys`` is > 0 and they span more than a factor of 10 (a log scale helps)."""
    vals = [r[k] for rows in logs for r in rows for k in keys if k in r]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 10


def _checked_out(out: Path, fig) -> Path:
    """``out`` with a format matplotlib writes, in a folder that exists."""
    kinds = fig.canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in kinds:
        raise NndslConfigError(f"--out {out}: cannot tell the image format from '{out.suffix or out.name}'",
                               hint=f"end the name with one of: {', '.join('.' + k for k in sorted(kinds))}")
    if not out.parent.is_dir():
        raise NndslConfigError(f"--out {out}: the folder {out.parent} does not exist")
    return out
