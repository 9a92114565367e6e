"""The training objective (nndsl.objective): module.nndsl_objective(*inputs, y) is the train section's
loss compiled with the model. On the torch backend it is losses.cross_entropy(forward(x), y) bit for
bit; on the triton backend (under the interpreter here) it runs the fused kernels, agrees with a
float64 reference on the loss and every parameter gradient, and never holds the [N, vocab]
logits; fit trains through it."""
from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo.testing
from torch.utils._python_dispatch import TorchDispatchMode

from nndsl.compiler import build
from nndsl.objective import LossSpec, training_objective
from nndsl.runtime import losses
from nndsl.runtime.config import Spec
from nndsl.runtime.train import fit
from runtime.rtkit import section
from tolerance import TOL, assert_close

from passes.kit import EXAMPLES

GPT = EXAMPLES / "gpt_shakespeare.nn"
TINY_GPT = dict(L=1, D=16, heads=1, ctx=16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(module, sizes: dict[str, int], classes: int):
    """Fresh inputs for the model's inputs (ids below ``classes`` for integer ones) and targets."""
    xs = []
    for v in module.graph.inputs:
        shape = [d if isinstance(d, int) else sizes[str(d)] for d in v.type.shape]
        xs.append(torch.randn(shape) if v.type.is_float else torch.randint(0, classes, shape))
    out = module.graph.outputs[0].type.shape[:-1]
    y = torch.randint(0, classes, [d if isinstance(d, int) else sizes[str(d)] for d in out])
    return xs, y


def _grads(module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters()}


CASES = [  # (file, hyperparameters, sizes of the symbolic dims, classes)
    (GPT, {**TINY_GPT, "dropout": 0.2}, {"B": 2, "T": 7}, 65),
    (EXAMPLES / "mnist_mlp.nn", {"hidden": 24}, {"B": 3}, 10),
    (EXAMPLES / "mnist_cnn.nn", {}, {"B": 2}, 10),
]


@pytest.mark.parametrize("file,hp,sizes,classes", CASES, ids=["gpt", "mlp", "cnn"])
def test_torch_objective_is_forward_then_loss_bit_for_bit(file, hp, sizes, classes):
    m = build(file, hyperparams=hp, backend="torch").module
    assert m.nndsl_loss == LossSpec.of("cross_entropy", {"label_smoothing": 0.0})
    xs, y = _batch(m, sizes, classes)
    m.train()  # dropout drawn from the same seed in the same order
    torch.manual_seed(7)
    loss = m.nndsl_objective(*xs, y)
    loss.backward()
    g_obj = _grads(m)
    m.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    ref = losses.cross_entropy(m(*xs), y)
    ref.backward()
    assert torch.equal(loss, ref), f"objective {loss.item()!r} != forward + loss {ref.item()!r}"
    for name, g in _grads(m).items():
        assert torch.equal(g_obj[name], g), f"gradient of {name} differs"


def test_label_smoothing_compiles_into_the_objective_exactly():
    src = GPT.read_text().replace("loss       = cross_entropy", "loss       = cross_entropy(label_smoothing=0.1)")
    m = build(src, hyperparams={**TINY_GPT, "dropout": 0.0}, backend="torch").module
    assert m.nndsl_loss == LossSpec.of("cross_entropy", {"label_smoothing": 0.1})
    xs, y = _batch(m, {"B": 2, "T": 5}, 65)
    ref = losses.cross_entropy(m(*xs), y, label_smoothing=0.1)
    assert torch.equal(m.nndsl_objective(*xs, y), ref)


def test_a_probability_output_trains_on_the_logits_before_its_softmax():
    probs = build("model P(x: f32[B, 4]) -> f32[B, 3] {\n    return softmax(linear(x, 3), dim=-1)\n}\n",
                  backend="torch").module
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    want = torch.nn.functional.nll_loss(torch.log(probs(x).double()), y)
    assert_close("ce on probabilities", probs.nndsl_objective(x, y).double(), want, 1e-5)
    mse = build("model R(x: f32[B, 4]) -> f32[B, 1] {\n    return linear(x, 1)\n}\ntrain {\n    loss = mse\n}\n",
                backend="torch").module
    t = torch.randn(5, 1)
    assert_close("mse", mse.nndsl_objective(x, t).double(), losses.mse(mse(x).double(), t.double()), 1e-5)


def test_fit_uses_the_objective_only_for_the_loss_it_computes():
    m = build(GPT, hyperparams=TINY_GPT, backend="torch").module
    ce = Spec("cross_entropy", {"label_smoothing": 0.0})
    assert training_objective(m, ce) == m.nndsl_objective
    assert training_objective(m, Spec("cross_entropy", {"label_smoothing": 0.2})) is None
    assert training_objective(m, Spec("mse", {})) is None
    assert training_objective(torch.nn.Linear(2, 2), ce) is None


# ------------------------------------------------------------------------------- triton backend
TRITON_CASES = [  # (file, hyperparameters, sizes, classes): tiny odd sizes, dropout off (other RNG)
    (GPT, {**TINY_GPT, "dropout": 0.0}, {"B": 2, "T": 7}, 65),
    (EXAMPLES / "mnist_mlp.nn", {"hidden": 24}, {"B": 3}, 10),
]


@pytest.mark.parametrize("file,hp,sizes,classes", TRITON_CASES, ids=["gpt", "mlp"])
def test_triton_objective_matches_a_float64_reference(file, hp, sizes, classes):
    m = build(file, hyperparams=hp, backend="triton").module
    assert "kern.library.linear_cross_entropy" in m.nndsl_objective_sources["triton"]
    ref = copy.deepcopy(m).double()
    ref.nndsl_backend = "torch"
    xs, y = _batch(m, sizes, classes)
    m.train()
    ref.train()
    loss = m.nndsl_objective(*xs, y)
    loss.backward()
    want = ref.nndsl_objective(*[x.double() if x.is_floating_point() else x for x in xs], y)
    want.backward()
    assert loss.dtype == torch.float32
    assert_close("loss", loss, want, TOL[torch.float32])
    refs = dict(ref.named_parameters())
    for name, p in m.named_parameters():
        assert_close(f"gradient of {name}", p.grad, refs[name].grad, TOL[torch.float32])


class _Shapes(TorchDispatchMode):
    """Records the shape of every tensor any aten op produces."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor):
                self.shapes.append(tuple(o.shape))
        return out


def test_triton_gpt_objective_never_holds_the_logits():
    B, T, V = 3, 7, 65  # N = 21 rows: more than one chunk (16 rows of the 16-wide model)
    m = build(GPT, hyperparams={**TINY_GPT, "dropout": 0.0}, backend="triton").module
    xs, y = _batch(m, {"B": B, "T": T}, V)

    def logits_shaped(backend: str) -> list[tuple]:
        m.nndsl_backend = backend
        m.zero_grad(set_to_none=True)
        with _Shapes() as spy:
            m.nndsl_objective(*xs, y).backward()
        return [s for s in spy.shapes if s and s[-1] == V and torch.Size(s).numel() >= B * T * V]

    assert logits_shaped("torch"), "the spy should see the torch objective's [B, T, vocab] logits"
    assert logits_shaped("triton") == [], "the triton objective allocated [N, vocab] logits"


def test_torch_compile_traces_the_triton_objective_in_one_graph():
    m = build(EXAMPLES / "mnist_mlp.nn", hyperparams={"hidden": 24}, backend="triton").module
    xs, y = _batch(m, {"B": 3}, 10)
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    loss = torch.compile(m.nndsl_objective, fullgraph=True, backend=counter)(*xs, y)
    loss.backward()
    called = {str(n.target).removesuffix(".default") for g in counter.graphs for n in g.graph.nodes
              if n.op == "call_function"}
    assert counter.frame_count == 1, f"{counter.frame_count} frames (graph breaks)"
    assert {"nndsl.matmul", "nndsl.linear_cross_entropy"} <= called, sorted(called)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_linear_cross_entropy_op_registration():
    x = torch.randn(2, 5, 16, requires_grad=True)
    w = (torch.randn(37, 16) * 0.3).requires_grad_()
    b = torch.randn(37, requires_grad=True)
    t = torch.randint(0, 37, (2, 5))
    t[0, 1] = -100
    torch.library.opcheck(torch.ops.nndsl.linear_cross_entropy.default, (x, w, t, b, -100, "mean", 3, True, True, True))
    torch.library.opcheck(torch.ops.nndsl.linear_cross_entropy.default, (x, w, t, None, -100, "sum", 0, True, True,
                                                                         False))


# ------------------------------------------------------------------------------- training
def test_fit_trains_a_tiny_gpt_through_its_objective(tmp_path):
    (tmp_path / "t.txt").write_text("to be or not to be, that is the question. " * 30)
    m = build(GPT, hyperparams={**TINY_GPT, "vocab": 20, "dropout": 0.0}, backend="torch").module
    calls = []
    objective = m.nndsl_objective

    def counted(*args):
        calls.append(args[-1].shape)
        return objective(*args)

    m.nndsl_objective = counted
    cfg = section(f"""
    data = text("{tmp_path / 't.txt'}", context=7)
    optimizer = adamw(lr=1e-2)
    steps = 30
    batch = 4
    eval_every = 10
    """)
    out = fit(m, cfg, None, device="cpu", progress=False, log=lambda s: None)
    assert len(calls) == 30 and calls[0] == (4, 7), f"the objective ran {len(calls)} times, shapes {calls[:1]}"
    first, last = out["history"][0]["train_loss"], out["history"][-1]["train_loss"]
    assert last < first - 0.3, f"train loss went from {first:.3f} to {last:.3f}"
