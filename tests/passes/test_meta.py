"""ops.meta: every op has a kind and effects, and the effects say what passes may not touch."""
from __future__ import annotations

from nndsl.ir.graph import Node
from nndsl.ops import load_all, registry
from nndsl.ops.meta import KERNEL, META, POINTWISE, PURE, RANDOM, REDUCTION, STATEFUL, TRAINING, VIEW, effects, \
    is_pure, kind


def test_every_registered_op_has_an_entry_and_every_entry_is_an_op():
    load_all()
    missing = sorted(set(registry.OPS) - set(META))
    extra = sorted(set(META) - set(registry.OPS))
    assert not missing, f"ops without a kind/effects entry in nndsl.ops.meta: {missing}"
    assert not extra, f"meta entries for ops that are not registered: {extra}"
    kinds = {m.kind for m in META.values()}
    assert kinds <= {POINTWISE, REDUCTION, VIEW, "opaque", KERNEL}, kinds


def _node(op, **attrs):
    return Node(op, [], attrs, [])


def test_effects_mark_what_cse_and_fusion_must_leave_alone():
    assert effects(_node("dropout", p=0.1)) == {RANDOM, TRAINING}
    assert STATEFUL in effects(_node("batchnorm")) and TRAINING in effects(_node("batchnorm"))
    assert not is_pure(_node("attention", dropout=0.2))
    assert is_pure(_node("attention", dropout=0.0))
    assert not is_pure(_node("fused_linear", dropout=0.1)) and is_pure(_node("fused_linear", dropout=0.0))
    assert not is_pure(_node("lstm", dropout=0.5))
    assert is_pure(_node("add")) and is_pure(_node("softmax", dim=-1))
    assert PURE in effects(_node("flash_attention", dropout=0.0))


def test_kinds():
    assert kind("add") == POINTWISE and kind("transpose") == VIEW and kind("sum") == REDUCTION
    assert kind("flash_attention") == KERNEL and kind("fused_linear") == KERNEL
