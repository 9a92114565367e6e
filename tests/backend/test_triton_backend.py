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


# ---------------------------------------------------------------------------------------------- dropout
GPT = EXAMPLES / "gpt_shakespeare.nn"
TINY_GPT = {"L": 1, "heads": 2, "D": 32, "ctx": 8}  # head dim 16: the smallest flash attention takes


def _step(module, x: torch.Tensor, seed: int, owner=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward and backward under ``torch.manual_seed(seed)``: the output and the gradient of every
    parameter of ``owner`` (default: ``module``; the model a ``torch.compile`` wrapper runs)."""
    owner = module if owner is None else owner
    owner.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    y = module(x)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in owner.named_parameters()}


def test_dropout_same_seed_same_numbers():
    """Dropout in the matmul epilogues and the attention kernel draws its Philox seed from torch's
    generator: the same seed gives bit-identical outputs and gradients, another seed other masks."""
    m = build(GPT, hyperparams=dict(TINY_GPT, dropout=0.2), backend="triton").module.train()
    m.nndsl_backend = "triton"
    src = m.nndsl_sources["triton"]
    assert "kern.library.attention(" in src and "dropout_p=" in src, "dropout did not reach the kernels"
    x = torch.randint(0, 65, (2, 8))
    y1, g1 = _step(m, x, 7)
    y2, g2 = _step(m, x, 7)
    y3, _ = _step(m, x, 8)
    assert torch.equal(y1, y2), "same seed, different outputs"
    for n in g1:
        assert torch.equal(g1[n], g2[n]), f"same seed, different gradient of {n}"
    assert not torch.equal(y1, y3), "another seed drew the same masks"


def _keep_rate_ok(kept: torch.Tensor, p: float, what: str) -> None:
    n = kept.numel()
    rate, sigma = kept.double().mean().item(), ((1 - p) * p / n) ** 0.5
    assert abs(rate - (1 - p)) < 3 * sigma, f"{what}: keep rate {rate:.4f}, expected {1 - p} ± {3 * sigma:.4f}"


def test_matmul_epilogue_dropout_keep_rate_scale_and_gradient():
    """dropout(linear(x, 48), p) runs in the matmul epilogue: about 1 - p of the outputs kept, each
    scaled by 1 / (1 - p), and the weight gradient uses the very mask of the forward."""
    p = 0.3
    src = "model D(x: f32[B, N], N: int = 32) -> f32[B, 48] {\n    return dropout(linear(x, 48), %s)\n}\n" % p
    m = build(src, backend="triton").module
    m.nndsl_backend = "triton"
    assert "dropout_p=" in m.nndsl_sources["triton"], "dropout not in the epilogue"
    x = torch.randn(41, 32)
    plain = m.eval()(x).detach()
    m.train()
    y, grads = _step(m, x, 3)
    kept = y != 0
    _keep_rate_ok(kept, p, "matmul epilogue")
    torch.testing.assert_close(y[kept], plain[kept] / (1 - p), rtol=1e-5, atol=1e-6)
    cot = torch.linspace(-1, 1, y.numel()).view_as(y).double()
    dz = cot * kept / (1 - p)  # float64 reference through the forward's mask
    _close("weight gradient", grads["linear.weight"], dz.t() @ x.double(), 0.0)
    _close("bias gradient", grads["linear.bias"], dz.sum(0), 0.0)


def test_attention_dropout_keep_rate_and_scale():
    """attention(q, k, v, dropout=p) with v the identity shows the dropped probabilities themselves:
    about 1 - p of them kept, each scaled by 1 / (1 - p)."""
    p = 0.25
    src = ("model A(q: f32[B, H, 16, 16], k: f32[B, H, 16, 16], v: f32[B, H, 16, 16]) -> f32[B, H, 16, 16] {\n"
           "    return attention(q, k, v, dropout=%s)\n}\n" % p)
    m = build(src, backend="triton").module
    m.nndsl_backend = "triton"
    assert "kern.library.attention(" in m.nndsl_sources["triton"]
    q, k = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    v = torch.eye(16).expand(2, 3, 16, 16).contiguous()
    probs = m.eval()(q, k, v)
    torch.manual_seed(5)
    dropped = m.train()(q, k, v)
    kept = dropped != 0
    _keep_rate_ok(kept, p, "attention")
    torch.testing.assert_close(dropped[kept], probs[kept] / (1 - p), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------- training
def test_short_training_lowers_the_loss_alike():
    """Six Adam steps on the tiny GPT (dropout 0) from the same weights: both backends lower the loss
    and their loss curves agree within float32 tolerance."""
    torch.manual_seed(0)
    m = build(GPT, hyperparams=dict(TINY_GPT, dropout=0.0), backend="triton").module.train()
    x, y = torch.randint(0, 65, (4, 8)), torch.randint(0, 65, (4, 8))
    curves = {}
    for backend in ("torch", "triton"):
        model = copy.deepcopy(m)
        model.nndsl_backend = backend
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        curve = []
        for _ in range(6):
            loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves[backend] = torch.tensor(curve, dtype=torch.float64)
    torch_curve, triton_curve = curves["torch"], curves["triton"]
    assert triton_curve[-1] < triton_curve[0] - 0.1, f"the Triton backend did not learn: {triton_curve.tolist()}"
    assert rel_err(triton_curve, torch_curve) < 1e-4, f"loss curves differ: {triton_curve} vs {torch_curve}"


# ---------------------------------------------------------------------------------------------- nndsl run
RUN_TRAIN = """
train {
    data       = text("input.txt", context=ctx, split=0.9)
    eval       = text("input.txt", context=ctx, split=0.9, part="val")
    loss       = cross_entropy
    optimizer  = adamw(lr=1e-3, betas=[0.9, 0.99], weight_decay=0.1)
    schedule   = cosine(warmup=1, min_lr=1e-4)
    steps      = 4
    batch      = 3
    clip       = 1.0
    eval_every = 2
    eval_batches = 1
    checkpoint_every = 2
    metrics    = [loss]
    seed       = 1337
}
"""


def _cli(folder: Path, *args: str) -> str:
    sets = [a for k, v in dict(TINY_GPT, dropout=0.2).items() for a in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(main, ["run", str(folder / "gpt.nn"), "--backend", "triton", "--no-progress",
                                       *sets, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return nndsl.load(run, backend="torch").state_dict()


def test_run_backend_triton_resumes_bit_for_bit_and_loads_on_torch(tmp_path):
    """`nndsl run --backend triton` on a tiny GPT with dropout 0.2: stopped at its step-2 checkpoint and
    resumed, it ends on the uninterrupted run's weights bit for bit; run.json records the backend;
    the checkpoint loads into the torch backend and computes what the Triton backend computes."""
    src = GPT.read_text()
    (tmp_path / "gpt.nn").write_text(src[:src.index("train {")] + RUN_TRAIN)
    (tmp_path / "input.txt").write_text((EXAMPLES / "data" / "tinyshakespeare" / "input.txt").read_text()[:4000])
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    out = _cli(tmp_path, "--out", str(whole))
    assert "the Triton backend (kernels under Triton's interpreter)" in out, out
    _cli(tmp_path, "--out", str(parts), "--steps", "2")
    _cli(tmp_path, "--out", str(parts), "--resume")
    ref, got = _weights(whole), _weights(parts)
    for name in ref:
        assert torch.equal(got[name], ref[name]), f"resumed run's {name} differs from the uninterrupted run's"
    assert json.loads((whole / "run.json").read_text())["backend"] == "triton"
    on_torch, on_triton = nndsl.load(whole, backend="torch"), nndsl.load(whole, backend="triton")
    on_triton.nndsl_backend = "triton"
    x = torch.randint(0, 65, (2, 8))
    with torch.no_grad():
        assert_close_f32("loaded model's output", on_triton.eval()(x), on_torch.eval()(x))


def assert_close_f32(what: str, out: torch.Tensor, ref: torch.Tensor) -> None:
    _close(what, out, ref, 0.0)


# ---------------------------------------------------------------------------------------------- torch.compile
def _compiled_agrees(m, x) -> tuple[int, bool]:
    """Graph breaks of the Triton forward under Dynamo (with ``.item()`` captured as a traced integer,
    as ``fullgraph=True`` does); then ``torch.compile(fullgraph=True)`` must match eager PyTorch: the
    same output and gradients under the same seed (the dropout seeds drawn inside the graph).
    Returns the break count and whether another seed changed the compiled output."""
    torch._dynamo.reset()
    with torch._dynamo.config.patch(capture_scalar_outputs=True):
        breaks = torch._dynamo.explain(m)(x).graph_break_count
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    y_c, g_c = _step(compiled, x, 11, owner=m)
    y_e, g_e = _step(m, x, 11)
    torch.testing.assert_close(y_c, y_e, rtol=1e-6, atol=1e-6)
    for n in g_e:
        torch.testing.assert_close(g_c[n], g_e[n], rtol=1e-5, atol=1e-6, msg=lambda s, n=n: f"{n}: {s}")
    y_other, _ = _step(compiled, x, 12, owner=m)
    return breaks, not torch.equal(y_other, y_c)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_torch_compile_traces_the_triton_forward_without_breaks(dropout):
    """fullgraph compile of a train-mode Triton forward, dropout in the kernels or not: no graph break,
    the eager numbers; with dropout, another seed draws other masks in the compiled graph too."""
    m = build(GPT, hyperparams=dict(TINY_GPT, dropout=dropout), backend="triton").module.train()
    m.nndsl_backend = "triton"
    breaks, reseeded = _compiled_agrees(m, torch.randint(0, 65, (2, 8)))
    assert breaks == 0, f"{breaks} graph breaks"
    assert reseeded == (dropout > 0), "the compiled graph's dropout masks ignore torch's seed"
