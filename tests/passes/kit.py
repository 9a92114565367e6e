"""Helpers for the pass tests: graphs from source, pass runs that verify, op counts, and the
numerical comparison of a graph before and after the triton pipeline (torch reference emits)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Optional

import torch

from nndsl.backend.torch_codegen import lower
from nndsl.elaborate import elaborate
from nndsl.frontend.parser import parse
from nndsl.ir.graph import Graph
from nndsl.ir.verify import verify
from nndsl.passes import run_passes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SPELLINGS = Path(__file__).with_name("spellings.nn")


def graph(src: str, model: Optional[str] = None, file: str = "<test>", **hp) -> Graph:
    """Source text (or a Path) -> elaborated, verified IR."""
    if isinstance(src, Path):
        src, file = src.read_text(), str(src)
    g = elaborate(parse(src, file), model, hp or None)
    verify(g)
    return g


def apply(g: Graph, *passes: Callable) -> Graph:
    """Run ``passes`` in order, verifying after each."""
    for p in passes:
        g = p(g).graph
        verify(g)
    return g


def ops(g: Graph) -> Counter:
    """How many nodes of each op (param reads left out)."""
    return Counter(n.op for n in g.nodes if n.op != "param")


def deep_ops(g: Graph) -> Counter:
    """Like ``ops``, counting the ops inside generated kernels' regions as well."""
    c = ops(g)
    for n in g.nodes:
        if n.op == "generated":
            c.update(m.op for m in n.region.nodes if m.op != "param")
    return c


def compute_nodes(g: Graph) -> int:
    """Nodes that compute something (not params, not views)."""
    from nndsl.ops.meta import VIEW, kind

    return sum(1 for n in g.nodes if n.op != "param" and kind(n.op) != VIEW)


def reasons(g: Graph) -> list[str]:
    return [note.reason for note in g.fusion_log]


def _inputs(g: Graph, sizes: dict[str, int], int_high: int) -> list[torch.Tensor]:
    """Fresh random float64 inputs (ints below ``int_high``), symbolic dims bound by ``sizes``."""
    out = []
    for v in g.inputs:
        shape = [d if isinstance(d, int) else sizes[str(d)] for d in v.type.shape]
        if v.type.is_float:
            out.append(torch.randn(shape, dtype=torch.float64, requires_grad=True))
        else:
            out.append(torch.randint(0, int_high, shape))
    return out


def assert_same_numbers(src, model: Optional[str] = None, *, sizes: dict[str, int], train: bool = False,
                        int_high: int = 2, hp: Optional[dict] = None, tol: float = 1e-9) -> tuple[Graph, Graph]:
    """The unfused graph and the triton-pipeline graph, lowered by the torch backend with the same
    weights in float64, give the same outputs, parameter gradients and input gradients."""
    hp = hp or {}
    plain = run_passes(graph(src, model, **hp), "torch", verify=True)
    fused = run_passes(graph(src, model, **hp), "triton", verify=True)
    m0, _ = lower(plain)
    m1, _ = lower(fused)
    assert set(m0.state_dict()) == set(m1.state_dict()), "the pipeline changed the parameter names"
    m1.load_state_dict(m0.state_dict())
    m0.double().train(train)
    m1.double().train(train)
    xs = _inputs(plain, sizes, int_high)
    xs1 = [x.detach().clone().requires_grad_(x.requires_grad) for x in xs]
    torch.manual_seed(1234)  # the same draws for both: fusion never reorders random ops
    y0 = m0(*xs)
    torch.manual_seed(1234)
    y1 = m1(*xs1)
    torch.testing.assert_close(y1, y0, rtol=tol, atol=tol, msg=lambda m: f"outputs differ: {m}")
    cot = torch.randn_like(y0)
    (y0 * cot).sum().backward()
    (y1 * cot).sum().backward()
    p1 = dict(m1.named_parameters())
    for name, p in m0.named_parameters():
        torch.testing.assert_close(p1[name].grad, p.grad, rtol=tol, atol=tol,
                                   msg=lambda m, name=name: f"gradient of {name} differs: {m}")
    for i, (a, b) in enumerate(zip(xs, xs1)):
        if a.requires_grad:
            torch.testing.assert_close(b.grad, a.grad, rtol=tol, atol=tol,
                                       msg=lambda m, i=i: f"gradient of input {i} differs: {m}")
    return plain, fused
