"""Weight tying from source (``linear(h, V, weight="wte.weight")``) and the new call forms of the
stdlib as a user writes them: one parameter, counted once, trained through both uses; errors
located at the call."""
from __future__ import annotations

import pytest
import torch

import nndsl
from nndsl.errors import NndslNameError, NndslShapeError, NndslTypeError

GPT = """
block Block(x: f32[B, T, D], heads: int) -> f32[B, T, D] {{
    q, k, v = split(linear(layernorm(x), 3 * D, name="qkv"), 3, dim=-1)
    q = q.reshape([B, T, heads, D / heads]).transpose(1, 2)
    k = k.reshape([B, T, heads, D / heads]).transpose(1, 2)
    v = v.reshape([B, T, heads, D / heads]).transpose(1, 2)
    y = attention(rope(q), rope(k), v, causal=true).transpose(1, 2).reshape([B, T, D])
    x = x + linear(y, D, name="proj")
    return x + linear(gelu(linear(layernorm(x), 4 * D)), D)
}}
model TinyGPT(idx: i64[B, T], V: int = 13, D: int = 16, heads: int = 2, L: int = 2) -> f32[B, T, V] {{
    x = embedding(idx, V, D, name="wte")
    repeat L as blocks {{
        x = Block(x, heads)
    }}
    return linear(layernorm(x, name="ln_f"), V, bias=false, name="lm_head"{tie})
}}
"""


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_tied_gpt_has_one_shared_weight_and_trains():
    torch.manual_seed(0)
    tied = nndsl.compile(GPT.format(tie=', weight="wte.weight"'))
    untied = nndsl.compile(GPT.format(tie=""))
    V, D = 13, 16
    assert n_params(tied) == n_params(untied) - V * D
    assert "lm_head.weight" in untied.state_dict() and "lm_head.weight" not in tied.state_dict()
    assert [k for k in tied.state_dict() if k.endswith("wte.weight")] == ["wte.weight"]
    idx = torch.randint(0, V, (3, 9))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.Adam(tied.parameters(), lr=1e-2)
    w0 = tied.state_dict()["wte.weight"].clone()
    losses = []
    for _ in range(6):
        logits = tied(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert not torch.equal(tied.state_dict()["wte.weight"], w0)


def test_tied_weight_gets_the_gradient_of_both_uses():
    src = """model M(idx: i64[B, T], V: int = 7, D: int = 5) -> f32[B, T, V] {
    return linear(embedding(idx, V, D, name="wte"), V, bias=false, weight="wte.weight")
}"""
    m = nndsl.compile(src).double()
    idx = torch.randint(0, 7, (2, 4))
    w = m.state_dict()["wte.weight"].clone().requires_grad_(True)
    (torch.nn.functional.embedding(idx, w) @ w.T).pow(2).sum().backward()
    m(idx).pow(2).sum().backward()
    (p,) = list(m.parameters())
    assert torch.allclose(p.grad, w.grad, atol=1e-12)


def test_embedding_may_share_a_weight_declared_earlier_and_tensor_weights_work():
    src = """model M(idx: i64[B, T], x: f32[B, T, D], D: int = 5) -> f32[B, T, D] {
    h = linear(x, D, name="proj")
    return embedding(idx, D, D, weight="proj.weight") + h
}"""
    m = nndsl.compile(src)
    assert sorted(m.state_dict()) == ["proj.bias", "proj.weight"]
    src = """model F(x: f32[B, 5], w: f32[3, 5]) -> f32[B, 3] {
    return linear(x, 3, weight=w)
}"""
    m = nndsl.compile(src)
    x, w = torch.randn(4, 5), torch.randn(3, 5)
    assert n_params(m) == 3 and torch.allclose(m(x, w), x @ w.T + m.state_dict()["linear.bias"])


def _error(src: str, cls: type):
    with pytest.raises(cls) as ei:
        nndsl.compile(src)
    return ei.value


def test_tying_errors_are_located_and_say_what_is_wrong():
    err = _error("""model M(idx: i64[B, T]) -> f32[B, T, 7] {
    h = embedding(idx, 7, 5, name="wte")
    return linear(h, 7, weight="wte.wieght")
}""", NndslNameError)
    assert "linear: no parameter 'wte.wieght' is declared before this call" in err.message
    assert "wte.weight" in (err.hint or "") and err.span.line == 3
    err = _error("""model M(idx: i64[B, T]) -> f32[B, T, 9] {
    h = embedding(idx, 7, 5, name="wte")
    return linear(h, 9, weight="wte.weight")
}""", NndslShapeError)
    assert "linear: weight 'wte.weight' is f32[7, 5], but this layer needs [9, 5]" in err.message
    err = _error("""model M(x: f32[B, 3]) -> f32[B, 3] {
    h = batchnorm(x, name="bn")
    return linear(h, 3, weight="bn.running_var")
}""", NndslTypeError)
    assert "'bn.running_var' is a buffer" in err.message
    err = _error("""model M(x: f32[B, 3]) -> f32[B, 3] {
    return linear(x, 3, weight=2)
}""", NndslTypeError)
    assert "must name a parameter" in err.message


def test_tying_from_inside_a_block_finds_the_models_parameter():
    src = """block Head(h: f32[B, T, D], V: int) -> f32[B, T, V] {
    return linear(h, V, bias=false, weight="wte.weight")
}
model M(idx: i64[B, T], V: int = 7, D: int = 6) -> f32[B, T, V] {
    return Head(embedding(idx, V, D, name="wte"), V)
}"""
    assert n_params(nndsl.compile(src)) == 7 * 6


def test_an_integer_input_to_a_layer_is_a_dtype_error_at_the_call():
    err = _error("""model M(x: i64[B, 784]) -> f32[B, 10] {
    return linear(x, 10)
}""", NndslTypeError)
    assert err.message == "linear expects a floating-point input, got x: i64[B, 784]"
    assert err.hint == 'cast(x, "f32") first' and (err.span.line, err.span.col) == (2, 12)
    err = _error("""model M(img: i64[B, 1, 28, 28]) -> f32[B, 4, 26, 26] {
    return conv2d(img, 4, kernel=3)
}""", NndslTypeError)
    assert err.message == "conv2d expects a floating-point input, got img: i64[B, 1, 28, 28]"


def test_new_call_forms_from_source():
    src = """model M(x: f32[B, 3, T], q: f32[B, 4, S, 8], k: f32[B, 2, S, 8], m: bool[B, 1, 1, S]) -> f32[B, 4, S, 8] {
    h = conv1d(x, 5, kernel=4, padding="same")
    s = max(q, q * 0.5) + attention(q, k, k, mask=m)
    return s + mean(h) * 0.0
}"""
    m = nndsl.compile(src).double()
    x, q, k = (torch.randn(*s, dtype=torch.float64) for s in ((2, 3, 11), (2, 4, 5, 8), (2, 2, 5, 8)))
    mask = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    out = m(x, q, k, mask)
    want = torch.maximum(q, q * 0.5) + torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), k.repeat_interleave(2, 1))
    assert torch.allclose(out, want, atol=1e-10)


