"""Builtin signatures and their registry (see the package docstring)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

# Argument kinds the elaborator knows how to check and convert:
#   tensor   an IR Value                      tensors  a list of Values
#   int      a Python int (a static dim too)  float    a Python float (ints accepted)
#   bool     a Python bool                    str      a Python str
#   dim      an int or a symbolic dim         dims     a list of dims (e.g. a reshape target)
#   ints     an int or a list of ints -> tuple (kernel sizes, strides)
#   any      whatever the expression evaluated to
KINDS = ("tensor", "tensors", "int", "float", "bool", "str", "dim", "dims", "ints", "any")

_NO_DEFAULT = object()


@dataclass
class Arg:
    name: str
    kind: str
    default: Any = _NO_DEFAULT
    optional: bool = False  # a tensor argument that may be omitted (None)

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT and not self.optional


@dataclass
class Builtin:
    name: str
    args: list[Arg]
    fn: Callable[..., Any]
    stateful: bool = False
    variadic: Optional[str] = None  # name of an arg that collects extra positionals (concat(a, b, c))
    doc: str = ""


BUILTINS: dict[str, Builtin] = {}


def _parse_sig(sig: str) -> tuple[list[Arg], Optional[str]]:
    """'x: tensor, out: int, bias: bool = true, w: tensor?' -> [Arg, ...]; '*xs: tensors' is variadic."""
    args: list[Arg] = []
    variadic = None
    for part in [p.strip() for p in sig.split(",") if p.strip()]:
        name, _, rest = part.partition(":")
        name = name.strip()
        kind, _, default = rest.partition("=")
        kind = kind.strip()
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        if kind not in KINDS:
            raise ValueError(f"bad kind {kind!r} in builtin signature {sig!r}")
        if name.startswith("*"):
            name = name[1:]
            variadic = name
        if default.strip():
            args.append(Arg(name, kind, _literal(default.strip()), optional))
        else:
            args.append(Arg(name, kind, optional=optional))
    return args, variadic


def _literal(text: str) -> Any:
    low = text.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low == "none":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_literal(t.strip()) for t in inner.split(";")] if inner else []
    return text.strip("'\"")


def builtin(name: str, sig: str, *, stateful: bool = False):
    """Register a builtin. Defaults in ``sig`` use .nn literals (true/false/none/numbers/'str')."""

    def deco(fn):
        if name in BUILTINS:
            raise RuntimeError(f"builtin {name!r} registered twice")
        args, variadic = _parse_sig(sig)
        BUILTINS[name] = Builtin(name, args, fn, stateful, variadic, (fn.__doc__ or "").strip())
        return fn

    return deco


def get(name: str) -> Optional[Builtin]:
    from . import load_all

    load_all()
    return BUILTINS.get(name)
