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
from .sources import Source, TextSource

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
    for field, t in (("x", src.x), ("y", src.y)):
        if t.is_floating_point() and not _all_finite(t):
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
def fits(model: torch.nn.Module, src: Source, cfg, key: str) -> None:
    """``src`` (the ``key`` = "data" or "eval" set) fits the model's input, the loss and the metrics."""
    graph = getattr(model, "graph", None)
    span = cfg.spans.get(key) or getattr(getattr(cfg, key, None), "span", None)
    if graph is None or len(getattr(graph, "inputs", ())) != 1:
        return  # not a compiled model: check_targets runs on the first batch instead
    _inputs(graph, src, key, span)
    if len(graph.outputs) == 1:
        out = graph.outputs[0].type
        _targets(cfg, src, out, key, span, graph)
        _metrics(cfg, src, out, key)


def _inputs(graph, src: Source, key: str, span: Optional[Span]) -> None:
    """x's dtype kind and static dims are the input's; integer ids are within every embedding table
    they index."""
    inp = graph.inputs[0]
    x = src.tokens if isinstance(src, TextSource) else src.x
    if inp.type.is_float != x.is_floating_point():
        raise NndslDataError(f"the {_SET[key]} set gives x as {_dtype(x)}, but the model's input "
                             f"'{inp.name}' is {inp.type}", span)
    have = (src.context,) if isinstance(src, TextSource) else tuple(x.shape[1:])
    if not _same(have, inp.type.shape[1:]):
        raise NndslDataError(f"the {_SET[key]} data do not fit the model: x has shape {_rows(have)}, but the "
                             f"model's input '{inp.name}' is {inp.type}", span)
    if inp.type.is_float:
        return
    tables = [(n.inputs[1].type.shape[0], _param_name(n.inputs[1])) for n in graph.nodes
              if n.op == "embedding" and n.inputs[0] is inp and isinstance(n.inputs[1].type.shape[0], int)]
    if not tables or not x.numel():
        return
    rows, name = min(tables)
    if isinstance(src, TextSource):
        if src.vocab_size > rows:
            raise NndslDataError(f"the {_SET[key]} text has {src.vocab_size} distinct characters, but the model's "
                                 f"vocabulary (embedding '{name}') is {rows}", span,
                                 _vocab_hint(_hyper_name(graph, rows), src.vocab_size))
        return
    bad = (x < 0) | (x >= rows)
    if bool(bad.any()):
        i = index_of(bad)
        raise NndslDataError(f"the {_SET[key]} set's {_at('x', i)} = {int(x[i])}, but the embedding '{name}' "
                             f"takes ids 0..{rows - 1}", span)


def _targets(cfg, src: Source, out, key: str, span: Optional[Span], graph) -> None:
    """The targets are what ``cfg.loss`` takes, checked against the output type ``out``."""
    loss = cfg.loss.name
    at = cfg.spans.get("loss") or span
    y = src.tokens if isinstance(src, TextSource) else src.y
    per_example = (src.context,) if isinstance(src, TextSource) else tuple(y.shape[1:])
    if loss == "cross_entropy":
        if y.is_floating_point():
            raise NndslConfigError(f"cross_entropy takes integer class labels, but the {_SET[key]} set's y is "
                                   f"{_dtype(y)}", at, _float_label_hint(y))
        want = out.shape[1:-1]
        if out.rank < 2 or not _same(per_example, want):
            raise NndslConfigError(f"cross_entropy: {_SET[key]} targets of shape {_rows(per_example)} do not fit "
                                   f"the model's output {out} (expected targets {_rows(want)})", at)
        classes = out.shape[-1]
        if isinstance(src, TextSource):
            if isinstance(classes, int) and src.vocab_size > classes:
                raise NndslDataError(f"the {_SET[key]} text has {src.vocab_size} distinct characters, but the model "
                                     f"outputs {classes} classes", span,
                                     _vocab_hint(_hyper_name(graph, classes), src.vocab_size))
            return
        bad = (y < 0) | (y >= classes) if isinstance(classes, int) else y < 0
        if bool(bad.any()):
            i = index_of(bad)
            expect = f"labels 0..{classes - 1} for its {classes} classes" if isinstance(classes, int) \
                else "labels >= 0"
            raise NndslDataError(f"the {_SET[key]} set's {_at('y', i)} = {int(y[i])}, but the model takes {expect}",
                                 span, "binary_cross_entropy suits a single output" if classes == 1 else None)
        return
    if loss in ("mse", "binary_cross_entropy"):
        outs = out.shape[1:]
        if all(isinstance(d, int) for d in outs) and _numel(per_example) != _numel(outs):
            kind = "class-index targets" if not y.is_floating_point() and not per_example else "targets"
            raise NndslConfigError(f"{loss}: {kind} of shape {_rows(per_example)} ({_dtype(y)}) do not fit the "
                                   f"model's output {out}: one target value per output value is needed", at,
                                   "for class labels use loss = cross_entropy" if kind != "targets" else None)
    if loss == "binary_cross_entropy" and y.numel():
        bad = (y < 0) | (y > 1)
        if bool(bad.any()):
            i = index_of(bad)
            raise NndslDataError(f"the {_SET[key]} set's {_at('y', i)} = {y[i].item()}, but binary_cross_entropy "
                                 "takes targets in [0, 1]", span)


def _metrics(cfg, src: Source, out, key: str) -> None:
    """Perplexity scores integer class labels against the output's classes."""
    y = src.tokens if isinstance(src, TextSource) else src.y
    per_example = (src.context,) if isinstance(src, TextSource) else tuple(y.shape[1:])
    if key != "eval" or "perplexity" not in cfg.metrics:
        return
    if y.is_floating_point() or out.rank < 2 or not _same(per_example, out.shape[1:-1]):
        raise NndslConfigError(f"metric 'perplexity' scores class labels {_rows(out.shape[1:-1])} against the "
                               f"model's output {out}, but the eval set's y is {_dtype(y)}{_rows(per_example)}",
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


def _dtype(t: torch.Tensor) -> str:
    return {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64", torch.float16: "f16",
            torch.bfloat16: "bf16", torch.int32: "i32", torch.bool: "bool"}.get(t.dtype, str(t.dtype))
