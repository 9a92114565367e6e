"""precision = fp32 | bf16 | fp16: the config key and --precision, bf16 training on both backends
(matmul-type ops in bf16, norms in fp32, weights and gradients in fp32, values near float64),
and fp16 loss scaling whose state survives a checkpoint: a resumed fp16 run is bit-exact."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from runtime.rtkit import section, source_line
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from nndsl import compiler
from nndsl.cli import main
from nndsl.errors import NndslConfigError
from nndsl.runtime import checkpoint as ckpt
from nndsl.runtime import precision as amp
from nndsl.runtime.data import synthetic_regression
from nndsl.runtime.losses import mse
from nndsl.runtime.train import evaluate, fit
from tolerance import TOL, rel_err

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEXT = "the quick brown fox jumps over the lazy dog. " * 40  # 28 distinct characters
GPT_HP = {"vocab": 28, "L": 1, "heads": 2, "D": 16, "ctx": 8, "dropout": 0.0}
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product_flash_attention_for_cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class DtypeLog(TorchDispatchMode):
    """Records, per operator ("aten::mm", "nndsl::layer_norm"), the float dtypes of its inputs."""

    def __init__(self):
        super().__init__()
        self.inputs: dict[str, set] = defaultdict(set)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.inputs[func._schema.name] |= {t.dtype for t in tree_leaves((args, kwargs))
                                           if isinstance(t, torch.Tensor) and t.is_floating_point()}
        return func(*args, **(kwargs or {}))


def _gpt(backend: str):
    torch.manual_seed(0)
    return compiler.build(EXAMPLES / "gpt_shakespeare.nn", hyperparams=GPT_HP, backend=backend).module


# ----------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("written,value", [("", "fp32"), ("precision = bf16", "bf16"),
                                           ('precision = "fp16"', "fp16")])
def test_precision_key(written, value):
    assert section(f'data = mnist("d")\n{written}').precision == value


def test_invalid_precision_is_a_located_error():
    body = 'data = mnist("d")\nprecision = fp8\n'
    with pytest.raises(NndslConfigError) as e:
        section(body)
    msg = str(e.value)
    assert '"fp8" is not one of fp32, bf16, fp16' in msg, msg
    assert e.value.span is not None and e.value.span.line == source_line(body, "precision"), e.value.span


def test_precision_override_from_the_command_line():
    assert section('data = mnist("d")\nprecision = bf16', overrides={"precision": "fp16"}).precision == "fp16"
    with pytest.raises(NndslConfigError, match='--precision: "half" is not one of fp32, bf16, fp16'):
        section('data = mnist("d")', overrides={"precision": "half"})


TINY = """\
model Tiny(x: f32[B, 5], hidden: int = 4) -> f32[B, 1] {
    return linear(relu(linear(x, hidden)), 1)
}

