"""The IR op table: for each op, its shape/dtype inference and its lowering per backend.

An op is registered with ``@op("name", emit=...)`` decorating its inference function:

    @op("linear", emit=lambda e: f"F.linear({e.args})")
    def _linear(c: InferCtx) -> list[TensorType]: ...

* inference gets an ``InferCtx`` (input types, attrs, helpers) and returns the output types;
  it reports problems with ``c.error(...)``, which the builder locates at the source span.
* ``emit`` (the op's PyTorch lowering) gets an ``EmitCtx`` and returns one Python expression
  computing the op's output (a tuple expression for several outputs) in the generated ``forward``.

Lowering tables. Each backend has one: ``register_lowering("triton", "layernorm", emit)`` adds a
lowering, ``emitter(op, backend)`` returns the backend's lowering or falls back to the op's torch
``emit``; ``backend.emit.generate_forward(g, backend=...)`` reads the table.

What an emit may write. The generated source never contains text taken from an input: the
backend checks every generated module with ``ast`` (``backend.safety``) and refuses anything else.
So an emit builds its expression only from

* ``e.ins[i]`` / ``e.args`` — the generated names of the inputs (``v12``, ``p3``);
* ``e.dim(d)`` / ``e.dims(ds)`` — a dim as integer arithmetic over generated dim names (``d0``);
* ``e.lit(value)`` — any attribute value: ``repr`` of a validated int, finite float, bool, None,
  tuple/list of these, a sympy expression over dims, ``float('inf')``/``float('nan')``, a string
  of ``ALLOWED_STRINGS`` (op keywords such as ``'tanh'``); anything else goes into the module's
  constants table and reads back as ``K[i]``;
* the names of the generated module's scope: ``torch``, ``F`` (torch.nn.functional), ``rt``
  (``nndsl.backend.rt``, also ``rt.math``), ``K`` (the constants table), ``kern`` (``nndsl.kernels``,
  imported only when a forward uses it), ``self`` (the module: ``self.training``), and the
  builtins ``float``, ``int``, ``min``, ``max``, ``abs``;
* attribute names that exist on those modules or on ``torch.Tensor`` (``x.reshape``), never
  starting with ``_``; keyword argument names not starting with ``_``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import sympy

from ..errors import NndslLoweringError, NndslShapeError, NndslTypeError
from ..ir import dims as D
from ..ir.types import TensorType


class InferError(Exception):
    """Raised by inference; the builder turns it into a located NndslShapeError/NndslTypeError."""

    def __init__(self, message: str, hint: Optional[str] = None, kind: type = NndslShapeError):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.kind = kind


@dataclass
class InferCtx:
    op: str
    types: list[TensorType]
    attrs: dict[str, Any]
    names: list[Optional[str]] = field(default_factory=list)  # source names of the inputs, for messages

    def error(self, message: str, hint: Optional[str] = None) -> "InferError":
        return InferError(message, hint)

    def type_error(self, message: str, hint: Optional[str] = None) -> "InferError":
        return InferError(message, hint, NndslTypeError)

    def describe(self, i: int) -> str:
        """'h: f32[B, 64, 7, 7]' — how a message names input i."""
        name = self.names[i] if i < len(self.names) and self.names[i] else None
        return f"{name}: {self.types[i]}" if name else str(self.types[i])

    def expect_rank(self, i: int, *ranks: int, what: str = "input") -> TensorType:
        t = self.types[i]
        if t.rank not in ranks:
            want = " or ".join(str(r) for r in ranks)
            raise self.error(f"{self.op} expects a rank-{want} {what}, got {self.describe(i)}")
        return t

    def expect_float(self, i: int) -> TensorType:
        """Input i must be floating-point; the message says the dtype is the problem and how to cast."""
        t = self.types[i]
        if not t.is_float:
            name = self.names[i] if i < len(self.names) and self.names[i] else "x"
            raise self.type_error(f"{self.op} expects a floating-point input, got {self.describe(i)}",
                                  f"cast({name}, \"f32\") first")
        return t

    def axis(self, axis: int, rank: int) -> int:
        """Normalize a possibly negative axis; error when out of range."""
        if not -rank <= axis < rank:
            raise self.error(f"{self.op}: dim {axis} is out of range for a rank-{rank} tensor")
        return axis % rank

    def broadcast(self, a: TensorType, b: TensorType) -> tuple:
        """NumPy broadcasting of two shapes."""
        out = []
        ra, rb = a.rank, b.rank
        for k in range(max(ra, rb)):
            da = a.shape[ra - 1 - k] if k < ra else 1
            db = b.shape[rb - 1 - k] if k < rb else 1
            if D.equal(da, 1):
                out.append(db)
            elif D.equal(db, 1) or D.equal(da, db):
                out.append(da)
            else:
                raise self.error(
                    f"{self.op}: shapes {D.shape_str(a.shape)} and {D.shape_str(b.shape)} do not broadcast "
                    f"(dim {D.dim_str(da)} vs {D.dim_str(db)})"
                )
        return tuple(reversed(out))


# the strings an emit may write as literals (op keywords); any other string goes through K
ALLOWED_STRINGS = {"none", "tanh", "relu", "lstm", "gru", "rnn_tanh", "rnn_relu", "inf", "-inf", "nan", "nearest",
                   "linear", "bilinear"}


@dataclass
class EmitCtx:
    node: Any  # the ir.graph.Node
    ins: list[str]  # generated Python names holding the inputs
    attrs: dict[str, Any]
    dim_names: Optional[Mapping[str, str]] = None  # symbolic dim -> generated name ("T" -> "d1"); None: as is
    consts: Optional[list] = None  # the module's constants table K (``lit`` appends to it)

    @property
    def args(self) -> str:
        """The inputs, comma-separated."""
        return ", ".join(self.ins)

    def dim(self, d) -> str:
        """Python code for a dim (ints print as numbers, symbols as the generated dim names)."""
        return D.dim_code(d, self.dim_names)

    def dims(self, ds: Sequence) -> str:
        return "(" + ", ".join(self.dim(d) for d in ds) + ("," if len(ds) == 1 else "") + ")"

    def lit(self, v: Any) -> str:
        """Python code for an attribute value (see the module docstring); never raw text of an input."""
        if v is None or isinstance(v, bool):
            return repr(v)
        if isinstance(v, int):
            return repr(int(v))
        if isinstance(v, float):
            v = float(v)
            return f"float({str(v)!r})" if math.isnan(v) or math.isinf(v) else repr(v)
        if isinstance(v, sympy.Expr):
            return f"({D.expr_code(v, self.dim_names)})"
        if isinstance(v, str) and v in ALLOWED_STRINGS:
            return repr(v)
        if isinstance(v, (tuple, list)):
            items = [self.lit(x) for x in v]
            if isinstance(v, list):
                return "[" + ", ".join(items) + "]"
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return self.const(v)

    def const(self, v: Any) -> str:
        """``K[i]``: ``v`` as an entry of the module's constants table (data, not source)."""
        if self.consts is None:
            raise NndslLoweringError(f"{self.node.op}: attribute value of type {type(v).__name__} needs the "
                                     "module's constants table", getattr(self.node, "span", None))
        self.consts.append(v)
        return f"K[{len(self.consts) - 1}]"

    @property
    def out_types(self) -> list[TensorType]:
        return [v.type for v in self.node.outputs]


