"""What the language server shows on hover: the inferred type of the value under the cursor.

    info = hover(analysis, line=4, col=5)      # 1-based, columns in characters, like Span
    info.text    # "h: f32[B, 128]"
    info.span    # the hovered name or expression

Source positions map to IR values through ``Node.span``: every node an expression creates carries
the expression's span, so the value of an expression is the output of the nodes with its span
(``SpanIndex``). Names are resolved in the AST to the statement or parameter that bound them
(``bindings``). A block's body is elaborated once per instance: its values are shown for the first
instance, and a block parameter shows its declared pattern beside the first call's type.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Union

from ..errors import Span
from ..frontend import ast
from ..ir.graph import Graph, Node, Value
from .analysis import Analysis

Key = tuple  # (line, col, end_line, end_col) of a span
_MAX_DEPTH = 32  # block parameters lead to call sites, which may lead to other parameters


@dataclass
class HoverInfo:
    text: str  # one or more lines of nndsl-like text: "h: f32[B, 128]"
    span: Span  # the source it describes


def key(span: Span) -> Key:
    return (span.line, span.col, span.end_line, span.end_col)


def contains(span: Optional[Span], line: int, col: int) -> bool:
    if span is None or not span.end_line:
        return False
    return (span.line, span.col) <= (line, col) < (span.end_line, span.end_col)


# ----------------------------------------------------------------------------- source -> IR values
class SpanIndex:
    """The nodes of graphs by source span, in elaboration order (first instance first)."""

    def __init__(self, graphs: list[Graph]):
        self.nodes: dict[Key, list[Node]] = {}
        for g in graphs:
            for n in g.nodes:
                if n.span is not None and n.op != "param":
                    self.nodes.setdefault(key(n.span), []).append(n)
        self.inputs = {v.name: v for g in graphs[:1] for v in g.inputs}

    def result(self, span: Span) -> Optional[list[Value]]:
        """The values the expression at ``span`` produced in its first instance, or None."""
        nodes = self.nodes.get(key(span))
        if not nodes:
            return None
        scope = nodes[0].scope  # each instance of a block or repeat body has its own scope
        group = [n for n in nodes if n.scope == scope]
        used = {id(v) for n in group for v in n.inputs}
        outs = [v for n in group for v in n.outputs if id(v) not in used]
        return outs or list(group[-1].outputs)

    def op(self, span: Span) -> Optional[str]:
        nodes = self.nodes.get(key(span))
        return nodes[0].op if nodes else None


# ----------------------------------------------------------------------------- names -> bindings
@dataclass
class Bound:
    """Where a name got its value: a parameter of ``defn``, or target ``index`` of an assignment."""

    defn: ast.Definition
    param: Optional[ast.Param] = None
    assign: Optional[ast.Assign] = None
    index: int = 0


def bindings(program: ast.Program) -> dict[Key, Bound]:
    """Span of each name (use or assignment target) in the file's bodies -> the binding it reads.

    Statements are walked in order, a repeat body once: its first iteration sees the names bound
    before the repeat, as the first instance does."""
    out: dict[Key, Bound] = {}
    for d in program.definitions:
        env = {p.name: Bound(d, param=p) for p in d.params}

        def uses(e: Any, env=env) -> None:
            for n in ast.walk(e):
                if isinstance(n, ast.Name) and n.id in env:
                    out[key(n.span)] = env[n.id]

        def run(body: list, env=env, d=d) -> None:
            for st in body:
                if isinstance(st, ast.Assign):
                    uses(st.value)
                    for i, t in enumerate(st.targets):
                        env[t.id] = out[key(t.span)] = Bound(d, assign=st, index=i)
                elif isinstance(st, ast.Repeat):
                    uses(st.count)
                    run(st.body)
                elif isinstance(st, ast.Return):
                    for v in st.values:
                        uses(v)

        run(d.body)
    return out


# ----------------------------------------------------------------------------- hover
class Hoverer:
    """Answers hovers over one analysed file."""

    def __init__(self, analysis: Analysis):
        self.program = analysis.program
        self.graphs = list(analysis.graphs.values())
        self.index = SpanIndex(self.graphs)
        self.bound = bindings(self.program) if self.program is not None else {}
        self.blocks = self.program.blocks() if self.program is not None else {}

    # -- values of expressions ------------------------------------------------------------
    def value(self, e: Any, depth: int = 0) -> Any:
        """The Value (or tuple of Values) of expression ``e`` in its first instance, or None."""
        if depth > _MAX_DEPTH or e is None:
            return None
        outs = self.index.result(e.span)
        if outs is not None:
            return outs[0] if len(outs) == 1 else tuple(outs)
        if isinstance(e, ast.Name):
            b = self.bound.get(key(e.span))
            return self.bound_value(b, depth + 1) if b is not None else None
        if isinstance(e, ast.UnaryOp) and e.op == "+":
            return self.value(e.operand, depth + 1)
        if isinstance(e, ast.TupleExpr):
            return tuple(self.value(x, depth + 1) for x in e.items)
        if isinstance(e, ast.Call) and _callee(e) in self.blocks:  # a block's value: its return's
            ret = next((s for s in reversed(self.blocks[_callee(e)].body) if isinstance(s, ast.Return)), None)
            if ret is not None:
                vals = [self.value(v, depth + 1) for v in ret.values]
                return vals[0] if len(vals) == 1 else tuple(vals)
        return None

    def bound_value(self, b: Bound, depth: int) -> Any:
        if b.assign is not None:
            v = self.value(b.assign.value, depth)
            if len(b.assign.targets) > 1:
                return v[b.index] if isinstance(v, tuple) and b.index < len(v) else None
            return v
        if b.defn.kind == "model":
            return self.index.inputs.get(b.param.name) if self.graphs and self.graphs[0].name == b.defn.name \
                else self._model_input(b.defn.name, b.param.name)
        return self.first_argument(b.defn, b.param, depth)

    def _model_input(self, model: str, name: str) -> Optional[Value]:
        g = next((g for g in self.graphs if g.name == model), None)
        return next((v for v in g.inputs if v.name == name), None) if g is not None else None

    def first_argument(self, block: ast.Definition, param: ast.Param, depth: int) -> Any:
        """The value the first call of ``block`` (that has one) passes for ``param``."""
        pos = [p.name for p in block.params].index(param.name)
        for d in self.program.definitions:
            for n in _walk_body(d.body):
                if isinstance(n, ast.Call) and _callee(n) == block.name:
                    args = ([n.func.value] if isinstance(n.func, ast.Attribute) else []) + list(n.args)
                    arg = next((k.value for k in n.kwargs if k.name == param.name), None)
                    if arg is None and pos < len(args):
                        arg = args[pos]
                    v = self.value(arg, depth + 1) if arg is not None else None
                    if v is not None:
                        return v
        return None

    def model_graph(self, defn: ast.Definition) -> Optional[Graph]:
        return next((g for g in self.graphs if g.name == defn.name), None)

    # -- what the cursor is on -------------------------------------------------------------
    def hover(self, line: int, col: int) -> Optional[HoverInfo]:
        if self.program is None:
            return None
        path = _innermost(self.program, line, col)
        if not path:
            return None
        node, parents = path[-1], path[:-1]
        parent = parents[-1] if parents else None
        defn = next((p for p in parents if isinstance(p, ast.Definition)), None)
        if isinstance(node, ast.Name) and isinstance(parent, ast.Call) and parent.func is node:
            return self.describe_call(parent, node.span)
        if isinstance(node, ast.Attribute) and isinstance(parent, ast.Call) and parent.func is node:
            return self.describe_call(parent, node.span)
        if isinstance(node, ast.Name):
            return self.describe_name(node, defn)
        if isinstance(node, ast.Param):
            return self.describe_param(node, defn)
        if isinstance(node, ast.Definition) and _on_header(node, line, col):
            return self.describe_definition(node)
        if isinstance(node, ast.Return):
            return self.describe_values("return", [self.value(v) for v in node.values], node.span)
        if isinstance(node, ast.Call):
            return self.describe_call(node, node.span)
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Subscript)):
            v = self.value(node)
            op = self.index.op(node.span)
            return self.describe_values(op or "", [v], node.span) if v is not None else None
        return None

    def describe_name(self, name: ast.Name, defn: Optional[ast.Definition]) -> Optional[HoverInfo]:
        b = self.bound.get(key(name.span))
        if b is not None and b.param is not None and not isinstance(b.param.type, ast.TensorTypeExpr):
            return self.describe_param(b.param, b.defn, name.span)
        if b is not None and b.param is not None and b.defn.kind == "block":
            return self.describe_param(b.param, b.defn, name.span)
        v = self.value(name)
        if isinstance(v, Value):
            return HoverInfo(f"{name.id}: {v.type}", name.span)
        g = self.model_graph(defn) if defn is not None else (self.graphs[0] if self.graphs else None)
        if g is not None and name.id in g.hyperparams:
            return HoverInfo(f"{name.id} = {g.hyperparams[name.id]!r}  (hyperparameter)", name.span)
        if g is not None and name.id in g.symbols:
            return HoverInfo(f"{name.id}: a symbolic dim (any size)", name.span)
        return None

    def describe_param(self, p: ast.Param, defn: Optional[ast.Definition],
                       span: Optional[Span] = None) -> Optional[HoverInfo]:
        span = span or p.span
        declared = f"{p.name}: {_type_text(p.type)}"
        if defn is None:
            return HoverInfo(declared, span)
        if not isinstance(p.type, ast.TensorTypeExpr):
            g = self.model_graph(defn) if defn.kind == "model" else None
            if g is not None and p.name in g.hyperparams:
                return HoverInfo(f"{declared} = {g.hyperparams[p.name]!r}  (hyperparameter)", span)
            return HoverInfo(declared, span)
        v = self.bound_value(Bound(defn, param=p), 0)
        if v is None or not isinstance(v, Value):
            return HoverInfo(declared, span)
        if defn.kind == "model":
            return HoverInfo(f"{p.name}: {v.type}", span)
        return HoverInfo(f"{declared}\nfirst call: {p.name}: {v.type}", span)

    def describe_call(self, call: ast.Call, span: Span) -> Optional[HoverInfo]:
        name = _callee(call) or "call"
        v = self.value(call)
        if v is None:
            return None
        kind = "block " if name in self.blocks else ""
        op = self.index.op(call.span)
        suffix = f"  (op {op})" if op and op != name and not kind else ""
        return self.describe_values(f"{kind}{name}(...){suffix}", [v], span, arrow=True)

    def describe_definition(self, d: ast.Definition) -> Optional[HoverInfo]:
        g = self.model_graph(d) if d.kind == "model" else None
        if g is None:
            return None
        ins = ", ".join(f"{v.name}: {v.type}" for v in g.inputs)
        outs = ", ".join(str(v.type) for v in g.outputs)
        if len(g.outputs) > 1:
            outs = f"({outs})"
        return HoverInfo(f"model {d.name}({ins}) -> {outs}\n{g.num_parameters():,} parameters", d.span)

    def describe_values(self, what: str, values: list, span: Span, arrow: bool = False) -> Optional[HoverInfo]:
        flat = [x for v in values for x in (v if isinstance(v, tuple) else (v,))]
        if not flat or any(not isinstance(x, Value) for x in flat):
            return None
        types = ", ".join(str(x.type) for x in flat)
        if len(flat) > 1:
            types = f"({types})"
        sep = " -> " if arrow else ": "
        return HoverInfo(f"{what}{sep}{types}" if what else types, span)


def hover(analysis: Analysis, line: int, col: int) -> Optional[HoverInfo]:
    """The hover text at 1-based ``line``/``col`` of an analysed file, or None."""
    return Hoverer(analysis).hover(line, col)


# ----------------------------------------------------------------------------- AST helpers
def _callee(call: ast.Call) -> Optional[str]:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _walk_body(body: list) -> Iterator[Any]:
    for st in body:
        yield from ast.walk(st)


def _children(obj: Any) -> Iterator[Any]:
    """Every AST node directly inside ``obj`` (any dataclass field, lists included)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        for item in (v if isinstance(v, list) else [v]):
            if dataclasses.is_dataclass(item) and not isinstance(item, Span):
                yield item


def _innermost(program: ast.Program, line: int, col: int) -> list:
    """The chain of AST nodes from a definition down to the smallest one containing the position."""
    path: list = []
    level: list = list(program.definitions) + list(program.trains)
    while True:
        inner = [n for n in level if contains(getattr(n, "span", None), line, col)]
        if not inner:
            return path
        path.append(inner[0])
        level = list(_children(inner[0]))


def _on_header(d: ast.Definition, line: int, col: int) -> bool:
    """True on ``model Name`` / ``block Name`` (not anywhere in the body)."""
    text = d.span.source_line() or ""
    start = text.find(d.name, d.span.col - 1 + len(d.kind))
    return line == d.span.line and start >= 0 and col <= start + len(d.name)


def _type_text(t: Union[ast.TensorTypeExpr, ast.ScalarTypeExpr]) -> str:
    from ..elab.shapes import type_text

    return type_text(t) if isinstance(t, ast.TensorTypeExpr) else t.name