train {
    data      = synthetic_regression(n=40, features=5, noise=0.01, seed=1)
    loss      = mse
    optimizer = adam(lr=1e-2)
    epochs    = 1
    batch     = 16
}
"""


def test_cli_precision(tmp_path):
    (tmp_path / "tiny.nn").write_text(TINY)
    res = CliRunner().invoke(main, ["run", str(tmp_path / "tiny.nn"), "--out", str(tmp_path / "r"), "--no-progress",
                                    "--precision", "bf16"], env={"NNDSL_DEBUG": ""})
    assert res.exit_code == 0, res.output
    assert "precision bf16" in res.output
    assert json.loads((tmp_path / "r" / "run.json").read_text())["train"]["precision"] == "bf16"
    bad = CliRunner().invoke(main, ["run", str(tmp_path / "tiny.nn"), "--precision", "fp8"])
    assert bad.exit_code == 2 and "fp8" in bad.output and "Traceback" not in bad.output, bad.output


# ----------------------------------------------------------------------------- bf16 on both backends
def test_bf16_trains_on_the_torch_backend(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    cfg = section(f'data = text("{tmp_path / "t.txt"}", context=8)\noptimizer = adamw(lr=1e-2)\n'
                  "steps = 40\nbatch = 8\neval_every = 10\nprecision = bf16\n", hyperparams=GPT_HP)
    model = _gpt("torch")
    out = fit(model, cfg, None, device="cpu", progress=False, log=lambda s: None)
    losses = [h["train_loss"] for h in out["history"]]
    assert losses[-1] < 0.7 * losses[0], f"bf16 training did not learn: {losses}"
    assert {p.dtype for p in model.parameters()} == {torch.float32}, "master weights must stay fp32"
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}
    idx = torch.randint(0, 28, (2, 8))
    log = DtypeLog()
    with torch.autocast("cpu", dtype=torch.bfloat16), log:
        logits = model(idx)
    assert logits.dtype == torch.bfloat16
    seen = {op: d for op, d in log.inputs.items() if op in MATMULS}
    assert seen and all(d == {torch.bfloat16} for d in seen.values()), f"matmul-type ops saw {seen}"
    ref = model.double()(idx)
    assert rel_err(logits, ref) < 3 * TOL[torch.bfloat16], "bf16 logits far from float64"  # a few bf16 roundings


def test_bf16_on_the_triton_backend_casts_per_op():
    """The Triton forward under CPU autocast: matmul, attention in bf16 (their references: the
    interpreter has no bf16), the layer norms as fp32 kernels; gradients fp32 and near float64."""
    model = _gpt("triton").train()
    twin = _gpt("torch").double().train()
    twin.load_state_dict(model.state_dict())
    idx = torch.randint(0, 28, (2, 8))
    log = DtypeLog()
    with torch.autocast("cpu", dtype=torch.bfloat16), log:
        logits = model(idx)
    assert logits.dtype == torch.bfloat16
    assert log.inputs["nndsl::layer_norm"] == {torch.float32}, dict(log.inputs)
    seen = {op: d for op, d in log.inputs.items() if op in MATMULS}
    assert seen and all(d == {torch.bfloat16} for d in seen.values()), f"matmul-type ops saw {seen}"
    ref = twin(idx)
    assert rel_err(logits, ref) < 3 * TOL[torch.bfloat16], "bf16 logits far from float64"
    logits.float().square().mean().backward()
    ref.square().mean().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert p.grad.dtype == torch.float32, f"{name}: grad {p.grad.dtype}"
        assert rel_err(p.grad, q.grad) < 5 * TOL[torch.bfloat16], f"{name}: gradient far from float64"


@pytest.mark.parametrize("precision,expected", [("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_evaluation_runs_under_the_same_autocast(tmp_path, precision, expected):
    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.out, self.seen = torch.nn.Linear(5, 1), []

        def forward(self, x):
            on = torch.is_autocast_enabled("cpu")
            self.seen.append(torch.get_autocast_dtype("cpu") if on else None)
            return self.out(x)

    cfg = section(f"data = synthetic_regression(n=20, features=5)\nloss = mse\nprecision = {precision}")
    src = synthetic_regression(n=20, features=5, part="test")
    model = Probe()
    metrics = evaluate(model, src, cfg, amp.Precision(precision, torch.device("cpu")).loss(mse), False,
                       torch.device("cpu"))
    assert model.seen and set(model.seen) == {expected}, model.seen
    assert metrics["val_loss"] == pytest.approx(mse(model.out(src.x), src.y).item(), rel=2 * TOL[torch.bfloat16])


# ----------------------------------------------------------------------------- fp16 loss scaling
class Chars(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.out = torch.nn.Embedding(28, 8), torch.nn.Linear(8, 28)
        self.calls, self.fail_at = 0, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("stop here")
        return self.out(torch.relu(self.emb(x)))


def _chars(fail_at: int = 0) -> Chars:
    torch.manual_seed(5)
    m = Chars()
    m.fail_at = fail_at
    return m


def _final_scaler(run: Path) -> dict:
    c = [c for c in ckpt.listing(run) if not c.best][-1]
    return ckpt.read(c)[1]["scaler"]


def test_fp16_resume_restores_the_loss_scale_exactly(tmp_path, monkeypatch):
    # the scale doubles after every clean step and halves at an overflow, so it moves all the time
    monkeypatch.setattr(amp, "GROWTH_INTERVAL", 1)
    (tmp_path / "t.txt").write_text(TEXT)
    body = (f'data = text("{tmp_path / "t.txt"}", context=9)\noptimizer = adamw(lr=1e-2)\nsteps = 9\nbatch = 5\n'
            "checkpoint_every = 4\nprecision = fp16\nseed = 4\n")
    quiet = dict(device="cpu", progress=False, log=lambda s: None)
    whole = _chars()
    fit(whole, section(body), tmp_path / "a", **quiet)
    with pytest.raises(RuntimeError, match="stop here"):
        fit(_chars(fail_at=7), section(body), tmp_path / "b", **quiet)
    assert _final_scaler(tmp_path / "b")["scale"] != 2.0**16, "the scale never moved: the test would prove nothing"
    resumed = _chars()
    fit(resumed, section(body), tmp_path / "b", resume=True, **quiet)
    for (name, p), q in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), f"{name} differs after resuming"
    assert _final_scaler(tmp_path / "b") == _final_scaler(tmp_path / "a")
    # without the scaler's state the resumed run would go astray: restoring it is what keeps it exact
    monkeypatch.setattr(amp.Precision, "load_state_dict", lambda self, state: None)
    lost = tmp_path / "d"
    with pytest.raises(RuntimeError, match="stop here"):
        fit(_chars(fail_at=7), section(body), lost, **quiet)
    astray = _chars()
    fit(astray, section(body), lost, resume=True, **quiet)
    assert any(not torch.equal(p, q) for p, q in zip(whole.parameters(), astray.parameters())), \
        "a fresh loss scale gave the same weights: this test cannot tell a restored scaler from a lost one"


def test_scaler_is_off_unless_fp16():
    for name in ("fp32", "bf16"):
        p = amp.Precision(name, torch.device("cpu"))
        assert not p.scaler.is_enabled() and p.state_dict() == {}
        p.load_state_dict({"scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 1,
                           "_growth_tracker": 0})  # a checkpoint of an fp16 run: ignored
    p = amp.Precision("fp16", torch.device("cpu"))
    p.load_state_dict({})  # a checkpoint of a run without a scaler: left fresh
    assert p.scaler.get_scale() == 2.0**16
