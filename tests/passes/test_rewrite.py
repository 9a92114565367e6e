"""The editor (users, insert, erase, replace-all-uses, regions) and unfusing a fused node."""
from __future__ import annotations

import pytest
import torch

from nndsl.backend.torch_codegen import lower
from nndsl.errors import NndslLoweringError
from nndsl.ir.verify import verify
from nndsl.ops.fused import FUSED_OPS
from nndsl.passes import run_passes
from nndsl.passes.rewrite import Editor, unfuse

from .kit import EXAMPLES, graph, ops

SRC = """model M(x: f32[B, N], N: int = 4) -> f32[B, N] {
    h = relu(x)
    return h + tanh(h)
}"""


def test_users_insert_replace_erase():
    g = graph(SRC)
    ed = Editor(g)
    relu, tanh, add = g.nodes
    h = relu.out
    assert ed.users(h) == [tanh, add] and ed.n_uses(h) == 2 and not ed.single_use(h)
    assert ed.n_uses(add.out) == 1  # the graph output counts as a use
    sig = ed.insert_before(tanh, "sigmoid", [h])
    assert g.nodes.index(sig) == g.nodes.index(tanh) - 1 and sig.span == tanh.span
    assert str(sig.out.type) == "f32[B, 4]"
    ed.replace_all_uses(tanh.out, sig.out)
    assert add.inputs[1] is sig.out and ed.users(tanh.out) == []
    ed.erase(tanh)
    assert tanh not in g.nodes and ed.users(h) == [add, sig]
    with pytest.raises(NndslLoweringError, match="still read"):
        ed.erase(relu)
    ed.replace_all_uses(add.out, sig.out)
    assert g.outputs == [sig.out]
    verify(g)


def test_an_ill_typed_insert_is_reported_as_a_compiler_error():
    g = graph(SRC)
    with pytest.raises(NndslLoweringError, match="ill-typed matmul"):
        Editor(g).insert_before(g.nodes[0], "matmul", [g.inputs[0], g.inputs[0]])


def test_clone_region_is_detached_and_reads_placeholders():
    g = graph(SRC)
    ed = Editor(g)
    region = ed.clone_region(g.nodes, g.inputs, g.outputs)
    assert [n.op for n in region.nodes] == ["relu", "tanh", "add"]
    assert region.nodes[0].inputs == region.inputs and region.inputs[0] is not g.inputs[0]
    assert not set(map(id, region.nodes)) & set(map(id, g.nodes))
    assert region.outputs[0] is region.nodes[-1].out
    relu, tanh, add = g.nodes
    with pytest.raises(NndslLoweringError, match="not among its inputs"):
        ed.clone_region([tanh, add], [], g.outputs)  # h is read but not handed in


GPT = dict(L=2, heads=2, D=32, ctx=16)


def test_fused_nodes_keep_spans_and_regions_and_unfuse_back():
    g = run_passes(graph(EXAMPLES / "gpt_shakespeare.nn", **GPT), "triton", verify=True)
    proj = next(n for n in g.nodes if n.op == "fused_linear" and n.attrs["residual"])
    assert proj.region.ops() == ["linear", "dropout", "add"]
    assert {s.line for s in proj.covers} == {14, 23}  # the projection and dropout line, the residual line
    fc = next(n for n in g.nodes if n.op == "fused_linear" and n.attrs["activation"] == "gelu")
    assert fc.region.ops() == ["linear", "gelu"]
    flash = next(n for n in g.nodes if n.op == "flash_attention")
    assert flash.region.ops() == ["attention"]

    torch.manual_seed(0)
    fused_module, _ = lower(g)
    for n in [n for n in g.nodes if n.region is not None]:
        unfuse(g, n)
    verify(g)
    assert not set(FUSED_OPS) & set(ops(g)), dict(ops(g))
    plain_module, _ = lower(g)
    plain_module.load_state_dict(fused_module.state_dict())
    idx = torch.randint(0, 65, (2, 9))
    fused_module.eval(), plain_module.eval()
    torch.testing.assert_close(plain_module(idx), fused_module(idx), rtol=1e-5, atol=1e-5)


def test_unfuse_refuses_an_unfused_node():
    g = graph(SRC)
    with pytest.raises(NndslLoweringError, match="not a fused node"):
        unfuse(g, g.nodes[0])


def test_the_printer_shows_the_lines_a_fused_node_covers():
    g = run_passes(graph(EXAMPLES / "gpt_shakespeare.nn", **GPT), "triton")
    line = next(ln for ln in str(g).splitlines() if "fused_linear(" in ln and "residual=True" in ln)
    assert line.endswith("covers 14:12,14:20,23:9"), line
