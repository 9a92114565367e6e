"""How a set's named fields meet a model: which field feeds which input, which feed the loss.

Rules (the same for ``nndsl check``, which reads only headers, and for ``fit``):

* a model input takes the field of its name (``x``, ``idx``, an npz key, a csv column);
* a model with a single input whose name no field has takes ``x`` (``wave`` <- npz's ``x``);
* the loss's data fields (``nndsl.objective``: ``y`` of ``loss = cross_entropy``, ``label`` of
  ``cross_entropy(logits, label)``) are read by name;
* an integer field feeds a float input or target as that float dtype; a target of one value per
  example feeds an output of one value per example (``[N]`` -> ``[N, 1]``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ...errors import NndslDataError, Span, did_you_mean
from ...ir.types import DTYPES, TensorType


@dataclass
class FieldDesc:
    """What is known of one field: from a loaded set (``values``) or from a file's header only."""

    dtype: torch.dtype
    shape: tuple  # one example's
    values: Any = None  # the whole field, for value checks (labels in range); None: a header only
    vocab_size: Optional[int] = None  # character text: its vocabulary
    classes: Optional[int] = None  # class labels known to lie in 0..classes-1 (mnist, npz `classes`)


@dataclass
class Plan:
    """The fields a model reads: its inputs (in order) then its objective's data fields."""

    inputs: list  # the model's input Values
    targets: list = field(default_factory=list)  # the objective graph's data-field inputs
    graph: Any = None  # the objective graph (else the model's): who reads each field

    @classmethod
    def of(cls, model_graph, objective_graph=None) -> "Plan":
        if objective_graph is None:
            return cls(list(model_graph.inputs), [], model_graph)
        n = len(model_graph.inputs)
        return cls(list(objective_graph.inputs[:n]), list(objective_graph.inputs[n:]), objective_graph)

    @classmethod
    def of_module(cls, module, loss) -> Optional["Plan"]:
        """The plan of a compiled ``module`` trained on ``loss`` (a config Spec); its objective's fields
        only where it trains through its objective (``objective.training_objective``)."""
        from ...objective import training_objective

        graph = getattr(module, "graph", None)
        if graph is None or not hasattr(graph, "inputs"):
            return None
        objectives = getattr(module, "nndsl_objective_graphs", None) or {}
        used = training_objective(module, loss) is not None
        return cls.of(graph, objectives.get("torch") if used else None)


def input_fields(inputs: list[str], available: list[str], span: Optional[Span], what: str) -> list[str]:
    """The field feeding each model input (see the module's rules), or a located error naming both."""
    out = []
    for name in inputs:
        if name in available:
            out.append(name)
        elif len(inputs) == 1 and "x" in available:
            out.append("x")
        else:
            guess = did_you_mean(name, available)
            raise NndslDataError(f"the model's input '{name}' has no field of its name in {what} (its fields: "
                                 f"{', '.join(available)})", span,
                                 (guess + " " if guess else "") + "name the input like a field, or give the set a "
                                 "field of its name (npz(..., fields=[...]))")
    return out


def target_field(name: str, available: list[str], span: Optional[Span], what: str) -> str:
    if name not in available:
        raise NndslDataError(f"the loss reads the field '{name}', but {what} has fields {', '.join(available)}",
                             span, did_you_mean(name, available))
    return name


def adapt(t: torch.Tensor, want: Optional[TensorType]) -> torch.Tensor:
    """A batch of a field as the type the model or loss takes (an integer field as a float, one value
    per example as ``[N, 1]``); a mismatch beyond that is left for the generated input check."""
    if want is None:
        return t
    if want.is_float and not t.is_floating_point():
        t = t.to(DTYPES[want.dtype])
    if t.dim() != want.rank and t.dim() >= 1 and want.rank >= 1:
        static = [d for d in want.shape[1:] if isinstance(d, int)]
        if len(static) == want.rank - 1 and t[0].numel() == _prod(static):
            t = t.reshape(len(t), *static)
    return t


def _prod(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n
