"""The triton pipeline changes how a model is computed, never what: for every example (at reduced
size) and every hand-written spelling, the fused graph run by the torch backend's reference emits
gives the unfused graph's outputs and gradients, in float64, with the same weights."""
from __future__ import annotations

import re

import pytest

from .kit import EXAMPLES, SPELLINGS, assert_same_numbers, ops

# (file, model, hyperparameters, sizes of the symbolic dims, int input bound)
EXAMPLE_CASES = [
    ("linear_regression.nn", None, {}, {"B": 5}, 2),
    ("mnist_mlp.nn", None, {"hidden": 24}, {"B": 3}, 2),
    ("mnist_mlp_adam.nn", None, {"hidden": 24}, {"B": 3}, 2),
    ("mnist_cnn.nn", None, {}, {"B": 2}, 2),
    ("mnist_lstm.nn", None, {"hidden": 8}, {"B": 2}, 2),
    ("gpt_shakespeare.nn", None, {"L": 2, "heads": 2, "D": 32, "ctx": 16}, {"B": 3, "T": 11}, 65),
    ("spoken_letters.nn", "SpokenLetters", {}, {"B": 2}, 2),
    ("spoken_letters.nn", "SpokenLettersConv", {"width": 8}, {"B": 2}, 2),
]


@pytest.mark.parametrize("file,model,hp,sizes,high", EXAMPLE_CASES, ids=[c[0] + (c[1] or "") for c in EXAMPLE_CASES])
def test_examples_eval_mode(file, model, hp, sizes, high):
    assert_same_numbers(EXAMPLES / file, model, sizes=sizes, int_high=high, hp=hp)


@pytest.mark.parametrize("file,model,hp,sizes,high", [
    ("gpt_shakespeare.nn", None, {"L": 2, "heads": 2, "D": 32, "ctx": 16, "dropout": 0.0}, {"B": 2, "T": 16}, 65),
    ("spoken_letters.nn", "SpokenLettersConv", {"width": 8, "drop": 0.0}, {"B": 3}, 2),
    ("mnist_cnn.nn", None, {}, {"B": 2}, 2),
], ids=["gpt", "spoken_conv", "cnn"])
def test_train_mode_without_dropout(file, model, hp, sizes, high):
    """In train mode with dropout p=0 (batchnorm uses batch statistics) the results still agree."""
    assert_same_numbers(EXAMPLES / file, model, sizes=sizes, int_high=high, hp=hp, train=True)


SPELLED = re.findall(r"^model (\w+)", SPELLINGS.read_text(), re.M)
KERNEL = {"Attn": "flash_attention", "SoftmaxS": "softmax_kernel", "SoftmaxP": "softmax_kernel",
          "LogSoftmax": "log_softmax_kernel", "LayerNorm": "layernorm_kernel", "RmsNorm": "rmsnorm_kernel"}


@pytest.mark.parametrize("model", SPELLED)
def test_spellings_are_raised_claimed_and_exact(model):
    _, fused = assert_same_numbers(SPELLINGS, model, sizes={"B": 2, "H": 3, "T": 5})
    kernel = next(k for prefix, k in KERNEL.items() if model.startswith(prefix))
    # the whole spelling became the one kernel op: nothing else computes
    assert ops(fused) == {kernel: 1}, f"{model}: expected only {kernel}, got {dict(ops(fused))}"


def test_train_mode_with_dropout_draws_the_same_masks():
    """Dropout fused into matmul epilogues and flash attention runs in the same order as before, so
    under the same seed the fused graph draws the very same masks (fusion never moves a dropout)."""
    hp = {"L": 2, "heads": 2, "D": 32, "ctx": 16, "dropout": 0.3}
    _, fused = assert_same_numbers(EXAMPLES / "gpt_shakespeare.nn", sizes={"B": 2, "T": 16}, int_high=65, hp=hp,
                                   train=True)
    assert ops(fused)["flash_attention"] == 2 and all(
        n.attrs["dropout"] == 0.3 for n in fused.nodes if n.op == "fused_linear" and n.attrs["residual"])


EPILOGUES = {
    "linear+gelu_tanh+dropout+residual": ("x + dropout(gelu(linear(x, 8), approximate=\"tanh\"), 0.1)", "fused_linear"),
    "matmul+bias+relu": ("relu(x @ w + b)", "fused_matmul"),
    "linear+bias+tanh": ("tanh(linear(x, 8, bias=false) + b)", "fused_linear"),
    "matmul+sigmoid+residual": ("x + sigmoid(x @ w)", "fused_matmul"),
    "linear+silu": ("silu(linear(x, 8))", "fused_linear"),
}
EPILOGUE_SRC = """model M(x: f32[B, T, N], w: f32[N, N], b: f32[N], N: int = 8) -> f32[B, T, N] {
    return %s
}"""


@pytest.mark.parametrize("case", EPILOGUES)
def test_fused_epilogues_are_exact(case):
    expr, fused_op = EPILOGUES[case]
    _, fused = assert_same_numbers(EPILOGUE_SRC % expr, sizes={"B": 2, "T": 3})
    assert ops(fused) == {fused_op: 1}, dict(ops(fused))
