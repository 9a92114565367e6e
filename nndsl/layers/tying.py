"""Weight tying: a layer that reads a parameter another layer declared (``weight=wte.weight``, or
the path as a string, ``weight="wte.weight"``).

The parameter is named by its path relative to the calling scope (the state_dict key without the
enclosing block's prefix), looked up from the innermost enclosing scope outwards, and must be
declared earlier in the program. The layer reads the very same IR value, so the parameter exists
once (one state_dict entry, counted once) and its gradient sums both uses.
"""
from __future__ import annotations

from typing import Any

from ..errors import NndslNameError, NndslShapeError, NndslTypeError, did_you_mean
from ..ir import dims as D
from ..ir.builder import Builder
from ..ir.graph import Value


def find_param(b: Builder, fn: str, path: str, own_scope: bool = False) -> Value:
    """The value reading parameter ``path`` (relative to an enclosing scope of the current instance;
    ``own_scope``: the current scope first — an expression in a block body, not a layer's call)."""
    parts = b.scope.split(".") if b.scope else []
    if not own_scope:
        parts = parts[:-1]  # the enclosing scopes, not the layer's own
    for i in range(len(parts), -1, -1):
        full = ".".join(parts[:i] + [path])
        p = b.graph.params.get(full)
        if p is None:
            continue
        if p.buffer:
            raise b.error(f"{fn}: '{full}' is a buffer, not a parameter, so it cannot be shared as a weight",
                          cls=NndslTypeError)
        for n in b.graph.nodes:
            if n.op == "param" and n.attrs.get("name") == full:
                return n.outputs[0]
    where = ".".join(parts) or "the model"
    known = list(b.graph.params)
    raise b.error(f"{fn}: no parameter '{path}' is declared before this call (looked in {where} and the scopes "
                  f"around it)", did_you_mean(path, known) or (
                      "name the layer that owns it, e.g. embedding(idx, V, D, name=\"wte\"), and call it first"),
                  NndslNameError)


def shared_weight(b: Builder, fn: str, weight: Any, shape: tuple) -> Value:
    """``weight=`` of a layer: a parameter path (str) or a tensor, of exactly ``shape``."""
    if isinstance(weight, str):
        w = find_param(b, fn, weight)
        what = f"'{weight}'"
    elif isinstance(weight, Value):
        w = weight
        what = f"{weight.name}" if weight.name else "the weight"
    else:
        raise b.error(f"{fn}'s argument 'weight' must name a parameter (\"wte.weight\") or be a tensor, "
                      f"got {weight!r}", cls=NndslTypeError)
    if w.type.rank != len(shape) or not all(D.equal(a, c) for a, c in zip(w.type.shape, shape)):
        raise b.error(f"{fn}: weight {what} is {w.type}, but this layer needs {D.shape_str(shape)}", cls=NndslShapeError)
    return w
