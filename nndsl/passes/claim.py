"""Claim: stdlib ops a Triton kernel implements -> that kernel's op, behind the kernel's own guards.

attention -> flash_attention, layernorm -> layernorm_kernel, rmsnorm -> rmsnorm_kernel,
softmax -> softmax_kernel, log_softmax -> log_softmax_kernel. Each guard mirrors the checks of
the kernel's launcher (``kernels/*.py``): attention takes [B, H, T, E] with E in 16..256, v
shaped like k, as many heads in q as in k and no explicit mask; the row-wise kernels work over the
last axis; every kernel takes f32, f16 or bf16, not f64. What fails a guard stays a stdlib op (PyTorch runs it) and the reason goes to
``graph.fusion_log``. Runs after ``fuse_epilogues`` (and ``raise``), before the final ``dce``.
"""
from __future__ import annotations

from ..ir import dims as D
from ..ir.graph import Graph
from .driver import apply_rules
from .pattern import O, Reject, Rule, V
from .result import PassResult

MIN_HEAD_DIM, MAX_HEAD_DIM = 16, 256  # kernels.attention's bounds
KERNEL_DTYPES = ("f32", "f16", "bf16")


def _dtype_reason(dtype: str):
    return None if dtype in KERNEL_DTYPES else Reject("fp64 input" if dtype == "f64" else f"{dtype} input")


def _claim(ed, m, op: str):
    n = m.root
    return ed.fuse(n, [n], op, list(n.inputs), dict(n.attrs)).out


def _attention(ed, m):
    q, k, v = m.root.inputs[:3]
    if len(m.root.inputs) > 3:
        return Reject("an explicit mask (the kernel takes none, or the causal one)")
    if q.type.rank >= 3 and not D.equal(q.type.shape[-3], k.type.shape[-3]):
        return Reject(f"grouped-query attention: q has {D.dim_str(q.type.shape[-3])} heads, k and v "
                      f"{D.dim_str(k.type.shape[-3])}")
    bad = _dtype_reason(q.type.dtype)
    if bad:
        return bad
    if q.type.rank != 4:
        return Reject(f"rank-{q.type.rank} q {q.type} (the kernel takes [B, H, T, E])")
    E = q.type.shape[-1]
    if not isinstance(E, int):
        return Reject(f"head dim {D.dim_str(E)} is not a fixed size")
    if E > MAX_HEAD_DIM:
        return Reject(f"head dim {E} > {MAX_HEAD_DIM}")
    if E < MIN_HEAD_DIM:
        return Reject(f"head dim {E} < {MIN_HEAD_DIM}")
    if not v.type.same_as(k.type):
        return Reject(f"v {v.type} is not shaped like k {k.type}")
    if m.root.attrs.get("causal") and not D.equal(q.type.shape[-2], k.type.shape[-2]):
        return Reject("causal attention with different query and key lengths")
    return _claim(ed, m, "flash_attention")


def _rowwise(kernel: str):
    def rewrite(ed, m):
        n = m.root
        x = n.inputs[0]
        bad = _dtype_reason(x.type.dtype)
        if bad:
            return bad
        if "softmax" in n.op:
            d = n.attrs.get("dim", -1) % x.type.rank
            if d != x.type.rank - 1:
                return Reject(f"{n.op} over dim {d}, not the last")
            return ed.fuse(n, [n], kernel, [x], {}).out
        return _claim(ed, m, kernel)

    return rewrite


RULES = [
    # attention -> flash attention kernel ([B, H, T, E], E in 16..256, f32/f16/bf16; no mask, equal heads)
    Rule("flash attention", O.attention(V(), V(), V(), V(optional=True)), _attention),
    # layernorm / rmsnorm over the last axis -> the row-wise norm kernels
    Rule("layernorm kernel", O.layernorm(V(), V(optional=True), V(optional=True)), _rowwise("layernorm_kernel")),
    Rule("rmsnorm kernel", O.rmsnorm(V(), V(optional=True)), _rowwise("rmsnorm_kernel")),
    # softmax / log_softmax over the last axis -> the row-wise softmax kernels
    Rule("softmax kernel", O.softmax(V()), _rowwise("softmax_kernel")),
    Rule("log_softmax kernel", O.log_softmax(V()), _rowwise("log_softmax_kernel")),
]


def claim(g: Graph) -> PassResult:
    """Hand ops to their kernels where the kernel's guard holds; after fuse_epilogues."""
    return PassResult(g, apply_rules(g, RULES, "claim"))
