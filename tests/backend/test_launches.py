"""The launch counter: Triton launches and computing ATen ops are counted, views and allocations not."""
import torch

import nndsl.kernels as K
from nndsl.backend.launches import at, count_launches


def test_eager_ops_counted_views_and_allocations_not():
    x = torch.randn(6, 5)
    with count_launches() as got:
        y = x.t().reshape(5, 6).unsqueeze(0)  # views only
        z = torch.empty(3)  # allocation only
        w = (y * 2 + 1).relu()  # three kernels
    assert got.by_name() == {"aten:mul": 1, "aten:add": 1, "aten:relu": 1}, got.by_name()
    assert z.shape == (3,) and w.shape == (1, 5, 6)


def test_triton_launches_counted_once_each_with_phase_and_node():
    a = torch.randn(5, 7, requires_grad=True)
    b = torch.randn(7, 3, requires_grad=True)
    with count_launches() as got:
        at("forward", 4)
        y = K.matmul(a, b, activation="relu")
        at("backward", 4)
        y.sum().backward()
    fwd, bwd = got.by_name("forward"), got.by_name("backward")
    assert fwd == {"triton:_matmul_fwd_kernel": 1}, fwd
    assert bwd["triton:_matmul_bwd_kernel"] == 2, bwd  # dA and dB
    assert got.total() == sum(fwd.values()) + sum(bwd.values())
    assert set(got.by_node()) == {4}
    # the interpreter's host copies are not launches
    assert not any(r.name == "copy_" for r in got.records)


def test_nested_blocks_record_in_the_innermost_and_restore_patching():
    from triton.runtime.interpreter import InterpretedFunction

    run = InterpretedFunction.run
    x = torch.randn(4)
    with count_launches() as outer:
        x + 1
        with count_launches() as inner:
            x * 3
    assert outer.by_name() == {"aten:add": 1} and inner.by_name() == {"aten:mul": 1}
    assert InterpretedFunction.run is run
