"""The last check before generated source is executed: it must be of the shape ``emit`` writes.

Defense in depth: ``emit`` never puts input text into the source, and this check proves it for
each module. It parses the source with ``ast`` and accepts only

* one ``def forward(self, v0, ...)`` (no defaults, decorators, annotations) whose body holds
  assignments, ``del``, a ``return`` and bare calls;
* expressions made of calls, attributes, subscripts, slices, tuples, lists, arithmetic and
  ``a if self.training else b``;
* names that are generated (``v12``, ``p3``, ``d0``) or the module's globals (``SCOPE_NAMES``);
* attribute names that exist on torch, torch.Tensor, F, rt, math or nndsl.kernels and do not
  start with ``_``; keyword names that do not start with ``_``;
* constants of type int, float (finite), bool, None, ``...``, and strings of
  ``registry.ALLOWED_STRINGS``.

Anything else raises ``NndslLoweringError``.
"""
from __future__ import annotations

import ast
import contextvars
import functools
import math
import re

import torch
import torch.nn.functional as F

from ..errors import NndslLoweringError
from ..ops import registry
from . import rt

# the globals of a generated module, and the builtins it may call
SCOPE_NAMES = frozenset({"self", "torch", "F", "rt", "K", "kern", "float", "int", "min", "max", "abs"})
GENERATED = re.compile(r"[vpd][0-9]+\Z")

_STATEMENTS = (ast.Assign, ast.Delete, ast.Return, ast.Expr)
_EXPRESSIONS = (ast.Call, ast.Attribute, ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.BinOp, ast.UnaryOp,
                ast.IfExp, ast.Name, ast.Constant, ast.keyword, ast.Load, ast.Store, ast.Del)
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.MatMult, ast.USub, ast.UAdd)


@functools.lru_cache(maxsize=1)
def _torch_attributes() -> frozenset:
    names = {n for s in (torch, torch.Tensor, F, rt, math) for n in dir(s) if not n.startswith("_")}
    return frozenset(names | {"training"})


@functools.lru_cache(maxsize=1)
def _kernel_attributes() -> frozenset:
    """Public names of nndsl.kernels (imported only when a forward names something else)."""
    try:
        from .. import kernels
    except Exception:  # pragma: no cover - no triton: kernel lowerings cannot be used anyway
        return frozenset()
    return frozenset(n for n in dir(kernels) if not n.startswith("_"))


def _known_attribute(name: str) -> bool:
    return not name.startswith("_") and (name in _torch_attributes() or name in _kernel_attributes())


def _fail(what: str, node: ast.AST) -> NndslLoweringError:
    line = getattr(node, "lineno", "?")
    return NndslLoweringError(f"generated code rejected by the safety check: {what} (line {line} of forward)")


def check(source: str, *, name: str = "forward", fixed: tuple = ("self",), names: frozenset = frozenset(),
          attrs: frozenset = frozenset()) -> None:
    """Raise NndslLoweringError unless ``source`` is a forward of the allowed shape.

    Other generated functions (``backend.decode``'s ``step``) pass their ``name``, their ``fixed``
    leading parameters, the extra global ``names`` they read and the extra ``attrs`` those have."""
    token = _extra.set((frozenset(names) | frozenset(fixed), frozenset(attrs)))
    try:
        _check(source, name, tuple(fixed))
    finally:
        _extra.reset(token)


_extra: contextvars.ContextVar = contextvars.ContextVar("nndsl_safety_extra", default=(frozenset(), frozenset()))


def _check(source: str, name: str, fixed: tuple) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise NndslLoweringError(f"generated code does not parse: {e.msg} (line {e.lineno} of forward)") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
        raise _fail("the module must hold exactly one function", tree)
    fn = tree.body[0]
    a = fn.args
    if (fn.name != name or fn.decorator_list or fn.returns or a.vararg or a.kwarg or a.kwonlyargs
            or a.posonlyargs or a.defaults or getattr(fn, "type_params", None)):
        raise _fail(f"the function must be a plain 'def {name}({', '.join(fixed)}, ...)'", fn)
    params = [p.arg for p in a.args]
    k = len(fixed)
    if tuple(params[:k]) != fixed or not all(GENERATED.match(p) for p in params[k:]) \
            or any(p.annotation for p in a.args):
        raise _fail(f"bad parameter list {params}", fn)
    for stmt in fn.body:
        if not isinstance(stmt, _STATEMENTS):
            raise _fail(f"statement {type(stmt).__name__} is not allowed", stmt)
        for node in ast.walk(stmt):
            if node is not stmt:
                _check_node(node)


def _check_node(node: ast.AST) -> None:
    if isinstance(node, _OPERATORS):
        return
    if isinstance(node, (ast.operator, ast.unaryop)):
        raise _fail(f"operator {type(node).__name__} is not allowed", node)
    if not isinstance(node, _EXPRESSIONS):
        raise _fail(f"{type(node).__name__} is not allowed", node)
    extra_names, extra_attrs = _extra.get()
    if isinstance(node, ast.Name) and not (node.id in SCOPE_NAMES or node.id in extra_names
                                           or GENERATED.match(node.id)):
        raise _fail(f"name {node.id!r} is not generated", node)
    if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)) and not GENERATED.match(node.id):
        raise _fail(f"assignment to {node.id!r}", node)
    if isinstance(node, ast.Attribute) and not (_known_attribute(node.attr) or node.attr in extra_attrs):
        raise _fail(f"attribute {node.attr!r} is not allowed", node)
    if isinstance(node, ast.keyword) and (node.arg is None or node.arg.startswith("_")):
        raise _fail("keyword argument not allowed", node)
    if isinstance(node, ast.Constant):
        _check_constant(node)
    if isinstance(node, ast.IfExp) and not (isinstance(node.test, ast.Attribute) and node.test.attr == "training"
                                            and isinstance(node.test.value, ast.Name) and node.test.value.id == "self"):
        raise _fail("a conditional may only test self.training", node)


def _check_constant(node: ast.Constant) -> None:
    v = node.value
    if v is None or v is Ellipsis or isinstance(v, (bool, int)):
        return
    if isinstance(v, float) and math.isfinite(v):
        return
    if isinstance(v, str) and v in registry.ALLOWED_STRINGS:
        return
    raise _fail(f"constant of type {type(v).__name__} not allowed", node)
