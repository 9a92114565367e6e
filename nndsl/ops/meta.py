"""What passes need to know about every op: its kind and its effects.

* kind — ``pointwise`` (elementwise, broadcasting), ``reduction`` (over some axes), ``view``
  (moves or reinterprets data, no arithmetic), ``opaque`` (anything else: a library call),
  ``kernel`` (a fused/kernel op from ``ops.fused``).
* effects — ``pure`` (same inputs, same output: CSE may merge it, DCE may drop it), ``random``
  (draws from the RNG), ``stateful`` (updates a buffer: batchnorm's running stats), ``training``
  (behaves differently under ``self.training``). CSE and fusion never merge, drop or move an op
  that is not pure.

Some ops are random only for some attrs (``attention`` with ``dropout > 0``): ``random_attr``
names the attr, and ``effects(node)`` gives the effects of one node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

POINTWISE, REDUCTION, VIEW, OPAQUE, KERNEL = "pointwise", "reduction", "view", "opaque", "kernel"
PURE, RANDOM, STATEFUL, TRAINING = "pure", "random", "stateful", "training"


@dataclass(frozen=True)
class OpMeta:
    kind: str
    effects: frozenset
    random_attr: Optional[str] = None  # when this attr is > 0 the op is random and training-dependent


def _m(kind: str, *effects: str, random_attr: Optional[str] = None) -> OpMeta:
    return OpMeta(kind, frozenset(effects or (PURE,)), random_attr)


_PW = _m(POINTWISE)
META: dict[str, OpMeta] = {
    # arithmetic and activations
    **{name: _PW for name in (
        "add", "sub", "mul", "div", "pow", "maximum", "minimum", "add_s", "sub_s", "mul_s", "div_s", "pow_s",
        "rsub_s", "rdiv_s", "neg", "relu", "silu", "sigmoid", "tanh", "exp", "log", "sqrt", "abs", "gelu", "cast",
        "leaky_relu", "elu", "softplus", "hardswish", "rsqrt", "sin", "cos", "clamp", "where",
        "lt", "le", "gt", "ge", "eq", "ne")},
    # reductions (softmax normalizes over an axis: a reduction and a pointwise pass)
    **{name: _m(REDUCTION) for name in ("sum", "mean", "max", "min", "var", "std", "softmax", "log_softmax")},
    # views and data movement
    **{name: _m(VIEW) for name in (
        "reshape", "flatten", "permute", "transpose", "unsqueeze", "squeeze", "getitem", "split", "concat")},
    # library calls
    **{name: _m(OPAQUE) for name in (
        "matmul", "linear", "conv1d", "conv2d", "maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d", "embedding",
        "pos_embedding", "layernorm", "rmsnorm", "causal_mask", "logmel", "param", "conv_transpose1d",
        "conv_transpose2d", "upsample", "adaptive_avgpool1d", "adaptive_avgpool2d", "pad", "one_hot", "rope_angles")},
    "attention": _m(OPAQUE, random_attr="dropout"),
    "dropout": _m(POINTWISE, RANDOM, TRAINING),
    "dropout2d": _m(OPAQUE, RANDOM, TRAINING),  # one draw per channel, not per element
    "batchnorm": _m(OPAQUE, STATEFUL, TRAINING),
    # recurrent layers: dropout between layers while training
    **{name: _m(OPAQUE, random_attr="dropout") for name in ("rnn", "lstm", "gru")},
    # fused / kernel ops (ops.fused)
    **{name: _m(KERNEL, random_attr="dropout") for name in ("fused_linear", "fused_matmul", "flash_attention",
                                                           "generated")},
    **{name: _m(KERNEL) for name in (
        "fused_conv2d", "layernorm_kernel", "rmsnorm_kernel", "softmax_kernel", "log_softmax_kernel")},
    # losses (ops.loss): a scalar over every position; their kernels
    "cross_entropy_loss": _m(REDUCTION),
    **{name: _m(KERNEL) for name in ("cross_entropy_kernel", "linear_cross_entropy")},
}


def meta(op: str) -> OpMeta:
    try:
        return META[op]
    except KeyError:
        raise KeyError(f"op {op!r} has no entry in nndsl.ops.meta.META (kind and effects)") from None


def effects(node) -> frozenset:
    """The effects of one node (its op's, plus random/training when its ``random_attr`` is > 0)."""
    m = meta(node.op)
    if m.random_attr is not None and float(node.attrs.get(m.random_attr, 0.0) or 0.0) > 0.0:
        return (m.effects - {PURE}) | {RANDOM, TRAINING}
    return m.effects


def is_pure(node) -> bool:
    """True when the node may be merged, dropped or moved (no RNG, no state, no training mode)."""
    return effects(node) == frozenset({PURE})


def kind(op: str) -> str:
    return meta(op).kind
