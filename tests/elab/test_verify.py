"""The IR verifier: accepts what elaboration builds, rejects each broken invariant by name."""
from __future__ import annotations

import pytest

from nndsl.errors import NndslLoweringError, Span
from nndsl.ir import dims as D
from nndsl.ir.builder import Builder
from nndsl.ir.graph import Graph, Node
from nndsl.ir.types import TensorType
from nndsl.ir.verify import verify
from nndsl.passes import PassResult, run_passes

HERE = Span("t.nn", 4, 7, 4, 9)


def small() -> Graph:
    """x: f32[B, 3] -> t_linear(x, 5) + 1 -> t_relu; with one parameter pair."""
    g = Graph("G", symbols=["B"])
    b = Builder(g)
    x = g.add_input("x", TensorType((D.symbol("B"), 3)))
    with b.at(HERE), b.child("fc"):
        w = b.param("weight", (5, 3), init="zeros")
        y = b.op("t_linear", [x, w])
    with b.at(HERE):
        z = b.op("add_s", [y], {"value": 1})
        g.outputs = [b.op("t_relu", [z])]
    return g


def broken(match: str, g: Graph) -> NndslLoweringError:
    with pytest.raises(NndslLoweringError, match=match) as ei:
        verify(g)
    return ei.value


def test_a_good_graph_verifies():
    g = small()
    assert verify(g) is None
    assert [n.op for n in g.nodes] == ["param", "t_linear", "add_s", "t_relu"]


def test_use_before_definition():
    g = small()
    g.nodes[1], g.nodes[2] = g.nodes[2], g.nodes[1]
    x = broken(r"node 1 `.*add_s.*`: input %\d+ is used before it is defined", g)
    assert x.span == HERE and "t.nn:4:7" in str(x)


def test_value_from_another_graph_is_undefined():
    g, other = small(), small()
    g.nodes[2].inputs = [other.nodes[1].out]
    broken("used before it is defined", g)


def test_value_defined_twice():
    g = small()
    g.nodes.append(g.nodes[2])
    broken(r"value %\d+ is defined twice", g)
    g = small()
    g.inputs.append(g.inputs[0])
    broken("defined twice", g)


def test_unregistered_op():
    g = small()
    g.nodes[3].op = "frobnicate"
    broken("node 3 .*op 'frobnicate' is not registered", g)


def test_param_node_must_name_a_declared_param_of_the_same_type():
    g = small()
    g.nodes[0].attrs["name"] = "fc.wieght"
    broken("reads 'fc.wieght', which is not a declared parameter", g)
    g = small()
    g.params["fc.weight"].shape = (5, 4)
    broken(r"param node's type f32\[5, 3\] differs from the declared f32\[5, 4\] of 'fc.weight'", g)


def test_inference_must_reproduce_output_types():
    g = small()
    g.nodes[2].outputs[0].type = TensorType((D.symbol("B"), 6))
    broken(r"add_s's shape inference gives \(f32\[B, 5\]\) but the node's outputs are \(f32\[B, 6\]\)", g)
    g = small()
    g.nodes[3].op, g.nodes[3].attrs = "t_split", {"n": 4, "dim": -1}  # 5 columns do not split in 4
    broken("t_split's shape inference rejects its inputs: t_split: 5 is not divisible by 4", g)
    g = small()
    extra = g.new_value(TensorType((2,)))
    g.nodes[3].outputs.append(extra)
    broken("the node's outputs are", g)


def test_outputs_must_be_defined():
    g = small()
    g.outputs = [g.new_value(TensorType((1,)))]
    broken(r"graph output %\d+ is not defined", g)


def test_symbols_must_be_declared():
    g = small()
    g.symbols = []
    broken(r"uses symbol\(s\) B not in graph.symbols", g)
    g = small()
    T = D.symbol("T")
    n = g.add_node("neg", [g.outputs[0]], {}, [TensorType((T, 5))])
    g.outputs = [n.out]
    broken("neg's shape inference gives", g)


def test_verify_runs_between_passes():
    from nndsl import passes

    def bad_pass(g: Graph) -> PassResult:
        g.nodes.append(Node("frobnicate", [], {}, []))
        return PassResult(g, True)

    passes.PIPELINES["t_verify"] = [passes.dead_code_elimination, bad_pass]
    try:
        with pytest.raises(NndslLoweringError, match="pass bad_pass failed .after: dead_code_elimination.*"
                                                     "op 'frobnicate' is not registered"):
            run_passes(small(), "t_verify", verify=True)
        run_passes(small(), "t_verify", verify=False)  # without verification the broken graph goes through
    finally:
        del passes.PIPELINES["t_verify"]
