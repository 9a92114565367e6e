"""The user-facing side of generated kernels: --explain lists each with the lines it covers,
--emit triton prints their source, and a model written out by hand (RMSNorm, SwiGLU) trains the same
on both backends."""
from __future__ import annotations

import ast
from pathlib import Path

import torch
from click.testing import CliRunner

import nndsl
from nndsl.cli import main

LLAMA = Path(__file__).resolve().parents[2] / "examples" / "llama_shakespeare.nn"
SMALL = ["--set", "L=1", "--set", "D=32", "--set", "heads=2", "--set", "hidden=40"]
HP = {"L": 1, "D": 32, "heads": 2, "hidden": 40, "vocab": 17}


def test_explain_lists_one_generated_kernel_per_hand_written_chain():
    out = CliRunner().invoke(main, ["compile", str(LLAMA), "--explain", *SMALL])
    assert out.exit_code == 0, out.output
    text = out.output.split("generated kernels")[1]
    rms = [ln for ln in text.splitlines() if "pow_s + mean + add_s + pow_s + mul" in ln]
    swiglu = [ln for ln in text.splitlines() if "sigmoid + mul + mul" in ln]
    assert len(rms) == 1 and "llama_shakespeare.nn:8" in rms[0], text  # one kernel for every RMSNorm
    assert len(swiglu) == 1 and "llama_shakespeare.nn:14" in swiglu[0], text
    assert "backward: a generated kernel" in rms[0]


def test_emit_triton_prints_valid_kernel_source():
    out = CliRunner().invoke(main, ["compile", str(LLAMA), "--emit", "triton", *SMALL])
    assert out.exit_code == 0, out.output
    assert out.output.count("@triton.jit") >= 4  # forward and backward of the RMSNorm and the SwiGLU
    ast.parse(out.output)  # the whole listing is Python
    assert "def gen_sigmoid_mul_" in out.output and "_bwd_" in out.output


def test_both_backends_train_the_hand_written_model_alike():
    torch.manual_seed(0)
    tri = nndsl.compile(LLAMA, backend="triton", **HP)
    ref = nndsl.compile(LLAMA, backend="torch", **HP)
    ref.load_state_dict(tri.state_dict())
    losses = {}
    for name, m in (("triton", tri), ("torch", ref)):
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
        idx = torch.randint(0, 17, (2, 9), generator=torch.Generator().manual_seed(1))  # one batch, learned
        out = []
        for _ in range(4):
            loss = torch.nn.functional.cross_entropy(m(idx[:, :-1]).reshape(-1, 17), idx[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            out.append(loss.item())
        losses[name] = out
    assert losses["triton"][-1] < losses["triton"][0]
    for a, b in zip(losses["triton"], losses["torch"]):
        assert abs(a - b) < 1e-4, losses
