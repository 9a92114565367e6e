"""Attention builtins: scaled dot-product attention (optional mask, grouped-query heads) and rotary
position embeddings, written as IR ops (``ops.attention``) and plain arithmetic."""
from __future__ import annotations

from ..errors import NndslTypeError
from ..ir.builder import Builder
from ..ir.graph import Value
from .nn import describe
from .registry import builtin


@builtin("attention", "q: tensor, k: tensor, v: tensor, causal: bool = false, scale: any = none, "
                      "dropout: float = 0.0, mask: tensor? = none")
def attention(b: Builder, q, k, v, causal, scale, dropout, mask):
    """Scaled dot-product attention (F.scaled_dot_product_attention): [..., H, T, E] inputs; k, v may have
    fewer heads than q (grouped-query); mask: bool (true = attend) or additive, broadcasting to [..., Tq, Tk]."""
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise b.error(f"attention's argument 'scale' must be a number or none, got {scale!r}", cls=NndslTypeError)
    if not 0.0 <= dropout <= 1.0:
        raise b.error(f"attention: dropout must be in [0, 1], got {dropout}", cls=NndslTypeError)
    ins = [q, k, v] + ([mask] if isinstance(mask, Value) else [])
    return b.op("attention", ins, {"causal": causal, "scale": None if scale is None else float(scale),
                                   "dropout": dropout})


@builtin("rope", "x: tensor, base: float = 10000.0")
def rope(b: Builder, x, base):
    """Rotary position embedding of x [..., T, E] (positions 0..T-1 along dim -2, E even), rotating
    the pairs (x[i], x[i + E/2]) by t * base^(-2i/E) (the GPT-NeoX / Llama "rotate half" layout)."""
    t = x.type
    if t.rank < 2:
        raise b.error(f"rope expects [..., T, E] (positions along dim -2), got {describe(x)}")
    if not t.is_float:
        raise b.error(f"rope expects a floating-point input, got {describe(x)}",
                      f"cast({x.name or 'x'}, \"f32\") first", NndslTypeError)
    E = t.shape[-1]
    if not isinstance(E, int) or E % 2:
        raise b.error(f"rope needs a fixed, even last dim (pairs of features rotate together), got {describe(x)}")
    if base <= 0:
        raise b.error(f"rope: base must be positive, got {base}", cls=NndslTypeError)
    half = E // 2
    angles = b.op("rope_angles", [x], {"T": t.shape[-2], "half": half, "base": base})
    cos, sin = b.op("cos", [angles]), b.op("sin", [angles])
    if angles.type.dtype != t.dtype:
        cos, sin = (b.op("cast", [c], {"dtype": t.dtype}) for c in (cos, sin))
    x1, x2 = b.op("split", [x], {"sizes": (half, half), "dim": -1})
    lo = b.op("sub", [b.op("mul", [x1, cos]), b.op("mul", [x2, sin])])
    hi = b.op("add", [b.op("mul", [x2, cos]), b.op("mul", [x1, sin])])
    return b.op("concat", [lo, hi], {"dim": -1})
