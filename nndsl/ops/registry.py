"""The IR op table: for each op, its shape/dtype inference and its PyTorch lowering.

An op is registered with ``@op("name", emit=...)`` decorating its inference function:

    @op("linear", emit=lambda e: f"F.linear({e.args})")
    def _linear(c: InferCtx) -> list[TensorType]: ...

* inference gets an ``InferCtx`` (input types, attrs, helpers) and returns the output types;
  it reports problems with ``c.error(...)``, which the builder locates at the source span.
* ``emit`` gets an ``EmitCtx`` and returns one Python expression computing the op's output
  (a tuple expression for several outputs) in the generated ``forward``. Names in scope there:
  ``torch``, ``F`` (torch.nn.functional), ``rt`` (nndsl.backend.rt), ``self`` (the module),
  and each symbolic dim (``B``, ``T``) as an int.

Later backends (Triton) add ops of their own (fused kernels) through the same table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ..errors import NndslShapeError, NndslTypeError
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
        t = self.types[i]
        if not t.is_float:
            raise self.type_error(f"{self.op} expects a floating-point tensor, got {self.describe(i)}")
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


@dataclass
class EmitCtx:
    node: Any  # the ir.graph.Node
    ins: list[str]  # Python names holding the inputs
    attrs: dict[str, Any]

    @property
    def args(self) -> str:
        """The inputs, comma-separated."""
        return ", ".join(self.ins)

    def dim(self, d) -> str:
        """Python code for a dim (ints print as numbers, symbols as the runtime variables)."""
        return D.dim_code(d)

    def dims(self, ds: Sequence) -> str:
        return "(" + ", ".join(self.dim(d) for d in ds) + ("," if len(ds) == 1 else "") + ")"

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


def get(name: str) -> OpDef:
    from . import load_all  # noqa: F401  (registers every op module)

    load_all()
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"no IR op named {name!r}") from None
