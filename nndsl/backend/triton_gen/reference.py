"""The PyTorch reference of a generated kernel: the same kernel IR, evaluated with torch ops.

It computes exactly what the kernel computes — in the kernel's compute dtype, on the ``[R, C]``
view, with the same dropout bits (``kernels.dropout.dropout_mask``) — so it stands in for the
kernel where Triton does not run (a CPU without the interpreter, half precision under the
interpreter), serves the tests as the kernel's reference, and, run under autograd, is the
backward of a region whose ops lack a derivative row.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .kir import KernelSpec, KNode

DTYPES = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16, "bool": torch.bool}


# primitive -> torch function of the operand values (and the node, for its arg)
TORCH: dict[str, Callable] = {
    "add": lambda n, a, b: a + b,
    "sub": lambda n, a, b: a - b,
    "mul": lambda n, a, b: a * b,
    "div": lambda n, a, b: a / b,
    "neg": lambda n, a: -a,
    "maximum": lambda n, a, b: torch.maximum(a, b),
    "minimum": lambda n, a, b: torch.minimum(a, b),
    "pow": lambda n, a, b: torch.pow(a, b),
    "powc": lambda n, a: torch.pow(a, float(n.arg)),
    "exp": lambda n, a: torch.exp(a),
    "log": lambda n, a: torch.log(a),
    "sqrt": lambda n, a: torch.sqrt(a),
    "rsqrt": lambda n, a: torch.rsqrt(a),
    "sigmoid": lambda n, a: torch.sigmoid(a),
    "tanh": lambda n, a: torch.tanh(a),
    "erf": lambda n, a: torch.erf(a),
    "abs": lambda n, a: torch.abs(a),
    "sign": lambda n, a: torch.sign(a),
    "sin": lambda n, a: torch.sin(a),
    "cos": lambda n, a: torch.cos(a),
    "gt": lambda n, a, b: a > b,
    "ge": lambda n, a, b: a >= b,
    "lt": lambda n, a, b: a < b,
    "le": lambda n, a, b: a <= b,
    "eq": lambda n, a, b: a == b,
    "ne": lambda n, a, b: a != b,
    "where": lambda n, c, a, b: torch.where(c, a, b),
    "rsum": lambda n, a: a.sum(-1, keepdim=True),
    "rmax": lambda n, a: a.amax(-1, keepdim=True),
}


def iteration_shape(spec: KernelSpec, inputs: Sequence[torch.Tensor]) -> tuple:
    """S: the broadcast of every input, lined up as the spec's slots say."""
    shapes = [tuple(inputs[s.src].shape) + ((1,) if s.rowvec else ()) for s in spec.inputs]
    return tuple(torch.broadcast_shapes(*shapes)) if shapes else ()


def slot_view(spec: KernelSpec, i: int, x: torch.Tensor, S: tuple) -> torch.Tensor:
    """Input slot ``i`` as a (stride-0 broadcast) view of S."""
    s = spec.inputs[i]
    a = x.unsqueeze(-1) if s.rowvec else x
    return a.expand(S) if S else a.reshape(())


def output_shape(spec: KernelSpec, k: int, S: tuple) -> tuple:
    o = spec.outputs[k]
    if o.full:
        return S
    return S[:-1] + ((1,) if o.keepdim else ())


def runtime_dtypes(spec: KernelSpec, inputs: Sequence[torch.Tensor]) -> tuple[str, list[torch.dtype]]:
    """The compute dtype and the output dtypes for these inputs.

    The IR's dtypes are what the model declared; at run time a model may be in float64
    (``.double()``) or its values in bf16 (autocast): an output whose IR dtype is that of some
    inputs takes their run-time dtype (promoted), a cast's output keeps its own. The kernel
    computes in float64 when any input is float64, else in float32."""
    seen: dict[str, torch.dtype] = {}
    for s in spec.inputs:
        t = inputs[s.src].dtype
        seen[s.dtype] = torch.promote_types(seen[s.dtype], t) if s.dtype in seen else t
    compute = "f64" if any(inputs[s.src].dtype == torch.float64 for s in spec.inputs) else "f32"
    seen.pop("bool", None)
    return compute, [seen.get(o.dtype, DTYPES[o.dtype]) for o in spec.outputs]


def evaluate(spec: KernelSpec, inputs: Sequence[torch.Tensor], scalars: Sequence[float], seeds: Sequence[int],
             training: bool, S: tuple | None = None) -> list[torch.Tensor]:
    """The outputs of ``spec`` on ``inputs``, computed with torch ops (differentiable)."""
    from ...kernels.dropout import dropout_mask

    S = iteration_shape(spec, inputs) if S is None else S
    S2 = S if S else (1,)
    C = S2[-1]
    R = math.prod(S2[:-1])
    compute, out_dtypes = runtime_dtypes(spec, inputs)
    ct = DTYPES[compute]
    dev = inputs[0].device if inputs else torch.device("cpu")
    vals: dict[int, torch.Tensor] = {}
    for n in spec.nodes():
        if n.op == "load":
            v = slot_view(spec, n.arg, inputs[spec.inputs[n.arg].src], S).reshape(R, C)
            v = v != 0 if spec.inputs[n.arg].dtype == "bool" else v.to(ct)
            v = v[:, :1] if n.row else v
        elif n.op == "const":
            v = torch.tensor(n.arg, dtype=ct, device=dev)
        elif n.op == "scalar":
            v = torch.tensor(float(scalars[n.arg]), dtype=ct, device=dev)
        elif n.op == "ncols":
            v = torch.tensor(float(C), dtype=ct, device=dev)
        elif n.op == "dropout":
            p = spec.dropouts[n.arg]
            if training and p > 0.0:
                v = dropout_mask(int(seeds[n.arg]), (R, C), p, dev).to(ct) / (1.0 - p)
            else:
                v = torch.ones((), dtype=ct, device=dev)
        elif n.op == "cast":
            v = vals[id(n.args[0])].to(DTYPES[n.arg]).to(ct)
        else:
            v = TORCH[n.op](n, *(vals[id(a)] for a in n.args))
        vals[id(n)] = v
    outs = []
    for k, o in enumerate(spec.outputs):
        v = vals[id(o.node)]
        shape = (R, C) if o.full else (R, 1)
        v = torch.broadcast_to(v, shape)
        outs.append(v.reshape(output_shape(spec, k, S)).to(out_dtypes[k]))
    return outs
