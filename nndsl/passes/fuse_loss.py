"""Fuse the loss: cross-entropy over a model's last projection -> the fused linear + cross-entropy
kernel (the [N, classes] logits never exist in training); any other cross-entropy -> the fused
cross-entropy kernel.

Only an objective graph (``nndsl.objective``) holds a loss op, so a model's ``forward`` is never
touched. The projection joins the loss only when nothing else reads its logits and it has no
epilogue (an activation, dropout or residual add would sit between the matmul and the loss). The
kernels take f32, f16 and bf16 logits, not f64, and have no label smoothing; what fails a guard
stays ``cross_entropy_loss`` (PyTorch runs it) and the reason goes to ``graph.fusion_log``.
Runs after ``fuse_epilogues`` (which leaves a plain linear as ``linear``, or as ``fused_linear``
with a bias folded in), before ``claim``.
"""
from __future__ import annotations

from ..ir.graph import FusionNote, Graph
from .claim import KERNEL_DTYPES
from .driver import apply_rules
from .pattern import O, Reject, Rule, V
from .result import PassResult

_WORDS = {2: "two", 3: "three", 4: "four"}


def _kernel_reason(m):
    """Why the loss at ``m.root`` cannot run on a kernel at all (None: it can)."""
    logits = m.root.inputs[0].type
    if logits.dtype not in KERNEL_DTYPES:
        return Reject("fp64 logits" if logits.dtype == "f64" else f"{logits.dtype} logits")
    ls = float(m.root.attrs.get("label_smoothing", 0.0))
    if ls:
        return Reject(f"label smoothing {ls:g} (the kernels have none)")
    return None


def _epilogue(z) -> str:
    """What a fused_linear adds after its matmul and bias ("" when nothing)."""
    a = z.producer.attrs
    if a.get("activation", "none") != "none":
        return f"a {a['activation']} activation"
    if float(a.get("dropout", 0.0)) > 0:
        return "a dropout"
    return "a residual add" if a.get("residual") else ""


def _projection_reason(ed, z):
    """Why the linear computing the logits ``z`` cannot join the loss (None: it can)."""
    if z.producer.op == "fused_linear" and _epilogue(z):
        return Reject(f"{_epilogue(z)} between the linear and the loss")
    if not ed.single_use(z):
        n = ed.n_uses(z)
        return Reject(f"the logits are used elsewhere ({_WORDS.get(n, n)} users)")
    return None


def _linear_ce(ed, m):
    z, y = m["z"], m["y"]
    bad = _kernel_reason(m) or _projection_reason(ed, z)
    if bad:
        return bad
    lin = z.producer
    has_bias = len(lin.inputs) > 2 if lin.op == "linear" else bool(lin.attrs.get("bias"))
    h, w = lin.inputs[:2]
    ins = [h, w] + ([lin.inputs[2]] if has_bias else []) + [y]
    if any(v.type.dtype != h.type.dtype for v in ins[:-1]):
        return Reject("the input, weight and bias differ in dtype")
    return ed.fuse(m.root, m.nodes, "linear_cross_entropy", ins, {"bias": has_bias}).out


def _ce(ed, m):
    bad = _kernel_reason(m)
    if bad:
        return bad
    n = m.root
    z = n.inputs[0]
    if z.producer is not None and z.producer.op in ("linear", "fused_linear"):  # the first rule said no: say why
        why = _projection_reason(ed, z)
        if why:
            spans = tuple(s for s in (z.producer.span, n.span) if s is not None)
            ed.g.fusion_log.append(FusionNote(spans, f"fuse_loss: {RULES[0].name}", why.reason))
    return ed.fuse(n, [n], "cross_entropy_kernel", list(n.inputs), {}).out


RULES = [
    # cross_entropy(linear(h, w [, b]), y), logits read by nothing else -> fused linear + cross-entropy
    Rule("linear + cross_entropy", O.cross_entropy_loss(O("linear|fused_linear").named("z"), V("y")), _linear_ce),
    # cross_entropy(logits, y) -> fused cross-entropy kernel
    Rule("cross_entropy kernel", O.cross_entropy_loss(V(), V()), _ce),
]


def fuse_loss(g: Graph) -> PassResult:
    """Hand the loss (and the projection feeding it) to its kernels; after fuse_epilogues, before claim."""
    return PassResult(g, apply_rules(g, RULES, "fuse_loss"))
