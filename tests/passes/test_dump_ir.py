"""nndsl compile --backend triton --dump-ir=PASS prints the IR after that pass."""
from __future__ import annotations

from click.testing import CliRunner

from nndsl.cli import main

from .kit import EXAMPLES

GPT = [str(EXAMPLES / "gpt_shakespeare.nn"), "--set", "L=1", "--set", "D=32", "--set", "heads=2", "--set", "ctx=16"]


def _run(*args):
    return CliRunner().invoke(main, ["compile", *GPT, "--backend", "triton", *args])


def test_dump_after_one_pass():
    before = _run("--dump-ir=cse")
    assert before.exit_code == 0, before.output
    assert before.output.startswith("// after cse (pass 3 of 9)\ngraph GPT(")
    assert " attention(" in before.output and "flash_attention" not in before.output
    after = _run("--dump-ir=claim")
    assert after.exit_code == 0, after.output
    assert "flash_attention(" in after.output and "layernorm_kernel(" in after.output
    assert " attention(" not in after.output


def test_dump_names_every_run_of_a_pass_and_rejects_unknown_ones():
    out = _run("--dump-ir=dce")
    assert out.exit_code == 0 and out.output.count("// after dce") == 2
    bad = _run("--dump-ir=fusion")
    assert bad.exit_code == 2
    assert "'fusion' is not a pass of the triton pipeline (dce, canonicalize, cse, raise, fuse_epilogues, fuse_loss, claim, group, dce)" \
        in bad.output


def test_triton_backend_emits_fused_python():
    out = _run("--emit", "python")
    assert out.exit_code == 0, out.output
    # the kernel ops lower to nndsl.kernels.library calls: attention with its dropout, the
    # projections with dropout and the residual in the matmul epilogue, the norms
    src = out.output
    assert "kern.library.attention(" in src and "F.scaled_dot_product_attention" not in src
    assert src.count("kern.library.layer_norm(") >= 2  # the first norm joins the stem's generated kernel
    assert "dropout_p=(" in src and "if self.training else 0.0)" in src
    assert "F.dropout(F.linear(" not in src


def test_dump_shows_the_objective_too():
    out = _run("--dump-ir=fuse_loss")
    assert out.exit_code == 0, out.output
    model, objective = out.output.split("// objective (the model and its loss) after fuse_loss (pass 6 of 9)\n")
    assert "linear_cross_entropy(" not in model and "linear_cross_entropy(" in objective
