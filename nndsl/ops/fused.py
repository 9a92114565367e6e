"""Fused and kernel ops: what the fusion passes (``nndsl.passes``) rewrite the graph into.

Each op has shape inference (reusing the unfused ops' rules) and a *torch reference* ``emit`` that
computes exactly what the sub-graph it replaced computed, so the torch backend runs a fused graph
as is; the Triton backend registers its own lowering of the same op (one kernel launch).

=====================  ==============================  =============================================
op                     inputs                          attrs
=====================  ==============================  =============================================
fused_linear           x, w, [bias], [residual]        activation, dropout (p), bias, residual (bools)
fused_matmul           a, b, [bias], [residual]        activation, dropout (p), bias, residual (bools)
fused_conv2d           x, w, [bias]                    stride, padding, dilation, groups, activation
flash_attention        q, k, v                         causal, scale (float or None: 1/sqrt(E)), dropout
layernorm_kernel       x, [w], [b]                     eps
rmsnorm_kernel         x, [w]                          eps
softmax_kernel         x                               (over the last axis)
log_softmax_kernel     x                               (over the last axis)
=====================  ==============================  =============================================

The matmul epilogue computes, in order: ``z = x @ w^T (+ bias)``, ``z = activation(z)``,
``z = dropout(z, p)`` (while training), ``z = residual + z``. ``activation`` is one of
``ACTIVATIONS`` (the names ``kernels.matmul`` takes; ``gelu_tanh`` is gelu(approximate='tanh')).
"""
from __future__ import annotations

from ..ir import dims as D
from ..ir.types import TensorType
from .nn import ntuple
from .registry import EmitCtx, InferCtx, get, op

ACTIVATIONS = ("none", "relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh")
CONV_ACTIVATIONS = ("none", "relu", "gelu", "silu", "sigmoid", "tanh")  # kernels.conv2d's
FUSED_OPS = ("fused_linear", "fused_matmul", "fused_conv2d", "flash_attention", "layernorm_kernel",
             "rmsnorm_kernel", "softmax_kernel", "log_softmax_kernel")

# activation -> torch expression of z
_ACT_CODE = {
    "none": "{z}", "relu": "F.relu({z})", "gelu": "F.gelu({z})", "gelu_tanh": "F.gelu({z}, approximate={tanh})",
    "silu": "F.silu({z})", "sigmoid": "torch.sigmoid({z})", "tanh": "torch.tanh({z})",
}


def _act(e: EmitCtx, act: str, z: str) -> str:
    """``act`` applied to the expression ``z``."""
    return _ACT_CODE[act].format(z=z, tanh=e.lit("tanh"))


def _sub(c: InferCtx, op_name: str, idx: list[int], attrs: dict) -> TensorType:
    """Run op ``op_name``'s inference on inputs ``idx`` of ``c``."""
    sub = InferCtx(op_name, [c.types[i] for i in idx], attrs, [c.names[i] if i < len(c.names) else None
                                                               for i in idx])
    return get(op_name).infer(sub)[0]


def _epilogue_infer(c: InferCtx, base: str) -> TensorType:
    """The base op's output type, checked against the epilogue's attrs and optional inputs."""
    a = c.attrs
    act, p = a.get("activation", "none"), a.get("dropout", 0.0)
    if act not in ACTIVATIONS:
        raise c.error(f"{c.op}: activation must be one of {ACTIVATIONS}, got {act!r}")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise c.error(f"{c.op}: dropout must be a probability in [0, 1], got {p!r}")
    n = 2 + bool(a.get("bias")) + bool(a.get("residual"))
    if len(c.types) != n:
        raise c.error(f"{c.op}: expected {n} inputs (bias={bool(a.get('bias'))}, residual="
                      f"{bool(a.get('residual'))}), got {len(c.types)}")
    if base == "linear":
        out = _sub(c, "linear", [0, 1, 2] if a.get("bias") else [0, 1], {})
    else:
        out = _sub(c, "matmul", [0, 1], {})
        if out.rank == 0:
            raise c.error(f"{c.op}: the product has no axes")
        if a.get("bias"):
            b = c.types[2]
            if b.rank != 1 or not D.equal(b.shape[0], out.shape[-1]) or b.dtype != out.dtype:
                raise c.error(f"{c.op}: the bias must be {out.dtype}[{D.dim_str(out.shape[-1])}], got {c.describe(2)}")
    if a.get("residual"):
        r = c.types[-1]
        if not r.same_as(out):
            raise c.error(f"{c.op}: the residual must have the output type {out}, got {c.describe(len(c.types) - 1)}")
    return out


def _epilogue_emit(e: EmitCtx, base: str) -> str:
    a = e.attrs
    bias = e.ins[2] if a.get("bias") else None
    if base == "linear":
        z = f"F.linear({e.ins[0]}, {e.ins[1]}, {bias or 'None'})"
    else:
        z = f"{e.ins[0]} @ {e.ins[1]}" + (f" + {bias}" if bias else "")
        z = f"({z})"
    z = _act(e, a.get("activation", "none"), z)
    p = float(a.get("dropout", 0.0))
    if p > 0.0:
        z = f"F.dropout({z}, {e.lit(p)}, self.training)"
    if a.get("residual"):
        z = f"{e.ins[-1]} + {z}"
    return z


