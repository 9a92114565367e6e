"""The PyTorch backend: compiled models against hand-written PyTorch with the same weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import nndsl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_cnn_matches_hand_written_torch_in_float64():
    model = nndsl.compile(EXAMPLES / "mnist_cnn.nn").double()
    sd = model.state_dict()
    assert list(sd) == ["conv2d.weight", "conv2d.bias", "conv2d_1.weight", "conv2d_1.bias",
                        "linear.weight", "linear.bias", "linear_1.weight", "linear_1.bias"]
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    h = F.max_pool2d(F.relu(F.conv2d(x, sd["conv2d.weight"], sd["conv2d.bias"])), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, sd["conv2d_1.weight"], sd["conv2d_1.bias"])), 2)
    h = F.relu(F.linear(h.flatten(1), sd["linear.weight"], sd["linear.bias"]))
    ref = F.linear(h, sd["linear_1.weight"], sd["linear_1.bias"])
    out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_gpt_matches_hand_written_block_in_float64():
    src = """
    block Attn(x: f32[B, T, D], heads: int) -> f32[B, T, D] {
        q, k, v = split(linear(x, 3 * D, name="qkv"), 3, dim=-1)
        q = q.reshape([B, T, heads, D / heads]).transpose(1, 2)
        k = k.reshape([B, T, heads, D / heads]).transpose(1, 2)
        v = v.reshape([B, T, heads, D / heads]).transpose(1, 2)
        s = q @ k.transpose(-2, -1) * (1.0 / sqrt(D / heads)) + causal_mask(T)
        y = (softmax(s, dim=-1) @ v).transpose(1, 2).reshape([B, T, D])
        return linear(y, D, name="proj")
    }
    model M(idx: i64[B, T], D: int = 24, heads: int = 3) -> f32[B, T, 11] {
        x = embedding(idx, 11, D, name="wte")
        x = x + Attn(layernorm(x, name="ln"), heads, name="attn")
        return linear(x, 11, name="head")
    }
    """
    model = nndsl.compile(src).double().eval()
    sd = model.state_dict()
    B, T, D, H = 3, 7, 24, 3
    idx = torch.randint(0, 11, (B, T))
    x = F.embedding(idx, sd["wte.weight"])
    h = F.layer_norm(x, (D,), sd["ln.weight"], sd["ln.bias"])
    qkv = F.linear(h, sd["attn.qkv.weight"], sd["attn.qkv.bias"])
    q, k, v = (t.reshape(B, T, H, D // H).transpose(1, 2) for t in qkv.split(D, dim=-1))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y = F.linear(y.transpose(1, 2).reshape(B, T, D), sd["attn.proj.weight"], sd["attn.proj.bias"])
    ref = F.linear(x + y, sd["head.weight"], sd["head.bias"])
    torch.testing.assert_close(model(idx), ref, rtol=1e-10, atol=1e-10)


def test_state_dict_loads_into_a_fresh_compile_and_gradients_flow():
    a = nndsl.compile(EXAMPLES / "mnist_lstm.nn", hidden=19)
    b = nndsl.compile(EXAMPLES / "mnist_lstm.nn", hidden=19)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(a(x), b(x))
    a(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in a.parameters())


def test_runtime_input_check_names_the_input_and_both_shapes():
    model = nndsl.compile(EXAMPLES / "mnist_mlp.nn")
    with pytest.raises(ValueError, match=r"input 'x' must have shape f32\[B, 1, 28, 28\], got \[2, 784\]"):
        model(torch.randn(2, 784))


def test_parameters_initialized_like_pytorch():
    """linear weights U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as nn.Linear does."""
    model = nndsl.compile(EXAMPLES / "mnist_mlp_adam.nn")
    w = model.state_dict()["linear.weight"]
    bound = 1 / 784 ** 0.5
    assert w.shape == (256, 784)
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert abs(w.std().item() - bound / 3 ** 0.5) < 0.05 * bound


def test_torch_compile_can_trace_the_generated_forward():
    model = nndsl.compile(EXAMPLES / "mnist_mlp.nn")
    x = torch.randn(3, 1, 28, 28)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
