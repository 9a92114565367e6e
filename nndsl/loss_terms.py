"""The loss functions a train section's ``loss = ...`` may call, each built from IR ops.

=========================================  ==========================================================
call                                       computes (a mean over every element, f32[])
=========================================  ==========================================================
``cross_entropy(logits, labels,``          ``cross_entropy_loss``: integer labels [...] under logits
``label_smoothing=0)``                     [..., classes] (a softmax output: the logits before it)
``binary_cross_entropy(logits, targets)``  ``relu(z) - z t + log(1 + exp(-|z|))``: 0/1 targets
                                           (a sigmoid output: the logits before it)
``mse(pred, target=0)``                    ``(pred - target) ** 2``
``l1(pred, target=0)``                     ``|pred - target|``
=========================================  ==========================================================

A target may be a data field the model does not take as an input (``y``, an npz key, a csv
column): it becomes an input of the objective graph whose type the loss decides (integer labels
for cross_entropy, the prediction's type for the others), and ``fit`` feeds the batch's field
into it. Each function checks that its arguments fit the output kind (logits vs probabilities,
integer vs float targets) and says what fits instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from . import layers
from .errors import NndslTypeError, Span
from .ir.builder import Builder
from .ir.graph import Value
from .ir.types import TensorType


@dataclass
class Field:
    """A name the loss reads that is no name of the model: a field of the data, typed by its use."""

    name: str
    span: Optional[Span]


# (the builder, the prediction, the target (a Value, a Field or None), keyword args) -> f32[] loss
LossFn = Callable[..., Value]


def _op(b: Builder, name: str, *args: Any) -> Value:
    """A stdlib call (``mean``, ``abs``...) built as the elaborator builds it."""
    return layers.get(name).fn(b, *args)


def _producer(v: Value) -> str:
    return v.producer.op if v.producer is not None else ""


def _logits_of(b: Builder, fn: str, v: Value, kind: str, wrong: str, instead: str) -> Value:
    """``v`` as logits: the input of the ``kind`` (softmax/sigmoid) that made ``v``, else ``v``;
    a ``wrong`` output kind is an error naming the loss that fits it."""
    if _producer(v) == wrong:
        raise b.error(f"{fn} does not fit a {wrong} output ({v.type}): {wrong} gives "
                      f"{'independent probabilities' if wrong == 'sigmoid' else 'a distribution over classes'}",
                      f"use {instead} for a {wrong} output", NndslTypeError)
    if _producer(v) == kind:
        node = v.producer
        dim = node.attrs.get("dim", -1)
        if kind == "sigmoid" or dim in (-1, v.type.rank - 1):
            return node.inputs[0]
    if not v.type.is_float:
        raise b.error(f"{fn} takes floating-point predictions, got {v.type}", None, NndslTypeError)
    return v


def target(b: Builder, fn: str, t: Any, want: TensorType, fields: dict) -> Value:
    """The target ``t`` as a value of type ``want``: a data field becomes an objective input."""
    if isinstance(t, Field):
        have = fields.get(t.name)
        if have is None:
            fields[t.name] = have = b.graph.add_input(t.name, want)
        elif have.type != want:
            raise b.error(f"the data field '{t.name}' is used as {have.type} and as {want}", None, NndslTypeError)
        return have
    if not isinstance(t, Value):
        raise b.error(f"{fn} takes a tensor as its target, got {t!r}", None, NndslTypeError)
    if want.is_float and not t.type.is_float:
        return _op(b, "cast", t, want.dtype)
    return t


def cross_entropy(b: Builder, pred: Value, t: Any, fields: dict, label_smoothing: float = 0.0) -> Value:
    z = _logits_of(b, "cross_entropy", pred, "softmax", "sigmoid", "binary_cross_entropy")
    if z.type.rank < 1:
        raise b.error(f"cross_entropy takes logits [..., classes], got {z.type}", None, NndslTypeError)
    y = target(b, "cross_entropy", t, TensorType(z.type.shape[:-1], "i64"), fields)
    if y.type.is_float:
        raise b.error(f"cross_entropy takes integer class labels, but the target is {y.type}",
                      "for real-valued targets use mse", NndslTypeError)
    return b.op("cross_entropy_loss", [z, y], {"label_smoothing": float(label_smoothing)})


def binary_cross_entropy(b: Builder, pred: Value, t: Any, fields: dict) -> Value:
    z = _logits_of(b, "binary_cross_entropy", pred, "sigmoid", "softmax", "cross_entropy")
    y = target(b, "binary_cross_entropy", t, TensorType(z.type.shape, "f32"), fields)
    with_t = b.op("mul", [z, y])
    soft = b.op("log", [b.op("add_s", [b.op("exp", [b.op("neg", [b.op("abs", [z])])])], {"value": 1.0})])
    return _op(b, "mean", b.op("add", [b.op("sub", [b.op("relu", [z]), with_t]), soft]), None, False)


def _difference(b: Builder, fn: str, pred: Value, t: Any, fields: dict) -> Value:
    if not pred.type.is_float:
        raise b.error(f"{fn} takes floating-point predictions, got {pred.type}", None, NndslTypeError)
    if t is None:
        return pred
    return b.op("sub", [pred, target(b, fn, t, TensorType(pred.type.shape, "f32"), fields)])


def mse(b: Builder, pred: Value, t: Any, fields: dict) -> Value:
    d = _difference(b, "mse", pred, t, fields)
    return _op(b, "mean", b.op("mul", [d, d]), None, False)


def l1(b: Builder, pred: Value, t: Any, fields: dict) -> Value:
    return _op(b, "mean", _op(b, "abs", _difference(b, "l1", pred, t, fields)), None, False)


# name -> (function, whether the target may be left out, keyword arguments with their defaults)
LOSS_FUNCTIONS: dict[str, tuple[LossFn, bool, dict[str, float]]] = {
    "cross_entropy": (cross_entropy, False, {"label_smoothing": 0.0}),
    "binary_cross_entropy": (binary_cross_entropy, False, {}),
    "mse": (mse, True, {}),
    "l1": (l1, True, {}),
}
