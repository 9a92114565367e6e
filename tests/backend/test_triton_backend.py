"""The Triton backend computes and trains like the torch backend (kernels under TRITON_INTERPRET=1).

* every example (at reduced size) and every hand-written spelling of ``tests/passes/spellings.nn``:
  the Triton forward in float32 agrees with the torch forward of the same weights in float64 on
  the outputs, every parameter gradient and every input gradient, in eval mode and in train mode
  with dropout 0, and it really launched Triton kernels (forward and backward);
* dropout inside the kernels: the same seed gives the same outputs and gradients, the keep rate
  is within 3σ of 1 - p, and the kept values are scaled by 1 / (1 - p);
* a few steps of Adam lower the loss on both backends alike; ``nndsl run --backend triton``
  stopped at a checkpoint and resumed ends on the uninterrupted run's weights bit for bit, records
  its backend, and its checkpoint loads into the torch backend with the same outputs;
* ``torch.compile(fullgraph=True)`` traces the Triton forward without a graph break (dropout 0).

Reduced sizes: the interpreter runs a kernel in numpy, seconds per call. The CNN runs on 12x12
images with 4 and 6 channels, and SpokenLetters on 160 samples instead of 16000 (the same
source otherwise); every other example runs its own source with small hyperparameters.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import nndsl
from nndsl.backend.launches import count_launches
from nndsl.cli import main
from nndsl.compiler import build
from tolerance import TOL, rel_err

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SPELLINGS = ROOT / "tests" / "passes" / "spellings.nn"
F32 = TOL[torch.float32]  # float32 kernels against a float64 reference: fp32 arithmetic, fp32 accumulation


def _small_cnn(src: str) -> str:
    """mnist_cnn.nn on 12x12 images with 4 and 6 channels (the conv kernel interpreted at 28x28 takes ~30 s)."""
    out = src.replace("f32[B, 1, 28, 28]", "f32[B, 1, 12, 12]").replace("conv2d(x, 32,", "conv2d(x, 4,")
    out = out.replace("conv2d(h, 64,", "conv2d(h, 6,")
    assert out.count("12, 12") == 1 and "conv2d(x, 4," in out and "conv2d(h, 6," in out, "mnist_cnn.nn changed"
    return out


def _short_waves(src: str) -> str:
    """SpokenLetters on 160 samples (its 16000-wide linear takes minutes interpreted)."""
    out = src.replace("model SpokenLetters(wave: f32[B, 16000])", "model SpokenLetters(wave: f32[B, 160])")
    assert out != src, "spoken_letters.nn changed"
    return out


# (file, model, hyperparameters, sizes of the symbolic dims, int input bound, source edit)
EXAMPLE_CASES = [
    ("linear_regression.nn", None, {}, {"B": 5}, 2, None),
    ("mnist_mlp.nn", None, {"hidden": 24}, {"B": 3}, 2, None),
    ("mnist_mlp_adam.nn", None, {"hidden": 24}, {"B": 3}, 2, None),
    ("mnist_cnn.nn", None, {}, {"B": 3}, 2, _small_cnn),
    ("mnist_lstm.nn", None, {"hidden": 8}, {"B": 2}, 2, None),
    ("gpt_shakespeare.nn", None, {"L": 2, "heads": 2, "D": 32, "ctx": 16, "dropout": 0.0}, {"B": 3, "T": 11}, 65,
     None),
    ("spoken_letters.nn", "SpokenLetters", {}, {"B": 3}, 2, _short_waves),
    ("spoken_letters.nn", "SpokenLettersConv", {"width": 8, "drop": 0.0}, {"B": 3}, 2, None),
]
SPELLED = re.findall(r"^model (\w+)", SPELLINGS.read_text(), re.M)


def _source(file: str, edit) -> str:
    text = (EXAMPLES / file).read_text()
    return edit(text) if edit else text


def _inputs(graph, sizes: dict[str, int], int_high: int) -> list[torch.Tensor]:
    """Fresh random float32 inputs (ints below ``int_high``), the symbolic dims bound by ``sizes``."""
    out = []
    for v in graph.inputs:
        shape = [d if isinstance(d, int) else sizes[str(d)] for d in v.type.shape]
        out.append(torch.randn(shape) if v.type.is_float else torch.randint(0, int_high, shape))
    return out


def _close(what: str, out: torch.Tensor, ref: torch.Tensor, floor: float) -> None:
    """||out - ref|| < F32 · max(||ref||, floor): relative, except for values that are zero in exact
    arithmetic (a bias right before a batchnorm), measured against ``floor`` (the model's scale)."""
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert torch.isfinite(out).all(), f"{what}: non-finite values"
    err = (out.double() - ref.double()).norm().item() / max(ref.double().norm().item(), floor)
    assert err < F32, f"{what}: relative error {err:.3e} >= {F32:.0e}"


def assert_backends_agree(module, graph, *, sizes, int_high=2, train=False) -> None:
    """The Triton forward (float32) and the torch forward (float64, same weights) agree on the output
    and every gradient; the Triton forward launched Triton kernels in forward and backward."""
    module.train(train)
    ref = copy.deepcopy(module).double()
    ref.nndsl_backend = "torch"
    module.nndsl_backend = "triton"
    module.zero_grad(set_to_none=True)
    xs = _inputs(graph, sizes, int_high)
    x32 = [x.clone().requires_grad_() if x.is_floating_point() else x for x in xs]
    x64 = [x.double().requires_grad_() if x.is_floating_point() else x for x in xs]
    with count_launches() as launched:
        y = module(*x32)
        cot = torch.randn_like(y)
        (y * cot).sum().backward()
    y_ref = ref(*x64)
    (y_ref * cot.double()).sum().backward()
    if "kern.library" in module.nndsl_sources["triton"]:
        kernels = [r for r in launched.records if r.kind == "triton"]
        assert kernels, "the Triton forward launched no Triton kernel (did the library fall back to PyTorch?)"
    _close("output", y, y_ref, 1e-3 * y_ref.double().norm().item())
    ref_params = dict(ref.named_parameters())
    grads = {n: (p.grad, ref_params[n].grad) for n, p in module.named_parameters()}
    grads.update({f"input {i}": (a.grad, b.grad) for i, (a, b) in enumerate(zip(x32, x64)) if a.requires_grad})
    scale = max(r.double().norm().item() for _, r in grads.values())
    for name, (g, g_ref) in grads.items():
        assert g is not None, f"no gradient reached {name}"
        _close(f"gradient of {name}", g, g_ref, 1e-3 * scale)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("file,model,hp,sizes,high,edit", EXAMPLE_CASES,
                         ids=[c[0] + (c[1] or "") for c in EXAMPLE_CASES])
def test_examples_agree_across_backends(file, model, hp, sizes, high, edit, train):
    torch.manual_seed(0)
    c = build(_source(file, edit), model=model, hyperparams=hp, backend="triton")
    assert_backends_agree(c.module, c.graph, sizes=sizes, int_high=high, train=train)


@pytest.mark.parametrize("model", SPELLED)
def test_spellings_agree_across_backends(model):
    c = build(SPELLINGS.read_text(), model=model, backend="triton")
    assert "kern.library" in c.module.nndsl_sources["triton"], f"{model}: no kernel in the Triton forward"
    assert_backends_agree(c.module, c.graph, sizes={"B": 2, "H": 3, "T": 5})
