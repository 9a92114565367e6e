"""The launch counter: Triton launches and computing ATen ops are counted, views and allocations not."""
import torch

import nndsl.kernels as K
from nndsl.kernels.matmul import matmul_forward
from nndsl.backend.launches import at, count_launches, hook_backward, trace_lines


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


def test_execute_false_records_the_same_launches_without_running_them():
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    ran = []
    with count_launches() as run:
        ran.append(K.matmul(a, b, activation="relu"))
    out = torch.full((5, 3), float("nan"))
    with count_launches(execute=False) as skipped:
        y, _ = matmul_forward(a, b, None, "relu", out=out)
    assert skipped.by_name() == run.by_name() == {"triton:_matmul_fwd_kernel": 1}, (skipped.by_name(), run.by_name())
    assert y.data_ptr() == out.data_ptr() and torch.isnan(y).all(), "execute=False still ran the kernel"
    assert not torch.isnan(ran[0]).any()


def test_seed_draws_are_host_work_but_factories_of_real_tensors_count():
    with count_launches() as got:
        int(torch.randint(0, 2**31 - 1, ()).item())  # a dropout kernel's seed draw
        torch.zeros(4)  # a fill
        torch.ones(())  # a 0-dim fill is host work too
        torch.randint(0, 5, (3,))
    assert got.by_name() == {"aten:zeros": 1, "aten:randint": 1}, got.by_name()


def _traced(source: str, name: str = "<nndsl-forward-test>"):
    namespace: dict = {}
    exec(compile(source, name, "exec"), namespace)  # noqa: S102 - the test's own source
    return namespace["f"], name


def test_trace_lines_attributes_forward_and_backward_to_the_line_that_caused_them():
    f, name = _traced("def f(x, w):\n    y = x * w\n    z = y.exp()\n    return z.sum()\n")
    nodes = [None, 10, 11, 12]  # line n computes IR node nodes[n - 1]
    x, w = torch.randn(3, 4), torch.randn(3, 4, requires_grad=True)
    with count_launches() as got:
        with trace_lines({name: nodes}) as owners:
            loss = f(x, w)
            loss2 = loss * 2  # after the traced function returned: no line
        remove = hook_backward(loss2, owners, default=-1)
        loss2.backward()
        remove()
    seen = {(r.phase, r.node, r.name) for r in got.records}
    assert {("forward", 10, "mul"), ("forward", 11, "exp"), ("forward", 12, "sum"),
            ("forward", None, "mul")} <= seen, seen
    # exp's backward multiplies by its output; mul's by x; the outer * 2 has no line
    assert ("backward", 11, "mul") in seen and ("backward", 10, "mul") in seen and ("backward", -1, "mul") in seen, seen
    assert all(r.phase in ("forward", "backward") for r in got.records)
