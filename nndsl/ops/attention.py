"""Attention ops: scaled dot-product attention (with an optional mask and grouped-query heads) and
the angle table of rotary position embeddings.

``attention`` takes ``[q, k, v]`` or ``[q, k, v, mask]``. Grouped-query attention is the same op:
k and v may have fewer heads (dim -3) than q, a divisor of q's, and query head ``h`` reads key/value
head ``h // (Hq / Hkv)`` (``enable_gqa=True`` of F.scaled_dot_product_attention).
The Triton pipeline's ``claim`` pass hands only the plain form (no mask, equal heads) to its kernel.
"""
from __future__ import annotations

from ..ir import dims as D
from ..ir.types import TensorType
from .core import same_dtype
from .registry import EmitCtx, InferCtx, InferError, op


def _causal_keep(e: EmitCtx, q: TensorType, k: TensorType) -> str:
    """[Tq, Tk] bool: True on and below the diagonal (aligned top-left, as is_causal)."""
    return (f"torch.ones({e.dim(q.shape[-2])}, {e.dim(k.shape[-2])}, dtype=torch.bool, "
            f"device={e.ins[0]}.device).tril()")


def _attn_emit(e: EmitCtx) -> str:
    p = float(e.attrs.get("dropout", 0.0))
    drop = f"({e.lit(p)} if self.training else 0.0)" if p > 0 else "0.0"
    scale = e.attrs.get("scale")
    causal = bool(e.attrs.get("causal", False))
    q, k = e.node.inputs[0].type, e.node.inputs[1].type
    extra = ""
    if len(e.ins) > 3:  # an explicit mask; with causal=true both apply
        mask = e.ins[3]
        if causal:
            keep = _causal_keep(e, q, k)
            mask = (f"torch.logical_and({mask}, {keep})" if e.node.inputs[3].type.dtype == "bool"
                    else f"torch.where({keep}, {mask}, {e.lit(float('-inf'))})")
            causal = False
        extra += f", attn_mask={mask}"
    if q.rank >= 3 and not D.equal(q.shape[-3], k.shape[-3]):
        extra += ", enable_gqa=True"
    return (f"F.scaled_dot_product_attention({e.ins[0]}, {e.ins[1]}, {e.ins[2]}{extra}, dropout_p={drop}, "
            f"is_causal={e.lit(causal)}, scale={e.lit(None if scale is None else float(scale))})")


def _check_heads(c: InferCtx, q: TensorType, k: TensorType, v: TensorType) -> None:
    """Batch dims of k and v match; q's match k's except the heads (dim -3), a multiple of k's."""
    if not all(D.equal(a, b) for a, b in zip(k.shape[:-2], v.shape[:-2])):
        raise c.error(f"attention: batch dims of k and v must match: {c.describe(1)}, {c.describe(2)}")
    for ax in range(q.rank - 2):
        a, b = q.shape[ax], k.shape[ax]
        if D.equal(a, b):
            continue
        if ax == q.rank - 3:
            if isinstance(a, int) and isinstance(b, int) and a % b == 0:
                continue
            raise c.error(f"attention: q has {D.dim_str(a)} heads (dim {ax}) and k, v have {D.dim_str(b)}; "
                          f"grouped-query attention needs k/v heads that divide q's ({c.describe(0)}, "
                          f"{c.describe(1)})")
        raise c.error(f"attention: batch dims of q, k, v must match: {c.describe(0)}, {c.describe(1)}, "
                      f"{c.describe(2)}")


def _check_mask(c: InferCtx, q: TensorType, k: TensorType) -> None:
    """The mask is bool (True: attend) or additive in q's dtype, and broadcasts to [..., Tq, Tk]."""
    m = c.types[3]
    if m.dtype != "bool" and m.dtype != q.dtype:
        raise c.type_error(f"attention: the mask must be bool (true = attend) or {q.dtype} (added to the "
                           f"scores), got {c.describe(3)}")
    scores = TensorType(list(q.shape[:-1]) + [k.shape[-2]], q.dtype)
    try:
        fits = m.rank <= scores.rank and all(D.equal(a, b) for a, b in zip(c.broadcast(m, scores), scores.shape))
    except InferError:
        fits = False
    if not fits:
        raise c.error(f"attention: the mask {c.describe(3)} does not broadcast to the scores "
                      f"{D.shape_str(scores.shape)} ([..., Tq, Tk])")


@op("attention", emit=_attn_emit)
def _attention(c: InferCtx) -> TensorType:
    """softmax(q k^T * scale [+ mask]) v: q [..., Hq, Tq, E], k [..., Hkv, Tk, E], v [..., Hkv, Tk, Ev]
    -> [..., Hq, Tq, Ev]; Hkv divides Hq (grouped-query attention). Optional 4th input: a mask, bool
    (true = attend) or additive, broadcasting to [..., Tq, Tk]. attrs: causal (bool; aligned top-left,
    combined with the mask when both are given), scale (None: 1/sqrt(E)), dropout (p while training)."""
    if len(c.types) not in (3, 4):
        raise c.error("attention takes q, k, v and an optional mask")
    q, k, v = c.types[:3]
    dtype = same_dtype(c, 0, 1, 2)
    c.expect_float(0)
    for i in range(3):
        c.expect_rank(i, 2, 3, 4, 5, what=("query", "key", "value")[i])
    if not q.rank == k.rank == v.rank:
        raise c.error(f"attention: q, k, v must have the same rank: {c.describe(0)}, {c.describe(1)}, "
                      f"{c.describe(2)}")
    _check_heads(c, q, k, v)
    if not D.equal(q.shape[-1], k.shape[-1]):
        raise c.error(f"attention: q and k must have the same last dim, got {c.describe(0)} and {c.describe(1)}")
    if not D.equal(k.shape[-2], v.shape[-2]):
        raise c.error(f"attention: k and v must have the same length (dim -2), got {c.describe(1)} and "
                      f"{c.describe(2)}")
    if len(c.types) == 4:
        _check_mask(c, q, k)
    return TensorType(list(q.shape[:-1]) + [v.shape[-1]], dtype)


# --------------------------------------------------------------------------------- rotary angles
def _rope_angles_emit(e: EmitCtx) -> str:
    dt = f"torch.promote_types({e.ins[0]}.dtype, torch.float32)"
    pos = f"torch.arange({e.dim(e.attrs['T'])}, device={e.ins[0]}.device, dtype={dt})"
    half = int(e.attrs["half"])
    inv = (f"{e.lit(float(e.attrs['base']))} ** (torch.arange({half}, device={e.ins[0]}.device, dtype={dt}) "
           f"* {e.lit(-1.0 / half)})")
    return f"torch.outer({pos}, {inv})"


@op("rope_angles", emit=_rope_angles_emit)
def _rope_angles(c: InferCtx) -> TensorType:
    """[T, half] rotary angles t * base^(-i/half) for positions t < T (attr ``T``, a dim) and
    frequencies i < half (attr ``half``), computed in f32 (f64 for an f64 input); attr ``base``.
    The one input only says which device (and precision) the table takes."""
    T, half, base = c.attrs["T"], c.attrs.get("half"), c.attrs.get("base")
    if not isinstance(half, int) or half <= 0:
        raise c.error(f"rope_angles: half must be a positive int, got {half!r}")
    if isinstance(base, bool) or not isinstance(base, (int, float)) or base <= 0:
        raise c.error(f"rope_angles: base must be a positive number, got {base!r}")
    if isinstance(T, int) and T <= 0:
        raise c.error(f"rope_angles: the length must be positive, got {T}")
    return TensorType((T, half), "f64" if c.types[0].dtype == "f64" else "f32")
