"""The training objective as IR: the model's graph, the data fields the loss reads, and the loss.

The train section's ``loss = ...`` is an expression of the language, elaborated with the model's
own elaborator into a copy of the model's graph, so the compiler passes it through the same
pipelines (the Triton backend fuses a cross-entropy with the projection before it:
``passes.fuse_loss``) and generates ``module.nndsl_objective(*inputs, *fields)`` beside
``forward``; ``runtime.train.fit`` trains through it.

Names in a loss expression, first match wins:

* the model's outputs: the names its ``return`` statement returns (``return logits, recon``),
  and ``out`` when it has a single output;
* the model's inputs and every tensor its body names at top level (``h``: an activation penalty);
* the model's hyperparameters;
* any other name is a data field (``y``, an npz key, a csv column), allowed as the target of a
  loss function (``loss_terms``), which decides its type.

``loss = cross_entropy`` (a bare loss name, or a call with keyword arguments only) is the short
form of ``cross_entropy(out, y)``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from .elab.calls import Signature, bind
from .elab.elaborator import Elaborator
from .elab.naming import callee_name
from .elab.scalar import unparse
from .errors import NndslConfigError, NndslTypeError, Span, did_you_mean
from .frontend import ast
from .ir.builder import Builder
from .ir.graph import Graph, Value
from .ir.verify import verify
from .loss_terms import LOSS_FUNCTIONS, Field


@dataclass(frozen=True)
class LossSpec:
    """Which loss an objective computes: a short form's name and arguments, or ("expression", text)."""

    name: str
    kwargs: tuple = ()  # sorted (argument, value) pairs, every argument bound

    @classmethod
    def of(cls, name: str, kwargs: Mapping[str, Any]) -> "LossSpec":
        return cls(name, tuple(sorted(kwargs.items())))

    def __str__(self) -> str:
        if self.name == "expression":
            return dict(self.kwargs)["text"]
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.kwargs)})"


@dataclass
class LossDecl:
    """The train section's loss: its expression (the short form spelled out), spec and location."""

    expr: ast.Expr
    spec: LossSpec
    span: Optional[Span]


@dataclass
class Objective:
    """An objective graph (inputs: the model's, then ``fields``; output: the scalar loss) and its loss."""

    graph: Graph
    spec: LossSpec
    fields: list[str]  # the data fields it reads besides the model's inputs, in input order


# ------------------------------------------------------------------ the loss entry
def is_short_form(e: ast.Expr) -> bool:
    """``cross_entropy`` or ``cross_entropy(label_smoothing=0.1)``: a name, or a call without positionals."""
    return isinstance(e, ast.Name) or (isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and not e.args)


def short_form(name: str, kwargs: Mapping[str, Any], span: Optional[Span]) -> ast.Expr:
    """The expression a short form stands for: ``name(out, y, **kwargs)``."""
    return ast.Call(ast.Name(name, span), [ast.Name("out", span), ast.Name("y", span)],
                    [ast.Keyword(k, _literal(v, span), span) for k, v in kwargs.items()], span)


def _literal(v: Any, span: Optional[Span]) -> ast.Expr:
    return ast.Bool(v, span) if isinstance(v, bool) else ast.Num(v, span)


def train_loss(section, hyperparams: Mapping[str, Any]) -> Optional[LossDecl]:
    """The loss a train section declares (cross_entropy when it has none), or None when its short
    form does not bind (the run's configuration reports that error itself)."""
    from .runtime.config import LOSSES, Evaluator, TrainConfig, bind as bind_spec

    entry = next((e for e in (section.entries if section is not None else []) if e.key == "loss"), None)
    if entry is None:
        default = TrainConfig().loss
        return LossDecl(short_form(default.name, default.kwargs, None), LossSpec.of(default.name, default.kwargs),
                        None)
    if not is_short_form(entry.value):
        return LossDecl(entry.value, LossSpec("expression", (("text", unparse(entry.value)),)), entry.span)
    try:
        spec = bind_spec(Evaluator(dict(hyperparams)).eval(entry.value), LOSSES, "loss", entry.span, dict(hyperparams))
    except NndslConfigError:
        return None
    return LossDecl(short_form(spec.name, spec.kwargs, entry.value.span), LossSpec.of(spec.name, spec.kwargs),
                    entry.span)


