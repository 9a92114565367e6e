"""The matplotlib renderer of ``graph_view``: a layered layout for machines without Graphviz.

Layout, top to bottom: a node's row is one below its deepest input (inputs on row 0); within a
row, nodes are ordered by the mean column of their inputs (one downward sweep), which keeps a
chain of ops, and a block's ops, in one column. Coordinates are inches, the axes fill the figure,
so the image is exactly (columns x rows) cells at ``dpi``. Each block instance is a rectangle
around its nodes (outer clusters padded more than the ones inside them), labeled ``scope: Block``;
in an SVG its group id is ``cluster_<scope>`` and every label stays text.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .runtime.rundir import atomic_write

if TYPE_CHECKING:
    from .graph_view import View

CELL = (2.0, 0.95)  # inches per column and per row
BOX = (1.6, 0.42)  # a node's box
MARGIN = 0.5  # inches around the drawing
PAD = 0.12  # cluster padding per nesting level
MAX_PIXELS = 32000  # matplotlib's Agg canvas is limited to 2**16 pixels a side: the dpi drops to fit
_COLORS = {"op": "#e8eef8", "input": "#dff0d8", "output": "#f8e0d0"}


def layout(v: "View") -> dict[str, tuple[float, float]]:
    """Node id -> (column, row) (columns may be fractional: a row is centered)."""
    preds: dict[str, list[str]] = {n.id: [] for n in v.nodes}
    for a, b, _ in v.edges:
        preds[b].append(a)
    row: dict[str, int] = {}
    for n in v.nodes:  # view nodes are in topological order
        row[n.id] = 1 + max((row[p] for p in preds[n.id]), default=-1)
    rows: dict[int, list[str]] = {}
    for n in v.nodes:
        rows.setdefault(row[n.id], []).append(n.id)
    col: dict[str, float] = {}
    for r in sorted(rows):
        ids = rows[r]
        if r > 0:  # order by the mean column of the inputs (nodes without inputs keep their place)
            ids.sort(key=lambda i: sum(col[p] for p in preds[i]) / len(preds[i]) if preds[i] else 0.0)
        for k, i in enumerate(ids):
            col[i] = k - (len(ids) - 1) / 2
    return {i: (col[i], row[i]) for i in col}


def draw_matplotlib(v: "View", out: Path, fmt: str, dpi: int = 100) -> tuple[int, int]:
    """Draw ``v`` into ``out``; returns the image size in pixels."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    pos = layout(v)
    cols = [c for c, _ in pos.values()]
    nrows = 1 + max(r for _, r in pos.values())
    width = (max(cols) - min(cols) + 1) * CELL[0] + 2 * MARGIN
    height = nrows * CELL[1] + 2 * MARGIN
    dpi = min(dpi, int(MAX_PIXELS / max(width, height)))
    x0 = MARGIN + CELL[0] / 2 - min(cols) * CELL[0]

    def xy(i: str) -> tuple[float, float]:  # the center of node i, in inches from the bottom left
        c, r = pos[i]
        return x0 + c * CELL[0], height - MARGIN - CELL[1] / 2 - r * CELL[1]

    fig = Figure(figsize=(width, height), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    _clusters(ax, v, xy, Rectangle)
    for n in v.nodes:
        x, y = xy(n.id)
        ax.add_patch(FancyBboxPatch((x - BOX[0] / 2, y - BOX[1] / 2), BOX[0], BOX[1], zorder=3,
                                    boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=_COLORS[n.kind],
                                    edgecolor="#506080", linewidth=0.8))
        ax.text(x, y, n.label, ha="center", va="center", fontsize=7.5, zorder=4)
    for a, b, shape in v.edges:
        (xa, ya), (xb, yb) = xy(a), xy(b)
        span = round(pos[b][1] - pos[a][1])
        ax.add_patch(FancyArrowPatch((xa, ya - BOX[1] / 2), (xb, yb + BOX[1] / 2), arrowstyle="-|>",
                                     mutation_scale=8, linewidth=0.7, color="#405070", zorder=2,
                                     connectionstyle=f"arc3,rad={0.35 if span > 1 else 0.0}"))
        if span > 1:  # a long edge: its shape just above where it arrives, left of the arrow head
            ax.text(xb - 0.08, yb + BOX[1] / 2 + 0.1, shape, fontsize=5.5, color="#304060", ha="right",
                    va="center", zorder=5)
        else:  # a short one: just below where it leaves
            ax.text((xa + xb) / 2 + 0.04, ya - BOX[1] / 2 - 0.16, shape, fontsize=5.5, color="#304060",
                    ha="left", va="center", zorder=5)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # labels stay text in an SVG
        atomic_write(out, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))
    return round(width * dpi), round(height * dpi)


def _clusters(ax, v: "View", xy, Rectangle) -> None:
    """A labeled rectangle around each block instance's nodes (and those of the instances inside it)."""
    inside: dict[str, list[str]] = {s: [] for s in v.clusters}
    for n in v.nodes:
        s = n.cluster
        while s:
            inside[s].append(n.id)
            s = v.parent(s)
    depth_below: dict[str, int] = {}
    for s in sorted(v.clusters, key=lambda s: -s.count(".")):  # innermost first
        kids = [k for k in v.clusters if v.parent(k) == s]
        depth_below[s] = 1 + max((depth_below[k] for k in kids), default=0)
    for s, ids in inside.items():
        if not ids:
            continue
        pad = PAD * depth_below[s]
        xs, ys = zip(*(xy(i) for i in ids))
        left, right = min(xs) - BOX[0] / 2 - pad, max(xs) + BOX[0] / 2 + pad
        bottom, top = min(ys) - BOX[1] / 2 - pad, max(ys) + BOX[1] / 2 + pad + 0.12
        rect = Rectangle((left, bottom), right - left, top - bottom, facecolor="#f4f6fb" if depth_below[s] % 2 else
                         "#fbfbfd", edgecolor="#8090b0", linewidth=0.8, zorder=1 - 0.01 * depth_below[s])
        rect.set_gid(f"cluster_{s}")
        ax.add_patch(rect)
        ax.text(left + 0.05, top - 0.04, v.clusters[s], fontsize=6.5, ha="left", va="top", color="#304080",
                zorder=1.5, gid=f"cluster_label_{s}")
