"""Stateful builtins and nn ops, run through their emitted code against torch.nn with copied weights.

Each test builds the builtin with a Builder (so parameter names and shapes are the builtin's),
fills the parameters with random float64 values, runs the emitted code and compares with the
PyTorch module loaded with the same values.
"""
from __future__ import annotations

import pytest
import torch
from ops.opcheck import call, check, make_params, new, run
from torch import nn

from nndsl.ir import dims as D

SZ = {"B": 3, "T": 7}


def load(module: nn.Module, P: dict, prefix: str) -> nn.Module:
    """``module`` in float64 with the parameters/buffers ``<prefix>.<name>`` of P (strict: all must match)."""
    sd = {k[len(prefix) + 1:]: v for k, v in P.items() if k.startswith(prefix + ".")}
    module = module.double()
    module.load_state_dict(sd, strict=True)
    return module


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias):
    check({"x": "f32[B, T, 5]"}, lambda b, x: call(b, "linear", x, 11, bias=bias, inst="fc"),
          lambda x, P: load(nn.Linear(5, 11, bias=bias), P, "fc")(x), SZ)


@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 1}, {"dilation": 2, "groups": 2, "bias": False}])
def test_conv1d(kw):
    ref_kw = {k: v for k, v in kw.items()}
    check({"x": "f32[B, 4, T]"}, lambda b, x: call(b, "conv1d", x, 6, 3, inst="c", **kw),
          lambda x, P: load(nn.Conv1d(4, 6, 3, **ref_kw), P, "c")(x), {"B": 2, "T": 13})


@pytest.mark.parametrize("kw", [{}, {"stride": [2, 1], "padding": [1, 2]}, {"dilation": 2, "groups": 3}])
def test_conv2d(kw):
    ref_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    check({"x": "f32[B, 3, 11, W]"}, lambda b, x: call(b, "conv2d", x, 6, [3, 2], inst="c", **kw),
          lambda x, P: load(nn.Conv2d(3, 6, (3, 2), **ref_kw), P, "c")(x), {"B": 2, "W": 9})


@pytest.mark.parametrize("name,ref", [("maxpool1d", nn.MaxPool1d), ("avgpool1d", nn.AvgPool1d)])
def test_pool1d(name, ref):
    check({"x": "f32[B, 4, T]"}, lambda b, x: call(b, name, x, 3, stride=2, padding=1),
          lambda x, P: ref(3, 2, 1)(x), {"B": 2, "T": 13})


@pytest.mark.parametrize("name,ref", [("maxpool2d", nn.MaxPool2d), ("avgpool2d", nn.AvgPool2d)])
def test_pool2d(name, ref):
    check({"x": "f32[B, 2, 13, 9]"}, lambda b, x: call(b, name, x, 2),
          lambda x, P: ref(2)(x), SZ)
    check({"x": "f32[B, 2, 13, 9]"}, lambda b, x: call(b, name, x, [3, 2], stride=[1, 2], padding=[1, 0]),
          lambda x, P: ref((3, 2), (1, 2), (1, 0))(x), SZ)


def test_embeddings():
    check({"idx": "i64[B, T]"}, lambda b, i: call(b, "embedding", i, 5, 6, inst="wte"),
          lambda i, P: load(nn.Embedding(5, 6), P, "wte")(i), SZ)

    def build(b, i):
        return b.op("add", [call(b, "embedding", i, 5, 6, inst="wte"), call(b, "pos_embedding", i, 9, 6, inst="wpe")])

    check({"idx": "i64[B, T]"}, build, lambda i, P: P["wte.weight"][i] + P["wpe.weight"][:7], SZ)
    b, (i,) = new(idx="i64[B, T]")
    out = call(b, "pos_embedding", i, 4, 6)
    with pytest.raises(ValueError, match="sequence length 7 exceeds max_len 4"):
        run(b.graph, [torch.zeros(3, 7, dtype=torch.long)], SZ, make_params(b.graph), outputs=[out])


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm(bias):
    check({"x": "f32[B, T, 6]"}, lambda b, x: call(b, "layernorm", x, bias=bias, inst="ln"),
          lambda x, P: load(nn.LayerNorm(6, bias=bias), P, "ln")(x), SZ)


def test_rmsnorm():
    check({"x": "f32[B, T, 6]"}, lambda b, x: call(b, "rmsnorm", x, inst="n"),
          lambda x, P: load(nn.RMSNorm(6, eps=1e-6), P, "n")(x), SZ)


