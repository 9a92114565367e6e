"""``nndsl compile FILE --explain`` through the CLI: the kernels of one training step, per source
line and IR node, beside the unfused count, and why a fusion candidate did not fuse."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from nndsl.cli import main

GPT = Path(__file__).resolve().parents[2] / "examples" / "gpt_shakespeare.nn"


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, ["compile", *map(str, args)], env={"NNDSL_DEBUG": ""})
    assert result.exit_code == 0, result.output
    return result.output


def _line(path: Path, text: str) -> int:
    """The number of the first line of ``path`` holding ``text``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _rows(report: dict, phase: str, ir: str) -> list[dict]:
    return [r for r in report["phases"][phase]["rows"] if r["ir"].startswith(ir)]


@pytest.fixture(scope="module")
def gpt_report() -> dict:
    """The full-size GPT example, explained as JSON (interpreted kernels counted, not run)."""
    return json.loads(_cli(GPT, "--explain=json"))


def test_gpt_names_flash_attention_with_dropout_on_its_source_line(gpt_report):
    attn = f"{GPT}:{_line(GPT, 'attention(q, k, v')}"
    (fwd,) = _rows(gpt_report, "forward", "flash_attention")
    assert fwd["lines"] == attn and "dropout 0.2" in fwd["ir"] and fwd["nodes"] == 6, fwd
    assert fwd["kernels"] == {"_attn_fwd": 6}, fwd
    (bwd,) = _rows(gpt_report, "backward", "flash_attention")
    assert {"_attn_bwd_dq", "_attn_bwd_dkdv"} <= set(bwd["kernels"]), bwd


def test_gpt_names_matmul_epilogues_with_dropout_and_residual_and_fused_norms(gpt_report):
    residual = _rows(gpt_report, "forward", "fused_linear = linear + dropout + add")
    # attention's and the MLP's output projections, each dropped out and added to the residual
    proj_attn = {_line(GPT, "return dropout(linear(y, D"), _line(GPT, "x = x + CausalSelfAttention")}
    proj_mlp = {_line(GPT, "return dropout(linear(h, D"), _line(GPT, "x = x + MLP")}
    assert sorted(r["lines"] for r in residual) == sorted(
        f"{GPT}:{','.join(map(str, sorted(s)))}" for s in (proj_attn, proj_mlp)), residual
    assert all(r["kernels"] == {"_matmul_fwd_kernel": 6} and r["nodes"] == 6 for r in residual), residual
    (gelu,) = _rows(gpt_report, "forward", "fused_linear = linear + gelu")
    assert gelu["kernels"] == {"_matmul_fwd_kernel": 6}, gelu
    norms = _rows(gpt_report, "forward", "layernorm_kernel")
    # 13 norms: 12 on the norm kernel, the first block's first one inside the stem's generated kernel
    assert sum(r["nodes"] for r in norms) == 12 and all(set(r["kernels"]) == {"_norm_fwd_kernel"} for r in norms)
    assert {r["lines"] for r in norms} == {f"{GPT}:{_line(GPT, s)}" for s in ("ln_1", "ln_2", "ln_f")}


def test_gpt_counts_add_up_and_the_forward_is_below_half_of_eager(gpt_report):
    for phase, p in gpt_report["phases"].items():
        assert p["launches"] == sum(r["launches"] for r in p["rows"]) == sum(
            n for r in p["rows"] for n in r["kernels"].values()), phase
        assert p["unfused"] == sum(p["unfused_kernels"].values()), phase
    fwd = gpt_report["phases"]["forward"]
    assert fwd["launches"] < 0.5 * fwd["unfused"], fwd
    assert gpt_report["launches"] < gpt_report["unfused"], gpt_report
    assert gpt_report["missed"] == [] and gpt_report["executed"] is False


def test_gpt_training_step_launches_below_half_of_eager(gpt_report):
    assert gpt_report["launches"] < 0.5 * gpt_report["unfused"], (gpt_report["launches"], gpt_report["unfused"])


