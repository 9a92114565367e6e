"""Elaboration from source text: the parser's AST through the elaborator, with test and real builtins."""
from __future__ import annotations

from pathlib import Path

import pytest

from nndsl.elaborate import elaborate
from nndsl.errors import NndslConfigError, NndslShapeError, NndslTypeError
from nndsl.ir import dims as D
from nndsl.ir.verify import verify

B, T = D.symbol("B"), D.symbol("T")


def ops(g):
    return [n.op for n in g.nodes if n.op != "param"]


# ----------------------------------------------------------------------------- from source text
def compile_src(text, model_name=None, **hp):
    from nndsl.frontend.parser import parse

    g = elaborate(parse(text, "src.nn"), model_name, hp)
    verify(g)
    return g


SRC = '''
block Attn(x: f32[B, T, D], heads: int) -> f32[B, T, D] {
    q, k, v = t_split(t_linear(x, 3 * D, name="qkv"), 3, dim=-1)
    q = q.t_reshape([B, T, heads, D / heads]).t_transpose(1, 2)
    return t_linear(v - k, D, name="proj")
}
block Block(x: f32[B, T, D], heads: int) -> f32[B, T, D] {
    x = x + Attn(t_layernorm(x, name="ln_1"), heads, name="attn")
    return x
}
model Net(x: f32[B, T, D], D: int = 30, L: int = 4, heads: int = 5) -> f32[B, T, D] {
    repeat L as blocks {
        x = Block(x, heads)
    }
    return x[:, :, :D] * 0.5
}
'''


def test_source_program_with_repeat_of_blocks():
    g = compile_src(SRC)
    assert "blocks.3.attn.qkv.weight" in g.params and "blocks.4.attn.qkv.weight" not in g.params
    assert g.params["blocks.0.attn.proj.weight"].shape == (30, 30)
    assert ops(g)[-2:] == ["getitem", "mul_s"]
    assert [n.attrs["shape"] for n in g.nodes if n.op == "t_reshape"][0][2:] == [5, 6]
    spans = [(n.span.line, n.span.col) for n in g.nodes if n.op == "add"]
    assert spans == [(8, 9)] * 4  # `x + Attn(...)`, once per block
    g = compile_src(SRC, L=2, D="20", heads=4)
    assert sorted({k.split(".")[1] for k in g.params if k.startswith("blocks.")}) == ["0", "1"]
    assert str(g.outputs[0].type) == "f32[B, T, 20]"


def test_source_errors_print_with_location():
    from nndsl.errors import NndslError

    with pytest.raises(NndslShapeError) as ei:
        compile_src(SRC, heads=7)
    text = str(ei.value)
    assert text.startswith("src.nn:4:35: shape error: 30 / 7 does not divide exactly")
    assert "q = q.t_reshape([B, T, heads, D / heads])" in text and "^^^^^^^^^" in text
    with pytest.raises(NndslError) as ei:
        compile_src(SRC.replace("t_layernorm(x", "t_layernrom(x"))
    assert str(ei.value).startswith("src.nn:8:18: name error: unknown function 't_layernrom'")
    assert "did you mean 't_layernorm'" in str(ei.value)


# ----------------------------------------------------------------------------- the brief's GPT, real builtins
GPT = (Path(__file__).parent / "gpt_brief.nn").read_text()


