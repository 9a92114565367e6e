"""IR Graph -> the Python source of ``forward``, built from the IR alone.

Every identifier is generated — ``v3`` for values, ``d0`` for symbolic dims, ``p5`` for
parameters, ``K`` for the constants table — and nothing of the input's text reaches the source
(no comments; locations go to ``Forward.line_spans`` as data). The forward reads like a
hand-written one:

    def forward(self, v0):
        rt.check_input(v0, K[0])          # the declared type, as data
        d0 = v0.shape[0]                  # each symbolic dim, from the first input axis that is it
        p0, p1, p2, p3 = rt.params(self)  # every parameter read once per call
        v1 = F.linear(v0, p0, p1)
        del v0                            # each value freed after its last use
        ...
        return v4

``backend`` picks the lowering table (``registry.emitter``); ``safety.check`` then refuses any
source that is not of this shape.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import NndslLoweringError, Span
from ..ir import dims as D
from ..ir.graph import Graph, Node, Value
from ..ops import registry
from . import safety


@dataclass
class Forward:
    """The generated ``forward``: source, the constants table it indexes, and where each line comes from."""

    source: str
    consts: tuple
    line_spans: list[Optional[Span]] = field(default_factory=list)  # line number - 1 -> source span


class _Names:
    """Generated names: ``v<i>`` per value in order of definition, ``p<i>`` per parameter, ``d<i>`` per dim."""

    def __init__(self, g: Graph):
        self.of: dict[int, str] = {}
        self.dims = {sym: f"d{i}" for i, sym in enumerate(g.symbols)}
        self.params = {name: f"p{i}" for i, name in enumerate(g.params)}
        self.count = 0

    def define(self, v: Value) -> str:
        self.of[v.id] = f"v{self.count}"
        self.count += 1
        return self.of[v.id]

    def __getitem__(self, v: Value) -> str:
        return self.of[v.id]


def generate_forward(g: Graph, backend: str = "torch") -> Forward:
    """The source of ``forward`` for graph ``g``, lowered with ``backend``'s table, checked by ``safety``."""
    names = _Names(g)
    consts: list[Any] = []
    lines: list[tuple[str, Optional[Span]]] = []
    args = [names.define(v) for v in g.inputs]
    for v in g.inputs:
        pattern = tuple(d if D.is_static(d) else None for d in v.type.shape)
        consts.append((v.name, pattern, str(v.type)))
        lines.append((f"rt.check_input({names[v]}, K[{len(consts) - 1}])", None))
    bindings = _dim_bindings(g, names)
    if g.params:
        ps = list(names.params.values())
        rows = [", ".join(ps[i:i + 16]) for i in range(0, len(ps), 16)]
        lines.append(("(" + ",\n     ".join(rows) + ",) = rt.params(self)", None))
    last = _last_uses(g)
    keep = {v.id for v in g.outputs}
    unused_inputs = [names[v] for v in g.inputs if v.id not in last and v.id not in keep]
    if unused_inputs:
        lines.append((f"del {', '.join(unused_inputs)}", None))
    for i, n in enumerate(g.nodes):
        if n.op == "param":
            _bind_param(n, names)
            continue
        lines.append((_emit_node(n, names, consts, backend), n.span))
        dead = [v for v in n.inputs if last.get(v.id) == i and v.id not in keep and v.id in names.of]
        dead += [v for v in n.outputs if v.id not in last and v.id not in keep]
        dead_names = list(dict.fromkeys(names[v] for v in dead if not names[v].startswith("p")))
        if dead_names:
            lines.append((f"del {', '.join(dead_names)}", n.span))
    lines.append((f"return {', '.join(names[v] for v in g.outputs) or 'None'}", None))
    # bind the dims the body reads, after the input checks
    body = "\n".join(ln for ln, _ in lines)
    used = [(b, None) for sym, b in bindings.items() if re.search(rf"\b{names.dims[sym]}\b", body)]
    lines[len(g.inputs):len(g.inputs)] = used
    src = f"def forward(self{''.join(', ' + a for a in args)}):\n" + "".join(f"    {ln}\n" for ln, _ in lines)
    safety.check(src)
    return Forward(src, tuple(consts), [None] + [span for ln, span in lines for _ in ln.split("\n")])


def _dim_bindings(g: Graph, names: _Names) -> dict[str, str]:
    """``d<i> = v<j>.shape[k]`` for each symbolic dim: the first input axis that is exactly it."""
    out = {}
    for sym in g.symbols:
        for v in g.inputs:
            hit = [i for i, d in enumerate(v.type.shape) if not D.is_static(d) and d.is_Symbol and d.name == sym]
            if hit:
                out[sym] = f"{names.dims[sym]} = {names[v]}.shape[{hit[0]}]"
                break
        else:
            raise NndslLoweringError(f"symbolic dim {sym} does not appear alone in any input shape")
    return out


def _last_uses(g: Graph) -> dict[int, int]:
    """Value id -> index of the last node that reads it."""
    last: dict[int, int] = {}
    for i, n in enumerate(g.nodes):
        for v in n.inputs:
            last[v.id] = i
    return last


def _bind_param(n: Node, names: _Names) -> None:
    name = n.attrs.get("name")
    if name not in names.params:
        raise NndslLoweringError(f"a param node reads {name!r}, which the graph does not declare", n.span)
    names.of[n.out.id] = names.params[name]


def _emit_node(n: Node, names: _Names, consts: list, backend: str) -> str:
    ctx = registry.EmitCtx(n, [names[v] for v in n.inputs], n.attrs, names.dims, consts)
    try:
        expr = registry.emitter(n.op, backend)(ctx)
    except NndslLoweringError:
        raise
    except Exception as e:  # an emit that cannot handle its attrs is a compiler bug; say where
        raise NndslLoweringError(f"cannot lower {n.op}: {e}", n.span) from e
    outs = [names.define(v) for v in n.outputs]
    return f"{', '.join(outs)} = {expr}"