def test_gpt_table_is_readable():
    out = _cli(GPT, "--explain", "--set", "L=2")
    assert re.search(r"^forward: \d+ launches \(triton\) vs \d+ unfused", out, re.M), out
    assert re.search(r"^backward: \d+ launches \(triton\) vs \d+ unfused", out, re.M), out
    row = next(line for line in out.splitlines() if "flash_attention" in line and "_attn_fwd" in line)
    assert re.search(rf"^\s+2\s+2 x flash_attention = attention \(causal, dropout 0\.2\)\s+{re.escape(str(GPT))}:"
                     rf"{_line(GPT, 'attention(q, k, v')}\s+_attn_fwd x2$", row), row
    total = re.search(r"^step\s+(\d+)\s+(\d+)\s+([\d.]+)$", out, re.M)
    assert total and abs(int(total[1]) / int(total[2]) - float(total[3])) < 0.006, out
    assert "fusion candidates that did not fuse: none" in out


def test_missed_fusion_is_explained(tmp_path):
    src = tmp_path / "two_users.nn"
    src.write_text("model M(x: f32[B, T, D], D: int = 8) -> f32[B, T, D] {\n"
                   "    h = dropout(linear(x, D), 0.1)\n"
                   "    y = x + h\n"
                   "    return y * h\n"
                   "}\n")
    out = _cli(src, "--explain", "--batch", "3")
    assert f"{src}:2,3: fuse_epilogues: linear + residual add: dropout output has two users" in out, out
    assert "B=3" in out, out
    # the linear still fused with its dropout, on line 2; the add and the multiply stay eager
    fused = rf"fused_linear = linear \+ dropout\s+{re.escape(str(src))}:2\s+_matmul_fwd_kernel$"
    assert re.search(fused, out, re.M), out


def test_torch_backend_explains_against_itself():
    src = Path(__file__).resolve().parents[2] / "examples" / "mnist_mlp.nn"
    report = json.loads(_cli(src, "--explain=json", "--backend", "torch", "--set", "hidden=16"))
    assert report["backend"] == "torch" and report["launches"] == report["unfused"] > 0, report
    (row,) = _rows(report, "forward", "linear")[:1]
    assert set(row["kernels"]) <= {"aten.addmm", "aten.mm", "aten.add"}, row


def test_a_module_objective_is_the_step_loss_when_there_is_one():
    """The compiled training objective (model + fused loss) is what one step runs and is traced;
    an objective put on the module by hand replaces it (forward + that loss)."""
    import torch.nn.functional as F

    from nndsl.compiler import build
    from nndsl.explain import OUTSIDE, explain

    src = Path(__file__).resolve().parents[2] / "examples" / "mnist_mlp.nn"
    fused = explain(build(src, hyperparams={"hidden": 16}, backend="triton"))
    rows = {r.ir: r for r in fused.phases["forward"].rows}
    head = [r for ir, r in rows.items() if ir.startswith("linear_cross_entropy")]
    assert head and OUTSIDE not in rows, rows  # the last linear and the loss: one fused node, on its line
    assert head[0].lines.endswith("mnist_mlp.nn:5,11"), head[0].lines  # the last linear, the train section's loss
    compiled = build(src, hyperparams={"hidden": 16}, backend="triton")
    m = compiled.module
    calls = []
    m.nndsl_objective = lambda x, y: calls.append(1) or F.cross_entropy(m(x), y) * 1.0
    by_hand = explain(compiled)
    assert calls == [1, 1, 1, 1], calls  # warm-up and counted step, on each backend
    kernels = {k for r in by_hand.phases["forward"].rows for k in r.kernels}
    assert "aten.mul" in kernels and not any(r.ir.startswith("linear_cross_entropy")
                                             for r in by_hand.phases["forward"].rows)


@pytest.mark.parametrize("file", ["autoencoder.nn", "mnist_two_heads.nn"])
def test_explain_a_loss_written_as_an_expression(file):
    """The objective reads data fields by name (x, y): the step feeds each its example value."""
    path = GPT.parent / file
    report = json.loads(_cli(path, "--explain=json", "--set", "hidden=16" if "heads" in file else "width=8"))
    loss_line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.strip().startswith("loss"))
    assert report["launches"] > 0 and report["unfused"] > report["launches"] * 0.5
    lines = " ".join(r["lines"] for ph in ("forward", "backward") for r in report["phases"][ph]["rows"])
    assert f"{file}:{loss_line}" in lines, lines  # the loss expression's launches are attributed to its line
