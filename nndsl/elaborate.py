"""Elaboration: the AST of a .nn file -> the IR graph of one model.

    graph = elaborate(program, model="GPT", hyperparams={"D": 128})

Steps: pick the model; bind its hyperparameters (defaults, then overrides, each converted to
the declared type); make the graph inputs from the tensor parameters (dim names that are not
hyperparameters become the graph's symbolic dims, in order of appearance); run the body
(``elab.elaborator``); check the returned tensors against the declared return type.
``eval_scalar`` evaluates compile-time (scalar and dim) expressions for other stages.
"""
from __future__ import annotations

from typing import Any, Optional

from .elab.elaborator import Elaborator
from .elab.scalar import describe, eval_scalar, to_dim
from .elab.shapes import check_dtype, names_in, resolve
from .errors import clip, NndslConfigError, NndslNameError, NndslSyntaxError, NndslTypeError, Span, did_you_mean
from .frontend import ast
from .ir import dims as D
from .ir.builder import Builder
from .ir.graph import Graph, Value
from .limits import check_int

SCALAR_TYPES = ("int", "float", "bool", "str")

__all__ = ["elaborate", "eval_scalar", "select_model", "bind_hyperparams"]


def elaborate(program: ast.Program, model: Optional[str] = None, hyperparams: Optional[dict] = None,
              names: Optional[dict] = None) -> Graph:
    """Build the IR graph of ``model`` (default: the first train section's model, else the first model).

    ``names``, when given, receives the body's top-level names at its return (the loss reads them)."""
    defn = select_model(program, model)
    hp = bind_hyperparams(defn, hyperparams or {})
    g = Graph(defn.name, file=program.file)
    g.hyperparams = dict(hp)
    b = Builder(g)
    env: dict[str, Any] = dict(hp)
    # inputs: names in their dims that are not hyperparameters become symbolic dims
    for p in defn.params:
        if isinstance(p.type, ast.TensorTypeExpr):
            if p.default is not None:
                raise NndslTypeError(f"the model input '{p.name}' cannot have a default", p.default.span)
            check_dtype(p.type)
            for d in p.type.dims:
                for n in names_in(d):
                    if n not in env:
                        env[n] = D.symbol(n)
                        g.symbols.append(n)
            env[p.name] = g.add_input(p.name, resolve(p.type, env))
    # the body
    el = Elaborator(program, b)
    result = el.run_body(defn.body, env)
    if result is None:
        raise NndslSyntaxError(f"model {defn.name} has no return statement", defn.span)
    values, ret = result
    exprs = ret.values if len(ret.values) == len(values) else ret.values[:1] * len(values)
    for v, ex in zip(values, exprs):
        if not isinstance(v, Value):
            raise NndslTypeError(f"a model returns tensors, but {defn.name} returns {describe(v)}", ex.span)
    # outputs: dim names in the declared type must be hyperparameters or symbolic dims
    el.check_returns(defn, values, ret, env, can_bind=lambda n: False)
    g.outputs = list(values)
    if names is not None:
        names.update(env)
    return g


def select_model(program: ast.Program, model: Optional[str] = None) -> ast.Definition:
    """``model`` by name; None: the model named by the first train section, else the first model."""
    models = program.models()
    if model is None:
        for t in program.trains[:1]:
            if t.model is not None:
                if t.model not in models:
                    raise NndslNameError(f"train names an unknown model '{t.model}'", t.span,
                                         did_you_mean(t.model, models) or _listing(models))
                return models[t.model]
        if not models:
            raise NndslNameError("this file defines no model", None,
                                 "a model is the entry point: model Name(x: f32[B, 10]) -> f32[B, 1] { ... }")
        return next(iter(models.values()))
    if model not in models:
        blocks = program.blocks()
        if model in blocks:
            raise NndslNameError(f"'{model}' is a block, not a model", blocks[model].span, _listing(models))
        raise NndslNameError(f"no model named '{model}'", None, did_you_mean(model, models) or _listing(models))
    return models[model]


def _listing(models: dict) -> str:
    return f"models in this file: {', '.join(models)}" if models else "this file defines no model"


def bind_hyperparams(defn: ast.Definition, overrides: dict) -> dict[str, Any]:
    """Each scalar parameter of the model: its override (converted to the declared type) or its default."""
    scalars = [p for p in defn.params if not isinstance(p.type, ast.TensorTypeExpr)]
    names = [p.name for p in scalars]
    span = _param_list_span(defn)
    for k in overrides:
        if k not in names:
            inputs = [p.name for p in defn.params if isinstance(p.type, ast.TensorTypeExpr)]
            why = f"'{k}' is an input of {defn.name}, not a hyperparameter" if k in inputs else \
                f"{defn.name} has no hyperparameter '{k}'"
            raise NndslConfigError(why, span, did_you_mean(k, names)
                                   or f"its hyperparameters are: {', '.join(names) or 'none'}")
    out: dict[str, Any] = {}
    for p in scalars:
        kind = p.type.name
        if kind not in SCALAR_TYPES:
            raise NndslTypeError(f"unknown type '{kind}' for '{p.name}'", p.type.span,
                                 did_you_mean(kind, SCALAR_TYPES) or "scalar types: int, float, bool, str")
        if p.name in overrides:
            out[p.name] = check_int(convert_override(p.name, kind, overrides[p.name], p.span), p.span,
                                    f"the value of '{p.name}'")
        elif p.default is not None:
            v = eval_scalar(p.default, out, dim=kind == "int")
            if kind == "int":
                v = to_dim(v, p.default.span, f"an int for '{p.name}'")
            out[p.name] = _check_default(p, kind, v)
        else:
            raise NndslConfigError(f"hyperparameter '{p.name}' has no default and was not set", span,
                                   f"set it: --set {p.name}=... or nndsl.compile(path, {p.name}=...)")
    return out


def _check_default(p: ast.Param, kind: str, v: Any) -> Any:
    ok = {"int": isinstance(v, int) and not isinstance(v, bool),
          "float": isinstance(v, (int, float)) and not isinstance(v, bool),
          "bool": isinstance(v, bool), "str": isinstance(v, str)}[kind]
    if not ok:
        raise NndslTypeError(f"'{p.name}' is declared {kind}, but its default is {describe(v)}", p.default.span)
    return float(v) if kind == "float" else v


def convert_override(name: str, kind: str, v: Any, span: Optional[Span] = None) -> Any:
    """A hyperparameter override (a Python value, or a string from the CLI) as the declared type."""
    def bad() -> NndslConfigError:
        return NndslConfigError(f"hyperparameter '{name}' is {'an' if kind == 'int' else 'a'} {kind}, "
                                f"got {clip(repr(v), 80)}", span)

    if isinstance(v, str) and kind != "str":
        text = v.strip()
        try:
            if kind == "int":
                return int(text)
            if kind == "float":
                return float(text)
        except ValueError:
            raise bad() from None
        if kind == "bool" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise bad()
    if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
        return v
    if kind == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if kind == "bool" and isinstance(v, bool):
        return v
    if kind == "str" and isinstance(v, str):
        return v
    raise bad()


def _param_list_span(defn: ast.Definition) -> Optional[Span]:
    if not defn.params:
        return None
    a, z = defn.params[0].span, defn.params[-1].span
    if a is None or z is None:
        return a
    return Span(a.file, a.line, a.col, z.end_line or z.line, z.end_col or z.col, a.source)
