"""fuse_loss alone and in the triton pipeline, on objective graphs (nndsl.objective): it fires where
the kernels take the loss, leaves alone what they do not (and says why), and its result computes
what the unfused objective computed (torch reference emits, bit for bit)."""
from __future__ import annotations

import torch

from pathlib import Path

from nndsl.backend.torch_codegen import lower
from nndsl.compiler import check, objective
from nndsl.passes import PIPELINES, fuse_epilogues, fuse_loss, run_passes

from .kit import EXAMPLES, apply, graph, ops, reasons

GPT = dict(L=1, D=16, heads=1, dropout=0.0)
HEAD = """model M(x: f32[B, T, 8], V: int = 13) -> f32[B, T, V] {
    h = relu(linear(x, 8))
    return %s
}"""


def _objective(src, loss=None, model=None, **hp):
    """The objective graph of ``src`` under ``loss`` (a loss expression; None: the file's, or cross_entropy)."""
    if loss is not None:
        src = src + f"\ntrain {{\n    loss = {loss}\n}}\n"
    obj = objective(check(src if isinstance(src, Path) else src, model=model, hyperparams=hp or None))
    assert obj is not None, "no objective was built"
    return obj.graph


def _triton(g):
    return run_passes(g, "triton", verify=True)


def test_the_pass_sits_after_the_epilogues_and_before_claim():
    names = [p.__name__ for p in PIPELINES["triton"]]
    assert names.index("fuse_epilogues") < names.index("fuse_loss") < names.index("claim")
    assert "fuse_loss" not in [p.__name__ for p in PIPELINES["torch"]]


def test_gpt_head_and_loss_become_one_linear_cross_entropy():
    g = _triton(_objective(EXAMPLES / "gpt_shakespeare.nn", **GPT))
    last = g.outputs[0].producer
    assert last.op == "linear_cross_entropy" and not last.attrs["bias"], last.op
    assert last.inputs[0].producer.op == "layernorm_kernel", "FLCE should read ln_f's output"
    assert last.inputs[1].producer.attrs["name"] == "wte.weight"  # the head is tied to the token embedding
    assert "cross_entropy_loss" not in ops(g), dict(ops(g))
    assert [n.op for n in g.nodes if last.inputs[1] in n.inputs] == ["embedding", "linear_cross_entropy"], \
        "only the embedding and the fused loss read the tied weight (no logits computed beside the fused loss)"
    lines = {s.line for s in last.covers}
    text = (EXAMPLES / "gpt_shakespeare.nn").read_text().splitlines()
    head = next(i for i, ln in enumerate(text, 1) if 'name="lm_head"' in ln)
    loss = next(i for i, ln in enumerate(text, 1) if ln.strip().startswith("loss"))
    assert lines == {head, loss}, f"the fused node should cover the lm_head line {head} and the loss line {loss}, got {lines}"


def test_classifier_head_with_bias_fuses_with_its_bias():
    for file in ("mnist_mlp.nn", "mnist_cnn.nn"):
        g = _triton(_objective(EXAMPLES / file))
        last = g.outputs[0].producer
        assert last.op == "linear_cross_entropy" and last.attrs["bias"], f"{file}: {last.op} {last.attrs}"
        assert last.inputs[2].producer.attrs["name"].endswith(".bias")


def test_the_pass_alone_fires_on_plain_linear_and_the_torch_result_is_exact():
    plain = _objective(HEAD % "linear(h, V)")
    fused = apply(_objective(HEAD % "linear(h, V)"), fuse_loss)
    assert ops(fused)["linear_cross_entropy"] == 1 and "cross_entropy_loss" not in ops(fused), dict(ops(fused))
    m0, _ = lower(plain)
    m1, _ = lower(fused)
    m1.load_state_dict(m0.state_dict())
    x, y = torch.randn(2, 5, 8), torch.randint(0, 13, (2, 5))
    assert torch.equal(m1(x, y), m0(x, y)), "the fused objective's torch reference must compute the same loss"


def test_bias_folded_by_fuse_epilogues_joins_the_loss():
    src = """model M(x: f32[B, 8], b: f32[5]) -> f32[B, 5] {
    return linear(x, 5, bias=false) + b
}"""
    g = apply(_objective(src), fuse_epilogues, fuse_loss)
    last = g.outputs[0].producer
    assert last.op == "linear_cross_entropy" and last.attrs["bias"] and len(last.inputs) == 4, dict(ops(g))


def test_logits_used_elsewhere_stay_materialized_and_the_reason_is_logged():
    # a loss reading the logits twice
    g = apply(_objective(HEAD % "linear(h, V)", "cross_entropy(out, y) + mean(out)"), fuse_loss)
    assert "linear_cross_entropy" not in ops(g) and ops(g)["cross_entropy_kernel"] == 1, dict(ops(g))
    assert "the logits are used elsewhere (two users)" in reasons(g), reasons(g)


def test_an_activation_between_linear_and_loss_keeps_them_apart():
    g = _triton(_objective(HEAD % "tanh(linear(h, V))"))
    assert ops(g)["cross_entropy_kernel"] == 1 and "linear_cross_entropy" not in ops(g), dict(ops(g))
    assert "a tanh activation between the linear and the loss" in reasons(g), reasons(g)


def test_a_softmax_ending_model_trains_on_the_logits_before_it_and_fuses():
    g = _triton(_objective(HEAD % "softmax(linear(h, V), dim=-1)"))  # the loss reads the softmax's input
    assert ops(g)["linear_cross_entropy"] == 1 and "softmax" not in ops(g), dict(ops(g))


def test_fp64_logits_stay_on_pytorch():
    src = """model M(x: f32[B, 8]) -> f64[B, 5] {
    return cast(linear(x, 5), "f64")
}"""
    g = _triton(_objective(src))
    assert ops(g)["cross_entropy_loss"] == 1 and not {"linear_cross_entropy", "cross_entropy_kernel"} & set(ops(g))
    assert "fp64 logits" in reasons(g), reasons(g)


def test_label_smoothing_stays_on_pytorch():
    g = _triton(_objective(HEAD % "linear(h, V)", "cross_entropy(label_smoothing=0.1)"))
    last = g.outputs[0].producer
    assert last.op == "cross_entropy_loss" and last.attrs["label_smoothing"] == 0.1, last.op
    assert "label smoothing 0.1 (the kernels have none)" in reasons(g), reasons(g)


def test_a_model_graph_has_no_loss_to_fuse():
    g = apply(graph(HEAD % "linear(h, V)"), fuse_loss)
    assert "linear_cross_entropy" not in ops(g) and "cross_entropy_kernel" not in ops(g), dict(ops(g))