@pytest.mark.parametrize("spec,ref", [("f32[B, 5]", nn.BatchNorm1d), ("f32[B, 5, T]", nn.BatchNorm1d),
                                      ("f32[B, 5, T, 3]", nn.BatchNorm2d)])
def test_batchnorm_train_and_eval(spec, ref):
    b, (x,) = new(x=spec)
    b.graph.outputs = [call(b, "batchnorm", x, momentum=0.3, inst="bn")]
    P = make_params(b.graph)
    module = load(ref(5, momentum=0.3), {k: v.clone() for k, v in P.items()}, "bn")
    for training in (True, True, False):
        xs = [torch.randn(*([4, 5, 7, 3][:len(b.graph.inputs[0].type.shape)]), dtype=torch.float64) + 1]
        module.train(training)
        got = run(b.graph, xs, {"B": 4, "T": 7}, P, training=training)[0]
        torch.testing.assert_close(got, module(xs[0]), rtol=0, atol=1e-12)
        for k, v in module.state_dict().items():  # running stats and num_batches_tracked follow nn.BatchNorm
            torch.testing.assert_close(P[f"bn.{k}"], v, rtol=0, atol=1e-12, msg=f"bn.{k}")
    assert P["bn.num_batches_tracked"].item() == 2


def _ref_attention(q, k, v, causal, scale):
    s = q @ k.transpose(-2, -1) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


@pytest.mark.parametrize("causal,scale", [(False, None), (True, None), (True, 0.3)])
def test_attention(causal, scale):
    check({"q": "f32[B, 2, T, 4]", "k": "f32[B, 2, T, 4]", "v": "f32[B, 2, T, 3]"},
          lambda b, q, k, v: call(b, "attention", q, k, v, causal=causal, scale=scale, dropout=0.25),
          lambda q, k, v, P: _ref_attention(q, k, v, causal, scale), SZ)


def test_attention_dropout_only_while_training():
    b, vals = new(q="f32[B, T, 4]", k="f32[B, T, 4]", v="f32[B, T, 4]")
    out = call(b, "attention", *vals, dropout=0.5)
    xs = [torch.randn(3, 7, 4, dtype=torch.float64) for _ in range(3)]
    torch.manual_seed(0)
    got = run(b.graph, xs, SZ, outputs=[out], training=True)[0]
    torch.manual_seed(0)
    want = torch.nn.functional.scaled_dot_product_attention(*xs, dropout_p=0.5)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, _ref_attention(*xs, False, None))


def test_logmel_matches_a_direct_dft():
    """Framing, Hann window, |DFT|^2 and triangular HTK mel filters written out by hand."""
    import math

    sr, n_fft, hop, n_mels, N = 8000, 64, 20, 10, 203
    x = torch.randn(2, N, dtype=torch.float64)
    got = check({"x": "f32[B, N]"}, lambda b, x: call(b, "logmel", x, sample_rate=sr, n_fft=n_fft, hop=hop,
                                                         n_mels=n_mels),
                lambda x, P: _ref_logmel(x, sr, n_fft, hop, n_mels, math), {"B": 2, "N": N}, tol=1e-9,
                inputs=[x])[0][0]
    assert got.shape == (2, n_mels, N // hop + 1)


def _ref_logmel(x, sr, n_fft, hop, n_mels, math):
    pad = n_fft // 2
    xp = torch.nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    frames = xp.unfold(-1, n_fft, hop)  # [B, F, n_fft]
    n = torch.arange(n_fft, dtype=torch.float64)
    win = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)
    kk = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    ang = 2 * math.pi * kk[:, None] * n[None, :] / n_fft
    fr = frames * win
    power = (fr @ torch.cos(ang).T) ** 2 + (fr @ torch.sin(ang).T) ** 2  # [B, F, n_freqs]
    mel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    pts = [inv(mel(sr / 2) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = torch.zeros(n_fft // 2 + 1, n_mels, dtype=torch.float64)
    for m in range(n_mels):
        lo, mid, hi = pts[m], pts[m + 1], pts[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * (sr / 2) / (n_fft // 2)
            if lo <= f <= mid:
                fb[k, m] = (f - lo) / (mid - lo)
            elif mid < f <= hi:
                fb[k, m] = (hi - f) / (hi - mid)
    return torch.log(power @ fb + 1e-6).transpose(1, 2)


def test_causal_mask_builtin_takes_device_from_an_input():
    b, (x,) = new(x="i64[B, T]")
    m = call(b, "causal_mask", D.symbol("T"))
    assert b.graph.nodes[-1].inputs == [x] and str(m.type) == "f32[T, T]"
