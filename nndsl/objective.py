"""The training objective as IR: the model's graph, its targets as inputs, and the loss, one scalar out.

The compiler passes the objective graph through the same pass pipelines as the model (so the
Triton backend fuses the loss with the projection before it: ``passes.fuse_loss``) and generates
``module.nndsl_objective(*inputs, y)`` beside ``forward``; ``runtime.train.fit`` trains through it.

The shape of the API is what a loss written in the language (issue 9) plugs into:

* a ``LossTerm`` builds the loss into the graph with the elaborator's own ``Builder``, from the
  model's output values and the data's fields (name -> input value). Today's terms come from the
  train section's ``loss = ...`` (``term_for``); a loss *expression* in ``.nn`` will be elaborated
  by a term that walks its AST with the same builder, so its errors are located in the source;
* ``objective_graph(model, fields, term)`` makes the graph from any term.

``Objective.spec`` records which loss the graph computes, so ``fit`` uses it only for that loss
(``training_objective``): a run configured with another loss trains through ``forward`` as before.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from .errors import NndslConfigError, Span
from .ir.builder import Builder
from .ir.graph import Graph, Value
from .ir.types import TensorType
from .ir.verify import verify

# (builder positioned in the objective graph, the model's outputs, data field name -> value) -> f32[] loss
LossTerm = Callable[[Builder, Sequence[Value], Mapping[str, Value]], Value]


@dataclass(frozen=True)
class LossSpec:
    """Which loss an objective computes, as the train section names it (``cross_entropy(label_smoothing=0.1)``)."""

    name: str
    kwargs: tuple = ()  # sorted (argument, value) pairs, every argument bound

    @classmethod
    def of(cls, name: str, kwargs: Mapping[str, Any]) -> "LossSpec":
        return cls(name, tuple(sorted(kwargs.items())))

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.kwargs)})"


@dataclass
class Objective:
    """An objective graph (inputs: the model's, then the targets; output: the scalar loss) and its loss."""

    graph: Graph
    spec: LossSpec


def objective_graph(model: Graph, fields: Sequence[tuple[str, TensorType]], term: LossTerm,
                    span: Optional[Span] = None) -> Graph:
    """A copy of ``model`` with the data ``fields`` added as inputs (after the model's) and the loss
    ``term`` built on its outputs; the loss is the only output. ``span`` locates the loss's nodes
    (the train section's ``loss = ...``)."""
    g = copy.deepcopy(model)
    g.name = f"{model.name}.objective"
    g.fusion_log = []
    values = {name: g.add_input(name, t) for name, t in fields}
    b = Builder(g)
    with b.at(span):
        loss = term(b, list(g.outputs), values)
    if loss.type.rank != 0 or not loss.type.is_float:
        raise NndslConfigError(f"the loss must be a float scalar, got {loss.type}", span)
    g.outputs = [loss]
    verify(g)
    return g


# ------------------------------------------------------------------ the train section's named losses
def _cross_entropy(label_smoothing: float = 0.0) -> LossTerm:
    def term(b: Builder, outputs: Sequence[Value], fields: Mapping[str, Value]) -> Value:
        return b.op("cross_entropy_loss", [outputs[0], fields["y"]], {"label_smoothing": float(label_smoothing)})

    return term


def term_for(model: Graph, spec: LossSpec, output_is_probs: bool
             ) -> tuple[Optional[tuple[list[tuple[str, TensorType]], LossTerm]], str]:
    """The target fields and the term for the train section's loss on ``model``, or (None, why not):
    the loss as ``runtime.losses`` computes it must be expressible by the loss ops exactly."""
    if spec.name != "cross_entropy":
        return None, f"loss {spec.name} has no IR form yet"
    if output_is_probs:
        return None, "the model outputs probabilities (the loss reads log p)"
    if len(model.outputs) != 1:
        return None, f"the model has {len(model.outputs)} outputs"
    out = model.outputs[0].type
    if not out.is_float or out.rank < 1:
        return None, f"cross_entropy takes logits [..., classes], the model gives {out}"
    return ([("y", TensorType(out.shape[:-1], "i64"))], _cross_entropy(**dict(spec.kwargs))), ""


def build_objective(model: Graph, spec: Optional[LossSpec], output_is_probs: bool,
                    span: Optional[Span] = None) -> Optional[Objective]:
    """The objective of ``model`` under the loss ``spec``, or None when that loss has no IR form."""
    if spec is None:
        return None
    found, _ = term_for(model, spec, output_is_probs)
    if found is None:
        return None
    fields, term = found
    return Objective(objective_graph(model, fields, term, span), spec)


def train_loss(section, hyperparams: Mapping[str, Any]) -> tuple[Optional[LossSpec], Optional[Span]]:
    """The loss a train section names (the default, cross_entropy, when it has none) and where.

    None when the entry does not evaluate: the run's configuration reports that error itself.
    """
    from .runtime.config import LOSSES, Evaluator, TrainConfig, bind

    entry = next((e for e in (section.entries if section is not None else []) if e.key == "loss"), None)
    if entry is None:
        default = TrainConfig().loss
        return LossSpec.of(default.name, default.kwargs), None
    try:
        spec = bind(Evaluator(dict(hyperparams)).eval(entry.value), LOSSES, "loss", entry.span, dict(hyperparams))
    except NndslConfigError:
        return None, entry.span
    return LossSpec.of(spec.name, spec.kwargs), entry.span


# ------------------------------------------------------------------ what fit trains through
def training_objective(model, loss, output_is_probs: bool) -> Optional[Callable]:
    """``model.nndsl_objective`` when it computes the run's ``loss`` (a ``runtime.config.Spec``)
    on this model's outputs, else None (``fit`` then computes ``loss_fn(model(x), y)``)."""
    fn = getattr(model, "nndsl_objective", None)
    spec = getattr(model, "nndsl_loss", None)
    if fn is None or spec is None or output_is_probs:
        return None
    return fn if LossSpec.of(loss.name, loss.kwargs) == spec else None
