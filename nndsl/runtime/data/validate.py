"""Checks that data are usable and fit the run, done once per set, vectorized (no per-batch cost).

Three layers, from the bytes up:

* arrays as read (the loaders call these on NumPy arrays): ``numeric`` rejects strings, objects,
  complex numbers, dates and records naming the field; ``labels`` turns integer labels into i64,
  rejecting values an int64 cannot hold (uint64 above 2**63 - 1).
* ``loaded(src, what)``: the set on its own (``data.load`` runs it on every set): at least one
  example, every float finite. NaN/inf are the data's fault, reported with the field and the
  first bad index (``x[1234, 5] = nan``), so a diverging loss is never blamed on them.
* ``fits(model, src, cfg, key)``: the set against the model's graph types (no forward pass) and
  the loss: input dtype, token ids within the embedding tables (a text's vocabulary vs the
  model's), targets of the kind the loss takes (integer labels in [0, classes) for
  cross_entropy, one value per output for mse / binary_cross_entropy, in [0, 1] for the latter),
  class labels for perplexity. ``check_targets`` is the fallback for modules without a
  graph, on the first batch's predictions.

Every failure is an ``NndslDataError`` (or ``NndslConfigError`` for a loss or metric that cannot
take these data), located at the train section's entry.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ...errors import NndslConfigError, NndslDataError, Span
from .fields import FieldDesc, Plan, input_fields, target_field
from .sources import Mapped, Source, TextSource

_KIND_NAMES = {"U": "strings", "S": "byte strings", "O": "Python objects", "c": "complex numbers",
               "M": "dates", "m": "time spans", "V": "records (a structured dtype)"}
_INT64_MAX = np.iinfo(np.int64).max
_SET = {"data": "training", "eval": "eval"}  # a train-section key -> the set's name in messages


# ----------------------------------------------------------------------------- arrays as read
def numeric(arr: np.ndarray, field: str, where: str) -> np.ndarray:
    """``arr`` if it holds numbers (bool, int, float) in at least one dimension, else an error naming ``field``."""
    if arr.dtype.kind not in "biuf":
        kind = _KIND_NAMES.get(arr.dtype.kind, f"dtype {arr.dtype}")
        raise NndslDataError(f"{where}: '{field}' holds {kind} ({arr.dtype}); nndsl trains on numbers only",
                             hint="convert it to a numeric array (integers or floats) before saving")
    if arr.ndim == 0:
        raise NndslDataError(f"{where}: '{field}' is a single number, not an array of examples")
    return arr


def labels(y: np.ndarray, field: str, where: str) -> torch.Tensor:
    """Integer (or bool) labels as i64, refusing values beyond int64 instead of wrapping them."""
    if y.dtype.kind == "u" and y.dtype.itemsize == 8 and y.size and y.max() > _INT64_MAX:
        i = index_of(torch.from_numpy(y > _INT64_MAX))
        raise NndslDataError(f"{where}: {_at(field, i)} = {y[i]} does not fit an int64 label (at most {_INT64_MAX})")
    return torch.from_numpy(y.astype(np.int64))


def index_of(bad: torch.Tensor) -> tuple[int, ...]:
    """The index of the first True of a bool tensor (``bad.any()`` must hold)."""
    flat = int(bad.reshape(-1).nonzero()[0])
    return tuple(int(i) for i in np.unravel_index(flat, tuple(bad.shape)))


def _at(field: str, index: tuple[int, ...]) -> str:
    return f"{field}[{', '.join(map(str, index))}]"


# ----------------------------------------------------------------------------- the set on its own
def loaded(src: Source, what: str) -> Source:
    """``src`` if it has examples and only finite values; ``what`` names the set in messages."""
    if len(src) == 0:
        raise NndslDataError(f"{what} has no examples", hint="check the file and the split or part chosen")
    if isinstance(src, TextSource):
        return src  # token ids, finite by construction
    for field, t in src.fields.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not _all_finite(t):
            i = index_of(~torch.isfinite(t))
            raise NndslDataError(f"{what}: {_at(field, i)} = {t[i].item()}; the data must be finite "
                                 "(NaN and inf are missing or broken values, not something to train on)",
                                 hint="drop or fill those values in the data file")
    return src


def _all_finite(t: torch.Tensor) -> bool:
    """Every element finite. A sum with a NaN or inf in it is not finite, so a finite sum settles it
    in one pass (~30 ms for MNIST's 47M values; torch.isfinite takes ~1 s on a CPU); only a sum that
    overflowed or found a bad value pays for the elementwise check."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


# ----------------------------------------------------------------------------- the set against the run
def describe_fields(src: Source) -> dict[str, FieldDesc]:
    """What a loaded set says of each field (values included, for the range checks)."""
    out = {}
    for name in src.fields:
        dtype, shape = src.field_type(name)
        values = src.tokens if isinstance(src, TextSource) else src.fields[name]
        out[name] = FieldDesc(dtype, shape, None if isinstance(values, Mapped) else values,
                              getattr(src, "vocab_size", None) if isinstance(src, TextSource) else None)
    return out


def fits(model: torch.nn.Module, src: Source, cfg, key: str) -> None:
    """``src`` (the ``key`` = "data" or "eval" set) fits the model's inputs, the loss and the metrics."""
    plan = Plan.of_module(model, cfg.loss)
    if plan is None:
        return  # not a compiled model: check_targets runs on the first batch instead
    fits_plan(plan, describe_fields(src), cfg, key, getattr(model, "graph", None))


def fits_plan(plan: Plan, fields: dict[str, FieldDesc], cfg, key: str, model_graph=None, what: str = "") -> None:
    """Each field a model reads (``plan``) against what is known of it (``fields``: loaded, or headers)."""
    span = cfg.spans.get(key) or getattr(getattr(cfg, key, None), "span", None)
    what = what or f"the {_SET[key]} set"
    names = list(fields)
    for v, name in zip(plan.inputs, input_fields([v.name for v in plan.inputs], names, span, what)):
        _input(plan.graph, v, name, fields[name], key, span)
    for v in plan.targets:
        name = target_field(v.name, names, cfg.spans.get("loss") or span, what)
        _target(cfg, plan.graph, v, name, fields[name], key, span)
    graph = model_graph if model_graph is not None else plan.graph
    if len(graph.outputs) == 1 and "y" in fields:
        _metrics(cfg, fields["y"], graph.outputs[0].type, key)


def _input(graph, inp, name: str, f: FieldDesc, key: str, span: Optional[Span]) -> None:
    """A field's dtype kind and static dims are the input's; integer ids are within every embedding table
    they index."""
    if not inp.type.is_float and f.dtype.is_floating_point:
        raise NndslDataError(f"the {_SET[key]} set gives {name} as {_dtype(f.dtype)}, but the model's input "
                             f"'{inp.name}' is {inp.type}", span)
    if not _same(f.shape, inp.type.shape[1:]):
        raise NndslDataError(f"the {_SET[key]} data do not fit the model: {name} has shape {_rows(f.shape)}, but "
                             f"the model's input '{inp.name}' is {inp.type}", span)
    if inp.type.is_float:
        return
    tables = [(n.inputs[1].type.shape[0], _param_name(n.inputs[1])) for n in graph.nodes
              if n.op == "embedding" and n.inputs[0] is inp and isinstance(n.inputs[1].type.shape[0], int)]
    if not tables:
        return
    rows, table = min(tables)
    if f.vocab_size is not None:
        if f.vocab_size > rows:
            raise NndslDataError(f"the {_SET[key]} text has {f.vocab_size} distinct characters, but the model's "
                                 f"vocabulary (embedding '{table}') is {rows}", span,
                                 _vocab_hint(_hyper_name(graph, rows), f.vocab_size))
        return
    x = f.values
    if x is None or not x.numel():
        return
    bad = (x < 0) | (x >= rows)
    if bool(bad.any()):
        i = index_of(bad)
        raise NndslDataError(f"the {_SET[key]} set's {_at(name, i)} = {int(x[i])}, but the embedding '{table}' "
                             f"takes ids 0..{rows - 1}", span)


def _target(cfg, graph, v, name: str, f: FieldDesc, key: str, span: Optional[Span]) -> None:
    """A field the loss reads, against the type the loss gave it (``loss_terms``)."""
    at = cfg.spans.get("loss") or span
    loss = cfg.loss.name if cfg.loss.name != "expression" else "the loss"
    ce = next((n for n in graph.nodes if n.op == "cross_entropy_loss" and n.inputs[1] is v), None)
    y = f.values
    if ce is not None:
        out = ce.inputs[0].type
        loss = "cross_entropy"
        if f.dtype.is_floating_point:
            raise NndslConfigError(f"cross_entropy takes integer class labels, but the {_SET[key]} set's {name} is "
                                   f"{_dtype(f.dtype)}", at, _float_label_hint(y) if y is not None else None)
        want = out.shape[:-1][1:]
        if not _same(f.shape, want):
            raise NndslConfigError(f"cross_entropy: {_SET[key]} targets {name} of shape {_rows(f.shape)} do not fit "
                                   f"the model's output {out} (expected targets {_rows(want)})", at)
        _classes(graph, out.shape[-1], name, f, key, span)
        return
    outs = v.type.shape[1:]
    if all(isinstance(d, int) for d in outs) and _numel(f.shape) != _numel(outs):
        kind = "class-index targets" if not f.dtype.is_floating_point and not f.shape else "targets"
        raise NndslConfigError(f"{loss}: {kind} {name} of shape {_rows(f.shape)} ({_dtype(f.dtype)}) do not fit the "
                               f"model's output {v.type}: one target value per output value is needed", at,
                               "for class labels use loss = cross_entropy" if kind != "targets" else None)
    if cfg.loss.name == "binary_cross_entropy" and y is not None and y.numel():
        bad = (y < 0) | (y > 1)
        if bool(bad.any()):
            i = index_of(bad)
            raise NndslDataError(f"the {_SET[key]} set's {_at(name, i)} = {y[i].item()}, but binary_cross_entropy "
                                 "takes targets in [0, 1]", span)


def _classes(graph, classes, name: str, f: FieldDesc, key: str, span: Optional[Span]) -> None:
    """Class labels ``name`` index the ``classes`` of the model's output."""
    if f.vocab_size is not None or f.classes is not None:
        have, unit = (f.vocab_size, "distinct characters") if f.vocab_size is not None else (f.classes, "classes")
        if isinstance(classes, int) and have > classes:
            what = "text" if f.vocab_size is not None else "set"
            raise NndslDataError(f"the {_SET[key]} {what} has {have} {unit}, but the model outputs {classes} classes",
                                 span, _vocab_hint(_hyper_name(graph, classes), have) if f.vocab_size else None)
        if f.vocab_size is not None or f.values is None:
            return
    y = f.values
    if y is None or not y.numel():
        return
    bad = (y < 0) | (y >= classes) if isinstance(classes, int) else y < 0
    if bool(bad.any()):
        i = index_of(bad)
        expect = f"labels 0..{classes - 1} for its {classes} classes" if isinstance(classes, int) else "labels >= 0"
        raise NndslDataError(f"the {_SET[key]} set's {_at(name, i)} = {int(y[i])}, but the model takes {expect}",
                             span, "binary_cross_entropy suits a single output" if classes == 1 else None)


def _metrics(cfg, f: FieldDesc, out, key: str) -> None:
    """Perplexity scores integer class labels ``y`` against the output's classes."""
    if key != "eval" or "perplexity" not in cfg.metrics:
        return
    if f.dtype.is_floating_point or out.rank < 2 or not _same(f.shape, out.shape[1:-1]):
        raise NndslConfigError(f"metric 'perplexity' scores class labels {_rows(out.shape[1:-1])} against the "
                               f"model's output {out}, but the eval set's y is {_dtype(f.dtype)}{_rows(f.shape)}",
                               cfg.spans.get("metrics"))


def check_targets(pred: torch.Tensor, source: Source, cfg, key: str) -> None:
    """On the first batch's ``pred``: integer targets index the model's classes (modules without a graph)."""
    if cfg.loss.name != "cross_entropy" or pred.dim() == 0:
        return
    y = source.tokens if isinstance(source, TextSource) else source.y
    if y.is_floating_point() or not y.numel():
        return
    classes = pred.shape[-1]
    bad = (y < 0) | (y >= classes)
    if not bool(bad.any()):
        return
    i = index_of(bad)
    hint = _vocab_hint(None, source.vocab_size) if isinstance(source, TextSource) else None
    raise NndslDataError(f"the {_SET[key]} targets hold {int(y[i])}, but the model outputs {classes} classes "
                         f"(labels 0..{classes - 1})", cfg.spans.get(key), hint)


# ----------------------------------------------------------------------------- helpers
def _float_label_hint(y: torch.Tensor) -> str:
    whole = y.numel() and bool((y == torch.floor(y)).all())
    if whole:
        big = y.abs() > float(_INT64_MAX)
        if bool(big.any()):
            i = index_of(big)
            return f"{_at('y', i)} = {y[i].item():g} is a whole number too large for an int64 label"
    return "store y as integers for class labels; for real-valued targets use loss = mse"


def _hyper_name(graph, value) -> Optional[str]:
    """The model hyperparameter (``vocab``) set to ``value``, if one is."""
    for name, v in getattr(graph, "hyperparams", {}).items():
        if v == value and isinstance(v, int) and not isinstance(v, bool):
            return name
    return None


def _vocab_hint(name: Optional[str], need: int) -> str:
    return f"the model's vocabulary must be at least {need}: --set {name or 'vocab'}={need}"


def _param_name(v) -> str:
    name = (v.producer.attrs.get("name") if v.producer is not None else None) or "embedding"
    return name.removesuffix(".weight")


def _same(have: tuple, want: tuple) -> bool:
    return len(have) == len(want) and all(not isinstance(w, int) or w == h for h, w in zip(have, want))


def _numel(dims: tuple) -> int:
    return int(np.prod(dims, dtype=np.int64)) if dims else 1


def _rows(dims: tuple) -> str:
    """``[N, 5]``: a shape of N examples of ``dims``."""
    return "[" + ", ".join(["N", *map(str, dims)]) + "]"


def _dtype(t) -> str:
    t = getattr(t, "dtype", t)
    return {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64", torch.float16: "f16",
            torch.bfloat16: "bf16", torch.int32: "i32", torch.bool: "bool"}.get(t, str(t))