def test_brief_gpt_parameters_and_names():
    g = compile_src(GPT)  # the train section names GPT
    assert g.name == "GPT" and g.symbols == ["B", "T"] and str(g.outputs[0].type) == "f32[B, T, 65]"
    d, vocab, ctx, layers = 384, 65, 256, 6
    per_block = (2 * d) + (d * 3 * d + 3 * d) + (d * d + d) + (2 * d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert g.num_parameters() == vocab * d + ctx * d + layers * per_block + 2 * d + d * vocab
    assert g.params["blocks.3.attn.qkv.weight"].shape == (3 * d, d)
    assert [k for k in g.params if k.startswith("blocks.5.")] == [
        f"blocks.5.{k}" for k in ("ln_1.weight", "ln_1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                  "attn.proj.weight", "attn.proj.bias", "ln_2.weight", "ln_2.bias",
                                  "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias")]
    assert "lm_head.bias" not in g.params and "blocks.6.ln_1.weight" not in g.params
    small = compile_src(GPT, D=64, heads="4", L=2)
    assert small.params["blocks.1.mlp.fc.weight"].shape == (256, 64)
    assert list([n.attrs["shape"] for n in small.nodes if n.op == "reshape"][0]) == [B, T, 4, 16]


def test_brief_gpt_bad_head_count_points_at_the_division():
    with pytest.raises(NndslShapeError) as ei:
        compile_src(GPT, heads=5)
    err = ei.value
    assert (err.span.line, err.span.col) == (3, 33) and err.message.startswith("384 / 5 does not divide exactly")


def test_brief_hand_attention():
    g = compile_src(GPT, "Hand")
    assert ops(g) == ["transpose", "matmul", "mul_s", "causal_mask", "add", "softmax", "matmul"]
    assert g.symbols == ["B", "H", "T", "Dh"]
    assert str(g.nodes[2].attrs["value"]) == "1.0/sqrt(Dh)"  # a real-valued expression over a symbolic dim


def test_scalar_on_the_left_end_to_end():
    import torch

    import nndsl

    m = nndsl.compile("model M(x: f32[B, 3], k: float = 0.5) -> f32[B, 3] {\n"
                      "    return (2 - x) / 3 + 1 / (x * x + 1) - -x ** 2 * k\n}\n")
    x = torch.randn(5, 3)
    torch.testing.assert_close(m(x), (2 - x) / 3 + 1 / (x * x + 1) + x ** 2 * 0.5)


def test_a_call_returning_several_values_can_be_returned_whole():
    g = compile_src("block Halves(x: f32[B, N]) -> (f32[B, N / 2], f32[B, N / 2]) {\n"
                    "    return t_split(x, 2)\n}\n"
                    "model M(x: f32[B, 6]) -> (f32[B, 3], f32[B, 3]) {\n    return Halves(x)\n}\n")
    assert [str(v.type) for v in g.outputs] == ["f32[B, 3]", "f32[B, 3]"]
    with pytest.raises(NndslShapeError, match=r"M declares result 2 as f32\[B, 2\], got f32\[B, 3\]"):
        compile_src("model M(x: f32[B, 6]) -> (f32[B, 3], f32[B, 2]) {\n    return t_split(x, 2)\n}\n")


def test_values_carry_source_names_and_config_errors_point_at_the_parameters():
    g = compile_src("model M(x: f32[B, 4], hidden: int = 3) -> f32[B, 1] {\n"
                    "    h = t_linear(x, hidden)\n    a, b, c = t_split(h, 3)\n    return a\n}\n")
    assert [v.name for v in g.inputs] == ["x"]
    assert [v.name for n in g.nodes for v in n.outputs if n.op != "param"] == ["h", "a", "b", "c"]
    with pytest.raises(NndslConfigError) as ei:
        compile_src("model M(x: f32[B, 4],\n        hidden: int = 3) -> f32[B, 3] {\n    return x\n}\n", hidem=4)
    assert str(ei.value).startswith("src.nn:1:9: config error: M has no hyperparameter 'hidem'")
    assert "did you mean 'hidden'?" in str(ei.value)


def test_misspelled_name_keyword_and_bad_override_point_at_the_right_place():
    with pytest.raises(NndslTypeError, match="t_linear has no argument 'nmae'") as ei:
        compile_src('model M(x: f32[B, 4]) -> f32[B, 3] {\n    return t_linear(x, 3, nmae="fc")\n}\n')
    assert "did you mean 'name'?" in str(ei.value) and ei.value.span.line == 2
    with pytest.raises(NndslConfigError) as ei:
        compile_src("model M(x: f32[B, 4],\n        hidden: int = 3) -> f32[B, 3] {\n    return x\n}\n",
                    hidden="big")
    assert str(ei.value).startswith("src.nn:2:9: config error: hyperparameter 'hidden' is an int, got 'big'")


def test_generated_names_skip_names_claimed_explicitly():
    import nndsl

    src = """
    model M(x: f32[B, 4]) -> f32[B, 4] {
        h = linear(x, 4, name="linear_1")
        h = linear(h, 4)
        return linear(h, 4)
    }
    """
    keys = list(nndsl.compile(src).state_dict())
    assert keys == ["linear_1.weight", "linear_1.bias", "linear.weight", "linear.bias",
                    "linear_2.weight", "linear_2.bias"], keys


def test_an_explicit_name_used_twice_is_a_located_error():
    import nndsl

    src = "model M(x: f32[B, 4]) -> f32[B, 4] {\n    h = linear(x, 4, name=\"a\")\n    return linear(h, 4, name=\"a\")\n}\n"
    with pytest.raises(nndsl.NndslNameError) as e:
        nndsl.compile(src)
    assert "'a' is already used" in str(e.value) and ":3:" in str(e.value)
