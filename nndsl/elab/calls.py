"""Call arguments: binding them to a signature and converting them to the declared kinds.

One ``Signature`` describes a builtin (from its registered kinds) or a block (from its typed
parameters) so both are checked the same way: too many positionals, an unknown keyword (with
'did you mean'), a value given twice, a missing argument. Binding keeps source order, so the
elaborator evaluates arguments (and emits their nodes) in the order they are written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import sympy

from ..errors import NndslTypeError, Span, did_you_mean
from ..frontend import ast
from ..ir.graph import Value
from .scalar import describe, to_dim

# kinds whose expressions are evaluated in a dim context (exact '/')
DIM_KINDS = ("int", "dim", "dims", "ints")


@dataclass
class Signature:
    callee: str
    names: list[str]
    kinds: list[str]
    required: list[bool]
    variadic: Optional[str] = None
    optional: list[bool] = field(default_factory=list)  # tensor? arguments (None when omitted)

    def kind(self, name: str) -> str:
        return self.kinds[self.names.index(name)]


def bind(sig: Signature, args: list, kwargs: list[ast.Keyword], span: Optional[Span],
         also: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Pair each argument expression with a parameter name, in source order.

    A variadic parameter gets a list of expressions (the extra positionals). ``also``: other
    keywords the call accepts (``name``), offered by 'did you mean'.
    """
    out: list[tuple[str, Any]] = []
    given: set[str] = set()
    slots = list(sig.names)
    extra: list = []
    for i, a in enumerate(args):
        if sig.variadic is not None and i >= sig.names.index(sig.variadic):
            extra.append(a)
            continue
        if i >= len(slots):
            n = len(slots)
            raise NndslTypeError(
                f"{sig.callee} takes {n} positional argument{'s' if n != 1 else ''} but {len(args)} were given",
                getattr(a, "span", span), f"its arguments are: {', '.join(sig.names) or 'none'}")
        out.append((slots[i], a))
        given.add(slots[i])
    if sig.variadic is not None and extra:
        out.append((sig.variadic, extra))
        given.add(sig.variadic)
    for kw in kwargs:
        if kw.name not in sig.names:
            names = sig.names + list(also)
            raise NndslTypeError(f"{sig.callee} has no argument '{kw.name}'", kw.span,
                                 did_you_mean(kw.name, names) or f"its arguments are: {', '.join(names) or 'none'}")
        if kw.name in given:
            raise NndslTypeError(f"{sig.callee} got two values for '{kw.name}'", kw.span)
        out.append((kw.name, kw.value))
        given.add(kw.name)
    for name, req in zip(sig.names, sig.required):
        if req and name not in given and name != sig.variadic:
            raise NndslTypeError(f"{sig.callee} is missing the argument '{name}' ({sig.kind(name)})", span)
    return out


def convert(kind: str, v: Any, where: str, span: Optional[Span], optional: bool = False) -> Any:
    """Check ``v`` against an argument kind and convert it; ``where`` names the argument in messages."""
    def bad(want: str, hint: Optional[str] = None) -> NndslTypeError:
        return NndslTypeError(f"{where} expects {want}, got {describe(v)}", span, hint)

    if optional and v is None:
        return None
    if kind == "any":
        return v
    if kind == "tensor":
        if not isinstance(v, Value):
            raise bad("a tensor")
        return v
    if kind == "tensors":
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, Value) for x in v):
            raise bad("a list of tensors")
        return list(v)
    if kind == "int":
        if isinstance(v, sympy.Expr):
            d = to_dim(v, span)
            if isinstance(d, int):
                return d
            raise bad("a fixed int", "sizes of parameters cannot depend on a symbolic dim such as a batch size")
        if not isinstance(v, int) or isinstance(v, bool):
            raise bad("an int")
        return v
    if kind == "float":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise bad("a float")
        return float(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise bad("a bool (true or false)")
        return v
    if kind == "str":
        if not isinstance(v, str):
            raise bad("a string")
        return v
    if kind == "dim":
        if isinstance(v, Value) or isinstance(v, (bool, float, str, list, tuple)) or v is None:
            raise bad("a size (an int or a dim)")
        return to_dim(v, span)
    if kind == "dims":
        if not isinstance(v, (list, tuple)):
            raise bad("a list of sizes", "write the sizes as a list: [B, T, D]")
        return [convert("dim", x, where, span) for x in v]
    if kind == "ints":
        if isinstance(v, (list, tuple)):
            return tuple(convert("int", x, where, span) for x in v)
        return convert("int", v, where, span)
    raise NndslTypeError(f"{where}: unknown argument kind '{kind}'", span)
