"""Helpers for the generated-kernel tests: compile a small program on both backends, in float64."""
from __future__ import annotations

from collections import Counter

import torch

import nndsl
from nndsl.elaborate import elaborate
from nndsl.frontend.parser import parse
from nndsl.ir.verify import verify

# a program over x [B, T, N] and a broadcast y [N]; EXPR is the body, OUT the output type
PROGRAM = """model M(x: f32[B, T, N], y: f32[N], N: int = 5) -> {out} {{
    return {expr}
}}"""


def both(src: str, **hp):
    """(triton module, torch module) with the same weights, in float64."""
    tri = nndsl.compile(src, backend="triton", **hp)
    ref = nndsl.compile(src, backend="torch", **hp)
    ref.load_state_dict(tri.state_dict())
    return tri.double(), ref.double()


def generated_ops(module) -> Counter:
    """The IR ops inside the generated kernels of the module's triton graph."""
    c: Counter = Counter()
    for n in module.nndsl_graphs["triton"].nodes:
        if n.op == "generated":
            c.update(m.op for m in n.region.nodes)
    return c


def values_and_grads(module, inputs: list[torch.Tensor], seed: int = 0):
    """Outputs and the gradients of every input and parameter for a random cotangent."""
    xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    out = module(*xs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs if o.is_floating_point())
    loss.backward()
    grads = [x.grad for x in xs if x.requires_grad] + [p.grad for p in module.parameters()]
    return [o.detach() for o in outs], grads


def assert_close_all(a: list, b: list, atol: float, rtol: float, what: str) -> None:
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b)):
        assert (x is None) == (y is None), f"{what} {i}: one side has no gradient"
        if x is not None:
            torch.testing.assert_close(x, y, atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"{what} {i}: {m}")


def graph(src: str, **hp):
    """Source text -> elaborated, verified IR."""
    g = elaborate(parse(src, "<test>"), None, hp or None)
    verify(g)
    return g


def ops(g) -> Counter:
    """How many nodes of each op (param reads left out)."""
    return Counter(n.op for n in g.nodes if n.op != "param")