@dataclass
class OpDef:
    name: str
    infer: Callable[[InferCtx], list[TensorType]]
    emit: Callable[[EmitCtx], str]
    doc: str = ""


OPS: dict[str, OpDef] = {}


def op(name: str, *, emit: Callable[[EmitCtx], str]):
    """Register the decorated inference function as op ``name`` with PyTorch lowering ``emit``."""

    def deco(infer: Callable[[InferCtx], Any]):
        if name in OPS:
            raise RuntimeError(f"op {name!r} registered twice")

        def infer_list(c: InferCtx) -> list[TensorType]:
            out = infer(c)
            return list(out) if isinstance(out, (list, tuple)) else [out]

        OPS[name] = OpDef(name, infer_list, emit, (infer.__doc__ or "").strip())
        return infer

    return deco


# backend -> op -> lowering; "torch" is the ops' own emit (OpDef.emit)
LOWERINGS: dict[str, dict[str, Callable[[EmitCtx], str]]] = {}


def register_lowering(backend: str, name: str, emit: Callable[[EmitCtx], str]) -> None:
    """Lower op ``name`` with ``emit`` on ``backend`` (e.g. a fused kernel call on "triton")."""
    table = LOWERINGS.setdefault(backend, {})
    if name in table:
        raise RuntimeError(f"op {name!r} has two lowerings for backend {backend!r}")
    table[name] = emit


def emitter(name: str, backend: str = "torch") -> Callable[[EmitCtx], str]:
    """The lowering of op ``name`` on ``backend``; the op's PyTorch emit when the backend has none."""
    own = LOWERINGS.get(backend, {}).get(name)
    return own if own is not None else get(name).emit


def get(name: str) -> OpDef:
    from . import load_all  # noqa: F401  (registers every op module)

    load_all()
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"no IR op named {name!r}") from None
