"""A trained model out of nndsl: an ONNX file (PyTorch's dynamo-based exporter) or a ``torch.export``
program (``.pt2``), both from the PyTorch backend's forward (plain ATen ops, no Triton kernel).

Every symbolic dim of the model's inputs (``B``, ``T``) stays dynamic in the exported graph
(``torch.export.Dim.DYNAMIC``); the ranges ``torch.export`` infers (e.g. ``T <= ctx`` where a
positional table bounds it) are kept. ``torch.export`` specializes sizes 0 and 1, so an exported
program takes dynamic dims of size 2 and more; onnxruntime runs any size.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Union

import torch

from .errors import NndslError, escape
from .ir import dims as D
from .ir.types import DTYPES

# example sizes of the symbolic dims while tracing: distinct, and never 0 or 1 (which torch.export specializes)
_EXAMPLE_SIZES = (2, 3, 5, 7, 11, 13)


def example_inputs(module: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """One input per model input, of its declared dtype, each symbolic dim at a small distinct size
    (integer inputs are zeros: every index is then valid)."""
    sizes = {D.symbol(sym): _EXAMPLE_SIZES[i % len(_EXAMPLE_SIZES)] for i, sym in enumerate(module.graph.symbols)}
    out = []
    for v in module.graph.inputs:
        shape = [d if D.is_static(d) else int(d.subs(sizes)) for d in v.type.shape]
        dtype = DTYPES[v.type.dtype]
        out.append(torch.randn(shape, dtype=dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype))
    return tuple(out)


def dynamic_shapes(module: torch.nn.Module) -> tuple[dict[int, Any], ...]:
    """Per input, its symbolic axes as ``Dim.DYNAMIC`` (torch.export infers their ranges and equalities)."""
    return tuple({i: torch.export.Dim.DYNAMIC for i, d in enumerate(v.type.shape) if not D.is_static(d)}
                 for v in module.graph.inputs)


def export_program(module: torch.nn.Module) -> torch.export.ExportedProgram:
    """``torch.export.export`` of the model's PyTorch forward with dynamic symbolic dims.

    A copy is traced: tracing swaps the parameters for fake tensors, and the compiled forward reads
    its parameters through the sub-modules' own dicts (``rt.params``), which must stay untouched."""
    traced = _torch_forward(module)
    try:
        with _quiet():
            return torch.export.export(traced, example_inputs(module), dynamic_shapes=dynamic_shapes(module))
    except Exception as e:  # torch.export's own errors: the op or guard it could not trace
        raise _failed("torch.export", e) from e


def save_torch_export(module: torch.nn.Module, path: Union[str, Path]) -> Path:
    """The model as a ``torch.export`` archive (``torch.export.load(path).module()(*inputs)`` runs it)."""
    path = Path(path)
    torch.export.save(export_program(module), str(path))
    return path


def save_onnx(module: torch.nn.Module, path: Union[str, Path], opset: int | None = None) -> Path:
    """The model as an ONNX file through ``torch.onnx.export(..., dynamo=True)``: inputs named as in
    the .nn file, outputs ``output`` (``output_0``, ``output_1``... for several), dynamic symbolic dims."""
    path = Path(path)
    traced = _torch_forward(module)
    names = [v.name for v in module.graph.inputs]
    outs = len(module.graph.outputs)
    out_names = ["output"] if outs == 1 else [f"output_{i}" for i in range(outs)]
    extra = {} if opset is None else {"opset_version": opset}
    try:
        with _quiet():
            torch.onnx.export(traced, example_inputs(module), str(path), dynamo=True, input_names=names,
                              output_names=out_names, dynamic_shapes=dynamic_shapes(module), external_data=False,
                              **extra)
    except Exception as e:
        raise _failed("the ONNX exporter", e) from e
    _name_dims(path, module)
    return path


def _name_dims(path: Path, module: torch.nn.Module) -> None:
    """Rename the exporter's dynamic dims (``s18``) after the .nn file's (``B``, ``T``) in the ONNX file."""
    import onnx

    model = onnx.load(str(path))
    rename = {}
    for v, proto in zip(module.graph.inputs, model.graph.input):
        for d, od in zip(v.type.shape, proto.type.tensor_type.shape.dim):
            if not D.is_static(d) and od.dim_param:
                rename.setdefault(od.dim_param, D.dim_str(d))
    for proto in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for od in proto.type.tensor_type.shape.dim:
            if od.dim_param in rename:
                od.dim_param = rename[od.dim_param]
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet():
    """The exporters' progress lines, log warnings and deprecation warnings stay off the terminal."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _torch_forward(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` in eval mode that always runs its PyTorch forward."""
    traced = copy.deepcopy(module).eval()
    if hasattr(traced, "_nndsl_forward_torch"):
        traced.nndsl_backend = "torch"
    return traced


def _failed(what: str, e: Exception) -> NndslError:
    first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    return NndslError(f"{what} could not export the model: {escape(first.strip())[:500]}",
                      hint="NNDSL_DEBUG=1 shows the exporter's full report")