@op("fused_linear", emit=lambda e: _epilogue_emit(e, "linear"))
def _fused_linear(c: InferCtx) -> TensorType:
    """linear(x, w, [bias]) -> activation -> dropout (p, while training) -> + residual, as one kernel."""
    return _epilogue_infer(c, "linear")


@op("fused_matmul", emit=lambda e: _epilogue_emit(e, "matmul"))
def _fused_matmul(c: InferCtx) -> TensorType:
    """a @ b (+ bias[N]) -> activation -> dropout (p, while training) -> + residual, as one kernel."""
    return _epilogue_infer(c, "matmul")


# ------------------------------------------------------------------------------------ convolution
_CONV_KEYS = ("stride", "padding", "dilation", "groups")


def _conv_emit(e: EmitCtx) -> str:
    a = e.attrs
    bias = e.ins[2] if len(e.ins) > 2 else "None"
    z = (f"F.conv2d({e.ins[0]}, {e.ins[1]}, {bias}, stride={e.lit(ntuple(a.get('stride', 1), 2))}, "
         f"padding={e.lit(ntuple(a.get('padding', 0), 2))}, dilation={e.lit(ntuple(a.get('dilation', 1), 2))}, "
         f"groups={e.lit(a.get('groups', 1))})")
    return _act(e, a.get("activation", "none"), z)


@op("fused_conv2d", emit=_conv_emit)
def _fused_conv2d(c: InferCtx) -> TensorType:
    """conv2d(x, w, [b]) followed by attr ``activation``."""
    act = c.attrs.get("activation", "none")
    if act not in CONV_ACTIVATIONS:
        raise c.error(f"fused_conv2d: activation must be one of {CONV_ACTIVATIONS}, got {act!r}")
    return _sub(c, "conv2d", list(range(len(c.types))), {k: c.attrs[k] for k in _CONV_KEYS if k in c.attrs})


# ------------------------------------------------------------------------------------- attention
def _flash_emit(e: EmitCtx) -> str:
    return get("attention").emit(e)


@op("flash_attention", emit=_flash_emit)
def _flash_attention(c: InferCtx) -> TensorType:
    """Flash attention over q, k, v [B, H, T, E]: attrs causal, scale, dropout as ``attention``'s."""
    if len(c.types) != 3:
        raise c.error(f"flash_attention takes q, k, v, got {len(c.types)} inputs")
    return _sub(c, "attention", [0, 1, 2], dict(c.attrs))


# ------------------------------------------------------------------------------ row-wise kernels
def _row_infer(c: InferCtx) -> TensorType:
    """A kernel over the last axis with the unfused op's shape rules."""
    base = c.op[: -len("_kernel")]
    attrs = {"dim": -1} if "softmax" in base else dict(c.attrs)
    return _sub(c, base, list(range(len(c.types))), attrs)


def _row_emit(e: EmitCtx) -> str:
    base = e.node.op[: -len("_kernel")]
    if "softmax" in base:
        return f"torch.{base}({e.ins[0]}, dim=-1)"
    last = e.dim(e.node.inputs[0].type.shape[-1])
    eps = e.lit(float(e.attrs.get("eps", 1e-5)))
    w = e.ins[1] if len(e.ins) > 1 else "None"
    if base == "layernorm":
        return f"F.layer_norm({e.ins[0]}, ({last},), {w}, {e.ins[2] if len(e.ins) > 2 else 'None'}, {eps})"
    return f"F.rms_norm({e.ins[0]}, ({last},), {w}, {eps})"


for _name in ("layernorm_kernel", "rmsnorm_kernel", "softmax_kernel", "log_softmax_kernel"):
    op(_name, emit=_row_emit)(_row_infer)


# ---------------------------------------------------------------------------- generated kernels
def _generated_emit(e: EmitCtx) -> str:
    """One call into the generated kernel named by attr ``kernel`` (the key passes as data)."""
    scalars = ", ".join(e.lit(s) for s in e.attrs.get("scalars", ()))
    call = f"rt.generated({e.const(e.attrs['kernel'])}, [{e.args}], [{scalars}], self.training)"
    return call if len(e.node.outputs) > 1 else f"{call}[0]"


@op("generated", emit=_generated_emit)
def _generated(c: InferCtx) -> list[TensorType]:
    """A generated kernel (``passes.group``): attr ``kernel`` (its key), ``types`` (output types),
    ``scalars`` (run-time numbers over dims), ``ops`` (what it covers), ``dropout`` (largest p)."""
    types = c.attrs.get("types")
    if not types or not isinstance(c.attrs.get("kernel"), str):
        raise c.error("generated: needs attrs kernel and types")
    return list(types)
