"""A picture of a model's IR graph (``nndsl graph``): ops as boxes, block instances as clusters,
tensor shapes on the edges.

``view(graph)`` reduces the IR to what a reader wants to see: every op but ``param`` (a layer's
weights are part of its box), the model's inputs and outputs, and a cluster per block instance
(``graph.scope_kinds``: ``blocks.3`` of block ``Block``, nested as the scopes are). A node sits in
the innermost block instance its scope lies in; the rest of its scope (``qkv``) names the layer
(left out where it is only the op's name again, as ``conv2d`` for an unnamed conv2d).

Two renderers: Graphviz's ``dot`` when the binary is installed (``to_dot`` writes its input), else
matplotlib with a simple layered layout (``draw_matplotlib``: an op one row below its deepest
input, rows ordered by the mean position of their inputs, clusters as boxes around their nodes).
Both write SVG, PNG or PDF; ``.dot`` writes the Graphviz source itself.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import NndslConfigError, NndslError
from .ir.graph import Graph
from .runtime.rundir import atomic_write

FORMATS = ("svg", "png", "pdf", "dot")
ENGINES = ("auto", "dot", "matplotlib")


@dataclass
class ViewNode:
    id: str
    label: str
    kind: str  # "op" | "input" | "output"
    cluster: str = ""  # the block instance it sits in ("" for none)


@dataclass
class View:
    name: str
    nodes: list[ViewNode] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, shape)
    clusters: dict[str, str] = field(default_factory=dict)  # scope -> label ("blocks.0: Block")

    def parent(self, scope: str) -> str:
        """The innermost cluster strictly enclosing ``scope`` ("" for none)."""
        return _innermost(scope.rpartition(".")[0], self.clusters)


def _innermost(scope: str, clusters: dict[str, str]) -> str:
    parts = scope.split(".") if scope else []
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in clusters:
            return ".".join(parts[:n])
    return ""


def view(g: Graph) -> View:
    """The drawable form of ``g``: ops (no params), inputs, outputs, shapes on edges, block clusters."""
    v = View(g.name, clusters={s: f"{s}: {kind}" for s, kind in g.scope_kinds.items()})
    made: dict[int, str] = {}  # value id -> the view node that produces it
    for i, x in enumerate(g.inputs):
        made[x.id] = f"in{i}"
        v.nodes.append(ViewNode(f"in{i}", x.name or f"input {i}", "input"))
    for k, n in enumerate(g.nodes):
        if n.op == "param":
            continue
        cluster = _innermost(n.scope, v.clusters)
        layer = n.scope[len(cluster):].lstrip(".") if n.scope != cluster else ""
        node_id = f"n{k}"
        v.nodes.append(ViewNode(node_id, f"{n.op}\n{layer}" if layer and layer != n.op else n.op, "op", cluster))
        for x in n.inputs:
            if x.id in made:
                v.edges.append((made[x.id], node_id, str(x.type)))
        for x in n.outputs:
            made[x.id] = node_id
    for i, x in enumerate(g.outputs):
        v.nodes.append(ViewNode(f"out{i}", "output" if len(g.outputs) == 1 else f"output {i}", "output"))
        if x.id in made:
            v.edges.append((made[x.id], f"out{i}", str(x.type)))
    return v


def render(g: Graph, out: Path, engine: str = "auto", dpi: int = 100) -> Optional[tuple[int, int]]:
    """Draw ``g`` into ``out`` (format from its suffix). Returns the PNG/SVG size in pixels when
    matplotlib drew it (None from dot, whose layout sets the size)."""
    out = Path(out)
    fmt = out.suffix[1:].lower()
    if fmt not in FORMATS:
        raise NndslConfigError(f"--out {out}: cannot tell the format from '{out.suffix or out.name}'",
                               hint=f"end the name with one of: {', '.join('.' + f for f in FORMATS)}")
    if not out.parent.is_dir():
        raise NndslConfigError(f"--out {out}: the folder {out.parent} does not exist")
    v = view(g)
    if fmt == "dot":
        text = to_dot(v)
        atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return None
    dot = shutil.which("dot")
    if engine == "dot" and dot is None:
        raise NndslConfigError("--engine dot: Graphviz's `dot` is not installed",
                               hint="install graphviz, or use --engine matplotlib")
    if engine != "matplotlib" and dot is not None:
        atomic_write(out, lambda tmp: _run_dot(dot, to_dot(v), fmt, tmp))
        return None
    from .graph_layout import draw_matplotlib

    return draw_matplotlib(v, out, fmt, dpi)


def _run_dot(dot: str, text: str, fmt: str, dest: str) -> None:
    try:
        done = subprocess.run([dot, f"-T{fmt}", "-o", dest], input=text, text=True, capture_output=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NndslError(f"Graphviz's dot failed: {e}") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["(no message)"])[0]
        raise NndslError(f"Graphviz's dot failed (exit {done.returncode}): {first}")


# ----------------------------------------------------------------------------- Graphviz source
def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_DOT_STYLE = {"op": 'shape=box, style="rounded,filled", fillcolor="#e8eef8"',
              "input": 'shape=ellipse, style=filled, fillcolor="#dff0d8"',
              "output": 'shape=ellipse, style=filled, fillcolor="#f8e0d0"'}


def to_dot(v: View) -> str:
    """The view as Graphviz source: one ``subgraph cluster_<scope>`` per block instance, nested."""
    members: dict[str, list[str]] = {}
    for n in v.nodes:
        members.setdefault(n.cluster, []).append(f"{n.id} [label={_q(n.label)}, {_DOT_STYLE[n.kind]}];")
    children: dict[str, list[str]] = {}
    for s in v.clusters:
        children.setdefault(v.parent(s), []).append(s)

    def block(scope: str, indent: str) -> list[str]:
        lines = [indent + m for m in members.get(scope, [])]
        for s in children.get(scope, []):
            lines.append(f"{indent}subgraph {_q('cluster_' + s)} {{")
            lines.append(f"{indent}  label={_q(v.clusters[s])}; style=rounded; color=\"#8090b0\";")
            lines += block(s, indent + "  ")
            lines.append(f"{indent}}}")
        return lines

    lines = [f"digraph {_q(v.name)} {{", "  rankdir=TB; fontname=Helvetica; fontsize=11;",
             "  node [fontname=Helvetica, fontsize=10]; edge [fontname=Helvetica, fontsize=8];"]
    lines += block("", "  ")
    lines += [f"  {a} -> {b} [label={_q(shape)}];" for a, b, shape in v.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"
