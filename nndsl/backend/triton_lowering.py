"""The Triton backend's lowering table: each kernel op of the IR -> one call into ``nndsl.kernels``.

The triton pass pipeline (``nndsl.passes.PIPELINES["triton"]``) leaves the graph made of kernel
ops (``fused_linear``, ``flash_attention``, ``layernorm_kernel`` ...; see ``nndsl.ops.fused``) and
ordinary ops. Ordinary ops keep their PyTorch lowering (``registry.emitter`` falls back to it);
the kernel ops are lowered here to the custom ops of ``nndsl.kernels.library`` — registered
through ``torch.library``, so ``torch.compile`` over a compiled model traces them without a graph
break and autograd runs their Triton backward kernels.

Dropout inside a kernel is active only while the module trains: the generated call passes
``p if self.training else 0.0``; the kernel draws its Philox seed from torch's generator, so
``seed`` and ``--resume`` reproduce the masks.

Importing this module registers the table (``compiler.build`` does, for ``backend="triton"``).
"""
from __future__ import annotations

from ..ops.fused import ACTIVATIONS
from ..ops.nn import ntuple
from ..ops.registry import EmitCtx, register_lowering

BACKEND = "triton"


def _act(e: EmitCtx) -> str:
    act = e.attrs.get("activation", "none")
    assert act in ACTIVATIONS, act  # the op's inference checked it
    return e.lit(None if act == "none" else act)


def _dropout(e: EmitCtx) -> str:
    """The dropout keyword of a kernel call, live only in training (empty when p == 0)."""
    p = float(e.attrs.get("dropout", 0.0))
    return f", dropout_p=({e.lit(p)} if self.training else 0.0)" if p > 0.0 else ""


def _epilogue(e: EmitCtx, weight_is_linear: bool) -> str:
    a = e.attrs
    bias = e.ins[2] if a.get("bias") else "None"
    residual = e.ins[-1] if a.get("residual") else "None"
    b = f"{e.ins[1]}.t()" if weight_is_linear else e.ins[1]  # linear's weight is [out, in]: a view
    return f"kern.library.matmul({e.ins[0]}, {b}, {bias}, {_act(e)}, {residual}{_dropout(e)})"


def _conv(e: EmitCtx) -> str:
    a = e.attrs
    bias = e.ins[2] if len(e.ins) > 2 else "None"
    return (f"kern.library.conv2d({e.ins[0]}, {e.ins[1]}, {bias}, {e.lit(ntuple(a.get('stride', 1), 2))}, "
            f"{e.lit(ntuple(a.get('padding', 0), 2))}, {e.lit(ntuple(a.get('dilation', 1), 2))}, "
            f"{e.lit(int(a.get('groups', 1)))}, {_act(e)})")


def _attention(e: EmitCtx) -> str:
    scale = e.attrs.get("scale")
    return (f"kern.library.attention({e.args}, {e.lit(bool(e.attrs.get('causal', False)))}, "
            f"{e.lit(None if scale is None else float(scale))}{_dropout(e)})")


def _layernorm(e: EmitCtx) -> str:
    w = e.ins[1] if len(e.ins) > 1 else "None"
    b = e.ins[2] if len(e.ins) > 2 else "None"
    return f"kern.library.layer_norm({e.ins[0]}, {w}, {b}, {e.lit(float(e.attrs.get('eps', 1e-5)))})"


def _rmsnorm(e: EmitCtx) -> str:
    w = e.ins[1] if len(e.ins) > 1 else "None"
    return f"kern.library.rms_norm({e.ins[0]}, {w}, {e.lit(float(e.attrs.get('eps', 1e-6)))})"


def _linear(e: EmitCtx) -> str:
    """A linear with no epilogue (qkv, lm_head) on the matmul kernel too, where it takes the dtype."""
    if e.node.inputs[0].type.dtype not in KERNEL_DTYPES:
        return f"F.linear({e.ins[0]}, {e.ins[1]}, {e.ins[2] if len(e.ins) > 2 else 'None'})"
    bias = e.ins[2] if len(e.ins) > 2 else "None"
    return f"kern.library.matmul({e.ins[0]}, {e.ins[1]}.t(), {bias}, None, None)"


def _cross_entropy(e: EmitCtx) -> str:
    """The mean over every row in float32, as the torch reference (low-precision logits upcast first)."""
    logits = e.ins[0] if e.node.inputs[0].type.dtype == "f32" else f"{e.ins[0]}.float()"
    return f"kern.library.cross_entropy({logits}, {e.ins[1]}.long())"


def _linear_cross_entropy(e: EmitCtx) -> str:
    bias = e.ins[2] if e.attrs.get("bias") else "None"
    return f"kern.library.linear_cross_entropy({e.ins[0]}, {e.ins[1]}, {e.ins[-1]}.long(), {bias})"


KERNEL_DTYPES = ("f32", "f16", "bf16")  # what every kernel family takes (not f64, not integers)

# kernel op -> its lowering (one kernel-family call each)
LOWERINGS = {
    "linear": _linear,                                               # x @ wᵀ + b on the matmul kernel
    "fused_linear": lambda e: _epilogue(e, weight_is_linear=True),   # x @ wᵀ + b -> act -> dropout -> + r
    "fused_matmul": lambda e: _epilogue(e, weight_is_linear=False),  # a @ b + b -> act -> dropout -> + r
    "fused_conv2d": _conv,                                           # implicit-GEMM conv + bias + act
    "flash_attention": _attention,                                   # FlashAttention-2 (+ dropout)
    "layernorm_kernel": _layernorm,                                  # one pass per row
    "rmsnorm_kernel": _rmsnorm,
    "softmax_kernel": lambda e: f"kern.library.softmax({e.ins[0]})",          # over the last axis
    "log_softmax_kernel": lambda e: f"kern.library.log_softmax({e.ins[0]})",  # over the last axis
    "cross_entropy_kernel": _cross_entropy,                          # fused log-softmax + NLL, mean
    "linear_cross_entropy": _linear_cross_entropy,                   # chunked: no [N, C] logits
}

for _op, _emit in LOWERINGS.items():
    register_lowering(BACKEND, _op, _emit)
