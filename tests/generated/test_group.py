"""The group pass on small programs: what becomes one generated kernel, and what stays."""
from __future__ import annotations

import pytest

from nndsl.passes import run_passes

from .kit import graph, ops

PROG = """model M(x: f32[B, T, N], y: f32[N], N: int = 6) -> {out} {{
{body}
}}"""


def _g(body: str, out: str = "f32[B, T, N]"):
    return run_passes(graph(PROG.format(body=body, out=out)), "triton", verify=True)


def _regions(g):
    return [tuple(n.attrs["ops"]) for n in g.nodes if n.op == "generated"]


def test_a_chain_with_a_broadcast_input_is_one_kernel_keeping_every_span():
    g = _g("    h = tanh(x * y + 1.0)\n    return h * sigmoid(h)")
    assert _regions(g) == [("mul", "add_s", "tanh", "sigmoid", "mul")]
    (n,) = g.nodes
    assert sorted({s.line for s in n.covers}) == [2, 3]
    assert [m.op for m in n.region.nodes] == ["mul", "add_s", "tanh", "sigmoid", "mul"]


def test_a_value_read_outside_becomes_a_second_output():
    g = _g("    h = tanh(x * 2.0)\n    return h + linear(h, N)")
    gen = [n for n in g.nodes if n.op == "generated"]
    assert len(gen) == 1 and len(gen[0].outputs) == 1, [n.op for n in g.nodes]
    # tanh's value is read by the linear and by the add: the add is the linear's epilogue residual
    assert ops(g)["fused_linear"] == 1


def test_hand_written_rmsnorm_is_one_row_kernel():
    g = _g("    return x * (mean(x ** 2, dim=-1, keepdim=true) + 1e-5) ** -0.5 * y")
    assert _regions(g) == [("pow_s", "mean", "add_s", "pow_s", "mul", "mul")]


def test_two_reduction_levels_in_one_kernel():
    g = _g("    c = x - mean(x, dim=-1, keepdim=true)\n"
           "    return c * (mean(c * c, dim=-1, keepdim=true) + 1e-5) ** -0.5")
    assert _regions(g) == [("mean", "sub", "mul", "mean", "add_s", "pow_s", "mul")]


@pytest.mark.parametrize("body,why", [
    ("    return sum(x * 2.0, dim=1, keepdim=true)", "over an axis other than the last"),
    ("    return cast(cast(x * 2.0, \"i32\"), \"f32\")", "i32 values"),
])
def test_what_stays_on_pytorch_is_logged(body, why):
    out = "f32[B, 1, N]" if "sum" in body else "f32[B, T, N]"
    g = _g(body, out)
    assert _regions(g) == []
    assert any(why in note.reason for note in g.fusion_log), g.fusion_log


def test_a_lone_op_is_left_alone():
    g = _g("    return relu(x)")
    assert ops(g) == {"relu": 1}


def test_no_cycle_through_an_op_outside_the_group():
    # a -> linear -> b, and a -> b directly: a and b in one kernel would have to run before and after the linear
    g = _g("    a = tanh(x * 2.0)\n    b = linear(a, N, bias=false)\n    return sigmoid(a * 3.0) * b")
    order = [n.op for n in g.nodes]
    assert order.index("linear") > 0 and "generated" in order
    for n in g.nodes:  # every value is made before it is read
        for v in n.inputs:
            assert v.producer is None or g.nodes.index(v.producer) < g.nodes.index(n)


def test_dropout_joins_only_over_the_full_space():
    g = _g("    return dropout(mean(x * 2.0, dim=-1), 0.1) * 3.0", "f32[B, T]")
    regions = _regions(g)
    assert all("dropout" not in r or r[0] == "dropout" for r in regions), regions
    assert not any(("mean" in r and "dropout" in r) for r in regions), regions


def test_batchnorm_and_int_ops_never_join():
    src = """model M(x: f32[B, 4, 5, 5]) -> f32[B, 4, 5, 5] {
        return relu(batchnorm(x * 2.0)) * 3.0
    }"""
    g = run_passes(graph(src), "triton", verify=True)
    assert ops(g)["batchnorm"] == 1
    assert all("batchnorm" not in n.attrs.get("ops", ()) for n in g.nodes if n.op == "generated")


def test_generated_off_by_environment(monkeypatch):
    monkeypatch.setenv("NNDSL_GENERATED", "0")
    g = _g("    return tanh(x * y + 1.0)")
    assert _regions(g) == [] and ops(g)["tanh"] == 1


def test_identical_regions_share_one_kernel():
    src = """block Norm(x: f32[B, T, D]) -> f32[B, T, D] {
        return x * (mean(x ** 2, dim=-1, keepdim=true) + 1e-5) ** -0.5
    }
    model M(x: f32[B, T, D], D: int = 8, L: int = 3) -> f32[B, T, D] {
        repeat L as blocks {
            x = Norm(x) + linear(x, D)
        }
        return Norm(x)
    }"""
    g = run_passes(graph(src), "triton", verify=True)
    keys = [n.attrs["kernel"] for n in g.nodes if n.op == "generated"]
    assert len(keys) == 4 and len(set(keys)) == 1, keys


def test_one_kernel_serves_every_size_and_dim_dependent_scalars_are_arguments():
    import torch

    import nndsl
    from nndsl.backend.triton_gen import cache

    src = """model M(x: f32[B, T, N], N: int = 5) -> f32[B, T, N] {
        return tanh(x / T) * 2.0
    }"""
    m = nndsl.compile(src, backend="triton")
    (node,) = m.nndsl_graphs["triton"].nodes
    assert len(node.attrs["scalars"]) == 1  # 1/T (or x/T) is a run-time argument, not a constant
    before = dict(cache.STATS)
    for B, T in ((2, 3), (4, 7), (1, 1)):
        x = torch.randn(B, T, 5)
        torch.testing.assert_close(m(x), torch.tanh(x / T) * 2.0)
    generated = cache.STATS["generated"] - before["generated"]
    assert generated <= 1, f"{generated} kernels generated for one region"


def test_a_row_kernel_takes_its_prologue_and_epilogue():
    """bias + dropout + residual + layernorm: one generated kernel, not a pointwise kernel and a norm
    kernel; a lone layernorm stays on its hand-written kernel."""
    src = """model M(h: f32[B, T, N], b: f32[N], r: f32[B, T, N], N: int = 6) -> f32[B, T, N] {
        return layernorm(r + dropout(h + b, 0.1)) * 2.0
    }"""
    g = run_passes(graph(src), "triton", verify=True)
    assert _regions(g) == [("add", "dropout", "add", "layernorm_kernel", "mul_s")], [n.op for n in g.nodes]
    assert [m.op for m in g.nodes[-1].region.nodes if m.op != "param"] == ["add", "dropout", "add", "layernorm", "mul_s"]
    lone = _g("    return layernorm(x)")
    assert ops(lone)["layernorm_kernel"] == 1 and _regions(lone) == []
