"""On the GPT example the triton pipeline makes exactly the expected fusions: every attention
claimed by flash attention, every projection fused with its dropout and residual add, the MLP's
first projection with its gelu, every layernorm claimed; nothing logged as missed."""
from __future__ import annotations

from collections import Counter

import pytest

from nndsl.passes import run_passes

from .kit import EXAMPLES, compute_nodes, graph, ops

L = 3


@pytest.fixture(scope="module")
def graphs():
    hp = dict(L=L, heads=2, D=32, ctx=16)
    plain = run_passes(graph(EXAMPLES / "gpt_shakespeare.nn", **hp), "torch", verify=True)
    fused = run_passes(graph(EXAMPLES / "gpt_shakespeare.nn", **hp), "triton", verify=True)
    return plain, fused


def test_exact_fusions(graphs):
    _, g = graphs
    compute = Counter({op: n for op, n in ops(g).items() if op not in ("reshape", "transpose")})
    assert compute == Counter({
        "flash_attention": L, "layernorm_kernel": 2 * L, "fused_linear": 3 * L,
        "linear": L + 1,  # qkv (split right after) and lm_head: no epilogue to fuse
        "split": L, "embedding": 1, "pos_embedding": 1,
        "generated": 1,  # the embedding stem: add + dropout, and the first block's first norm
    }), dict(compute)
    (stem,) = [n for n in g.nodes if n.op == "generated"]
    assert stem.attrs["ops"] == ("add", "dropout", "layernorm_kernel") and stem.attrs["dropout"] == 0.2
    assert len(stem.outputs) == 2  # the stem's sum (the residual stream) and the norm's output
    # each fused node's region starts with the linear it grew from: name it by that linear's scope
    epilogues = Counter((n.region.nodes[0].scope.split(".", 2)[-1], n.attrs["activation"], n.attrs["dropout"],
                         n.attrs["residual"]) for n in g.nodes if n.op == "fused_linear")
    assert epilogues == Counter({("attn.proj", "none", 0.2, True): L, ("mlp.fc", "gelu", 0.0, False): L,
                                 ("mlp.proj", "none", 0.2, True): L}), epilogues
    assert all(n.attrs == {"causal": True, "scale": None, "dropout": 0.2} for n in g.nodes
               if n.op == "flash_attention")
    assert g.fusion_log == []


def test_far_fewer_compute_nodes(graphs):
    plain, fused = graphs
    # per block: 2 norms, 4 linears, attention, gelu, 2 dropouts, 2 adds, split -> 2 norms, flash, qkv, 3 fused, split;
    # the stem's add + dropout and the first norm -> one generated kernel
    assert compute_nodes(plain) == 12 * L + 6
    assert compute_nodes(fused) == 7 * L + 4


def test_parameters_unchanged(graphs):
    plain, fused = graphs
    assert list(plain.params) == list(fused.params)