# ------------------------------------------------------------------ elaborating it
class LossElaborator(Elaborator):
    """The model's elaborator, plus the loss functions and data fields (``loss_terms``)."""

    def __init__(self, program: ast.Program, builder: Builder):
        super().__init__(program, builder)
        self.fields: dict[str, Value] = {}

    def _expr(self, e: Any, env: dict, dim: bool = False) -> Any:
        if isinstance(e, ast.Name) and e.id not in env and e.id not in ("None", "none"):
            raise NndslTypeError(f"'{e.id}' is no name of the model, and a data field can only be the target "
                                 "of a loss function (cross_entropy(logits, y), mse(pred, x), ...)", e.span,
                                 did_you_mean(e.id, [k for k, v in env.items() if isinstance(v, Value)]))
        return super()._expr(e, env, dim)

    def call(self, e: ast.Call, env: dict, dim: bool = False) -> Any:
        name = callee_name(e)
        if name in self.blocks or self._is_stateful(name or ""):
            raise NndslConfigError(f"the loss may not create parameters ({name} declares some)", e.span,
                                   "layers belong in the model; the loss reads its outputs")
        if name not in LOSS_FUNCTIONS or isinstance(e.func, ast.Attribute):
            return super().call(e, env, dim)
        fn, optional_target, defaults = LOSS_FUNCTIONS[name]
        sig = Signature(name, ["pred", "target", *defaults], ["tensor", "any", *["float"] * len(defaults)],
                        [True, not optional_target, *[False] * len(defaults)])
        given = dict(bind(sig, list(e.args), list(e.kwargs), e.span, ()))
        pred = self.expr(given["pred"], env)
        if not isinstance(pred, Value):
            raise NndslTypeError(f"{name} takes the model's prediction (a tensor) first, got {unparse(given['pred'])}",
                                 given["pred"].span)
        t = given.get("target")
        if isinstance(t, ast.Name) and t.id not in env:
            t = Field(t.id, t.span)
        elif t is not None:
            t = self.expr(t, env)
        kwargs = {}
        for k, default in defaults.items():
            v = self.expr(given[k], env) if k in given else default
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise NndslTypeError(f"{name}()'s argument '{k}' must be a number, got {v!r}", given[k].span)
            kwargs[k] = v
        with self.b.at(e.span):
            return fn(self.b, pred, t, self.fields, **kwargs)


def loss_names(program: ast.Program, model: Graph, env: Mapping[str, Any]) -> dict[str, Any]:
    """What a loss expression may name: the model's top-level names, its outputs, ``out``."""
    names = {k: v for k, v in env.items() if not isinstance(v, (list, tuple, dict))}
    defn = program.models().get(model.name)
    ret = defn.body[-1] if defn is not None and defn.body else None
    if isinstance(ret, ast.Return) and len(ret.values) == len(model.outputs):
        for e, v in zip(ret.values, model.outputs):
            if isinstance(e, ast.Name):
                names[e.id] = v
    if len(model.outputs) == 1:
        names["out"] = model.outputs[0]
    return names


def objective_graph(program: ast.Program, model: Graph, env: Mapping[str, Any], loss: LossDecl) -> Objective:
    """A copy of ``model`` with ``loss`` built on it: the data fields it reads are added as inputs
    (after the model's) and the loss is the only output."""
    g, names = copy.deepcopy((model, loss_names(program, model, env)))
    g.name = f"{model.name}.objective"
    g.fusion_log = []
    params = list(g.params)
    el = LossElaborator(program, Builder(g))
    with el.b.at(loss.span):
        value = el.expr(loss.expr, dict(names))
    where = loss.expr.span or loss.span
    if not isinstance(value, Value) or value.type.rank != 0 or not value.type.is_float:
        got = value.type if isinstance(value, Value) else repr(value)
        raise NndslConfigError(f"the loss must be a float scalar, got {got}", where,
                               "reduce it, e.g. mean(...), or use a loss function: mse(out, y)")
    if list(g.params) != params:
        new = next(p for p in g.params if p not in params)
        raise NndslConfigError(f"the loss may not create parameters (it declares '{new}')", where,
                               "layers belong in the model; the loss reads its outputs")
    if len(model.outputs) > 1 and not any(_reads(value, o) for o in g.outputs):
        raise NndslConfigError("the loss reads none of the model's outputs", where)
    g.outputs = [value]
    verify(g)
    return Objective(g, loss.spec, list(el.fields))


def _reads(loss: Value, v: Value) -> bool:
    seen, todo = set(), [loss]
    while todo:
        x = todo.pop()
        if x is v:
            return True
        if id(x) in seen or x.producer is None:
            continue
        seen.add(id(x))
        todo.extend(x.producer.inputs)
    return False


def build_objective(program: ast.Program, model: Graph, env: Mapping[str, Any],
                    loss: Optional[LossDecl]) -> Optional[Objective]:
    """The objective of ``model`` under ``loss`` (None: no loss to build)."""
    return objective_graph(program, model, env, loss) if loss is not None else None


# ------------------------------------------------------------------ what fit trains through
def training_objective(model, loss) -> Optional[Callable]:
    """``model.nndsl_objective`` when it computes the run's ``loss`` (a ``runtime.config.Spec``), else
    None (``fit`` then computes ``loss_fn(model(x), y)``, which only a short-form loss has)."""
    fn = getattr(model, "nndsl_objective", None)
    spec = getattr(model, "nndsl_loss", None)
    if fn is None or spec is None:
        return None
    return fn if LossSpec.of(loss.name, loss.kwargs) == spec else None


def objective_fields(model) -> list[str]:
    """The data fields ``model.nndsl_objective`` takes after the model's inputs."""
    graphs = getattr(model, "nndsl_objective_graphs", None) or {}
    g = graphs.get("torch")
    return [v.name for v in g.inputs[len(model.graph.inputs):]] if g is not None else []
