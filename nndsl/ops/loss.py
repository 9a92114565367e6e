"""Loss ops: a model's outputs and its targets -> one scalar, so the training objective is IR too.

=======================  ===============================  ==========================================
op                       inputs                           attrs
=======================  ===============================  ==========================================
cross_entropy_loss       logits [..., C], target [...]    label_smoothing (float in [0, 1))
cross_entropy_kernel     logits [..., C], target [...]    (the fused cross-entropy kernel)
linear_cross_entropy     h [..., D], w [C, D], [b [C]],   bias (bool): the fused linear +
                         target [...]                     cross-entropy kernel (no [N, C] logits)
=======================  ===============================  ==========================================

Each gives ``f32[]``: the mean over every position of the target, computed in float32 whatever the
logits' dtype. ``cross_entropy_loss`` is what an objective is written in (``nndsl.objective``);
the other two are what ``passes.fuse_loss`` rewrites it into for the Triton backend. The torch
emit of all three is the very expression ``runtime.losses.cross_entropy`` evaluates
(``F.cross_entropy(logits.reshape(-1, C).float(), target.reshape(-1).long(), ...)``), so the
torch objective's loss equals ``losses.cross_entropy(forward(x), y)`` bit for bit.
"""
from __future__ import annotations

from ..ir import dims as D
from ..ir.types import INT_DTYPES, TensorType
from .fused import _sub
from .registry import EmitCtx, InferCtx, op

LOSS_TYPE = TensorType((), "f32")


def _check_targets(c: InferCtx, logits: TensorType, i: int) -> TensorType:
    """Integer targets shaped like the logits without their class axis; the loss type."""
    t = c.types[i]
    if not logits.is_float:
        raise c.type_error(f"{c.op} takes floating-point logits, got {logits}")
    if logits.rank < 1:
        raise c.error(f"{c.op} takes logits [..., classes], got the scalar {logits}")
    if t.dtype not in INT_DTYPES:
        raise c.type_error(f"{c.op} takes integer class labels as targets, got {c.describe(i)}",
                           "for real-valued targets use mse")
    want = logits.shape[:-1]
    if t.rank != len(want) or not all(D.equal(a, b) for a, b in zip(t.shape, want)):
        raise c.error(f"{c.op}: targets {c.describe(i)} do not fit the logits {logits} "
                      f"(expected targets {D.shape_str(want)})")
    return LOSS_TYPE


def _ce(e: EmitCtx, logits: str, target: str, classes) -> str:
    """losses.cross_entropy's expression (``label_smoothing`` only when the op has one)."""
    ls = float(e.attrs.get("label_smoothing", 0.0))
    smoothing = f", label_smoothing={e.lit(ls)}" if ls else ""
    return f"F.cross_entropy({logits}.reshape(-1, {e.dim(classes)}).float(), {target}.reshape(-1).long(){smoothing})"


def _ce_emit(e: EmitCtx) -> str:
    return _ce(e, e.ins[0], e.ins[1], e.node.inputs[0].type.shape[-1])


@op("cross_entropy_loss", emit=_ce_emit)
def _cross_entropy_loss(c: InferCtx) -> TensorType:
    """Mean cross-entropy of integer targets [...] under logits [..., C], over every position (f32[])."""
    if len(c.types) != 2:
        raise c.error(f"cross_entropy_loss takes logits and targets, got {len(c.types)} inputs")
    ls = c.attrs.get("label_smoothing", 0.0)
    if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not 0.0 <= ls < 1.0:
        raise c.error(f"cross_entropy_loss: label_smoothing must be in [0, 1), got {ls!r}")
    return _check_targets(c, c.types[0], 1)


@op("cross_entropy_kernel", emit=_ce_emit)
def _cross_entropy_kernel(c: InferCtx) -> TensorType:
    """cross_entropy_loss (no label smoothing) as the fused cross-entropy kernel."""
    if len(c.types) != 2:
        raise c.error(f"cross_entropy_kernel takes logits and targets, got {len(c.types)} inputs")
    return _check_targets(c, c.types[0], 1)


def _linear_ce_emit(e: EmitCtx) -> str:
    bias = e.ins[2] if e.attrs.get("bias") else "None"
    logits = f"F.linear({e.ins[0]}, {e.ins[1]}, {bias})"
    return _ce(e, logits, e.ins[-1], e.node.inputs[1].type.shape[0])


@op("linear_cross_entropy", emit=_linear_ce_emit)
def _linear_cross_entropy(c: InferCtx) -> TensorType:
    """cross_entropy_loss(linear(h, w, [b]), target) as one chunked kernel that never holds the logits."""
    n = 3 + bool(c.attrs.get("bias"))
    if len(c.types) != n:
        raise c.error(f"linear_cross_entropy: expected {n} inputs (bias={bool(c.attrs.get('bias'))}), "
                      f"got {len(c.types)}")
    logits = _sub(c, "linear", list(range(n - 1)), {})
    return _check_targets(c, logits, n - 1)