def test_the_attribute_form_is_the_string_form():
    a = nndsl.compile(GPT.format(tie=", weight=wte.weight"))
    b = nndsl.compile(GPT.format(tie=', weight="wte.weight"'))
    assert list(a.state_dict()) == list(b.state_dict()) and n_params(a) == n_params(b)


def test_an_attribute_of_a_value_is_refused_at_its_place():
    src = GPT.format(tie="").replace('return linear(layernorm(x, name="ln_f"), V, bias=false, name="lm_head")',
                                     'return linear(x, V, weight=x.weight)')
    with pytest.raises(nndsl.NndslError) as e:
        nndsl.compile(src)
    assert "only a parameter path such as wte.weight" in e.value.message and e.value.span.col > 1


def test_an_attribute_that_is_not_a_parameter_path_says_so():
    src = "model M(x: f32[B, 4]) -> f32[B, 4] {\n    y = x.shape\n    return y\n}"
    with pytest.raises(nndsl.NndslError) as e:
        nndsl.compile(src)
    assert (e.value.span.line, e.value.span.col) == (2, 9) and "call a method (x.shape(...))" in e.value.message


def test_embedding_tables_take_an_init_scale():
    src = """model M(idx: i64[B, T], V: int = 301, D: int = 64) -> f32[B, T, D] {
        return embedding(idx, V, D, name="wte", std=0.02) + pos_embedding(idx, 32, D, name="wpe")
    }"""
    m = nndsl.compile(src)
    sd = m.state_dict()
    assert abs(sd["wte.weight"].std().item() - 0.02) < 0.002
    assert abs(sd["wpe.weight"].std().item() - 1.0) < 0.1
    with pytest.raises(NndslTypeError, match="std must be positive"):
        nndsl.compile(src.replace("std=0.02", "std=0.0"))
