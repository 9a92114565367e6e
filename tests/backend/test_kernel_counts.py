"""Kernel launches per training step as tests (tinygrad's style): a ceiling per model, backend
and phase. A count above its ceiling fails (a fusion stopped firing, a kernel grew a launch); a
count 20% or more below it fails too, so the ceilings stay tight: lower the ceiling when fusion
improves. Interpreted kernels are counted, not run (``execute=False``): each model takes seconds.

Ceilings were measured at B=2 (T=8 for the GPT block) with the loss the train section names.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from nndsl.compiler import build
from nndsl.explain import Explanation, explain

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GPT_BLOCK = {"L": 1, "D": 32, "heads": 2, "ctx": 16}

# model -> (file, hyperparameters, {(backend, phase): ceiling})
CEILINGS = {
    "mlp": ("mnist_mlp.nn", {}, {
        ("triton", "forward"): 5,     # fused linear+relu; the last linear + loss fused (2 GEMMs, CE, dW GEMM)
        ("triton", "backward"): 5,    # dW of the first layer; the loss scales its saved gradients
        ("torch", "forward"): 5,
        ("torch", "backward"): 9,
    }),
    "cnn": ("mnist_cnn.nn", {}, {
        ("triton", "forward"): 9,     # 2 fused conv+relu, 2 maxpool, fused linear+relu, linear + loss fused
        ("triton", "backward"): 13,
        ("torch", "forward"): 11,
        ("torch", "backward"): 16,
    }),
    "gpt_block": ("gpt_shakespeare.nn", GPT_BLOCK, {
        ("triton", "forward"): 13,    # flash attention + 4 matmul epilogues + 2 norm kernels + lm_head/loss fused,
                                      # the stem's add + dropout + the first norm one generated kernel
        ("triton", "backward"): 27,   # the tied embedding/head weight sums its two gradients
        ("torch", "forward"): 40,
        ("torch", "backward"): 42,
    }),
    # hand-written RMSNorm and SwiGLU (one generated kernel each), rotary embeddings, flash attention
    "swiglu_block": ("llama_shakespeare.nn", {"L": 1, "D": 32, "heads": 2, "hidden": 40}, {
        ("triton", "forward"): 29,    # 7 of them build the rotary angle table (one for the model, 7 ATen ops)
        ("triton", "backward"): 37,
        ("torch", "forward"): 59,
        ("torch", "backward"): 78,
    }),
}
CASES = [(m, b, ph) for m, (_, _, c) in CEILINGS.items() for b, ph in c]

_cache: dict[str, Explanation] = {}


def _explained(model: str) -> Explanation:
    """One counted step of ``model`` on both backends (cached: each case reads the same step)."""
    if model not in _cache:
        file, hp, _ = CEILINGS[model]
        _cache[model] = explain(build(EXAMPLES / file, hyperparams=hp, backend="triton"), batch=2, execute=False)
    return _cache[model]


def _count(e: Explanation, backend: str, phase: str) -> tuple[int, dict[str, int]]:
    p = e.phases[phase]
    if backend == "torch":
        return p.unfused, p.unfused_kernels
    kernels: dict[str, int] = {}
    for row in p.rows:
        for name, n in row.kernels.items():
            kernels[name] = kernels.get(name, 0) + n
    return p.launches, kernels


def assert_ceiling(what: str, got: int, ceiling: int, kernels: dict[str, int]) -> None:
    """tinygrad's check: at most ``ceiling`` launches, and more than 80% of it."""
    breakdown = ", ".join(f"{k} x{n}" for k, n in sorted(kernels.items(), key=lambda kv: -kv[1]))
    assert got <= ceiling, f"{what}: expected at most {ceiling} kernel launches, got {got}: {breakdown}"
    assert got > 0.8 * ceiling, (f"{what}: expected {ceiling} kernel launches (its ceiling), got {got}, 20% "
                                 f"or more below: lower the ceiling to {got}. {breakdown}")


@pytest.mark.parametrize("model,backend,phase", CASES, ids=[f"{m}-{b}-{ph}" for m, b, ph in CASES])
def test_launches_per_training_step_within_ceiling(model, backend, phase):
    got, kernels = _count(_explained(model), backend, phase)
    assert_ceiling(f"{model} {backend} {phase}", got, CEILINGS[model][2][(backend, phase)], kernels)
    if backend == "triton":  # what the Triton backend launches is mostly Triton kernels
        assert sum(n for k, n in kernels.items() if not k.startswith("aten.")) > 0, kernels


def test_ceiling_check_fails_above_and_well_below():
    assert_ceiling("same", 10, 10, {})
    assert_ceiling("just below", 9, 10, {})
    with pytest.raises(AssertionError, match="expected at most 10 kernel launches, got 11: k x11"):
        assert_ceiling("above", 11, 10, {"k": 11})
    with pytest.raises(AssertionError, match="lower the ceiling to 8"):
        assert_ceiling("well below", 8, 10, {})


def test_gpt_block_launches_well_below_eager():
    """The forward at most half of eager's; the whole step below it (the step's half is checked on the
    full GPT example, in test_explain)."""
    e = _explained("gpt_block")
    fwd = e.phases["forward"]
    assert fwd.launches <= 0.5 * fwd.unfused, (f"GPT block forward: {fwd.launches} triton launches vs "
                                               f"{fwd.unfused} eager, more than half")
    assert e.launches < e.unfused, f"GPT block step: {e.launches} triton launches vs {e.unfused} eager"
