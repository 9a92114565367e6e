"""Spatial builtins against PyTorch in float64: transposed convolution, padding="same", upsampling,
adaptive average pooling, channel dropout and padding — values and gradients (weights included)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ops.opcheck import call, check, check_grad, fails, new, run, shape
from ops.test_stdlib_emit import load
from torch import nn

from nndsl.errors import NndslShapeError, NndslTypeError


@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 1, "output_padding": 1},
                                {"stride": 3, "dilation": 2, "groups": 2, "bias": False}])
def test_conv_transpose1d(kw):
    build = lambda b, x: call(b, "conv_transpose1d", x, 6, 3, inst="up", **kw)  # noqa: E731
    check({"x": "f32[B, 4, T]"}, build, lambda x, P: load(nn.ConvTranspose1d(4, 6, 3, **kw), P, "up")(x),
          {"B": 2, "T": 5})
    fkw = {k: v for k, v in kw.items() if k != "bias"}
    check_grad({"x": "f32[B, 4, T]"}, build,
               lambda x, P: F.conv_transpose1d(x, P["up.weight"], P.get("up.bias"), **fkw), {"B": 2, "T": 5})


@pytest.mark.parametrize("kw", [{}, {"stride": [2, 1], "padding": [1, 0], "output_padding": [1, 0]},
                                {"stride": 2, "groups": 3, "dilation": [1, 2]}])
def test_conv_transpose2d(kw):
    ref_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    build = lambda b, x: call(b, "conv_transpose2d", x, 6, [3, 2], inst="up", **kw)  # noqa: E731
    check({"x": "f32[B, 3, 5, W]"}, build, lambda x, P: load(nn.ConvTranspose2d(3, 6, (3, 2), **ref_kw), P, "up")(x),
          {"B": 2, "W": 7})
    check_grad({"x": "f32[B, 3, 5, W]"}, build, lambda x, P: F.conv_transpose2d(x, P["up.weight"], P["up.bias"],
                                                                                  **ref_kw), {"B": 2, "W": 7})


def test_conv_transpose_shapes_and_errors():
    b, (x,) = new(x="f32[B, 4, T]")
    y = call(b, "conv_transpose1d", x, 6, 4, stride=2, padding=1)
    assert str(y.type) == "f32[B, 6, 2*T]"  # the usual x2 upsampling layer
    assert b.graph.params["conv_transpose1d.weight"].shape == (4, 6, 4)
    assert "output_padding 2 must be smaller than the stride" in fails(
        "conv_transpose1d", ["f32[B, 4, 9]", "f32[4, 6, 3]"], {"stride": 2, "output_padding": 2})
    assert "expects 4 input channels" in fails("conv_transpose2d", ["f32[B, 3, 9, 9]", "f32[4, 6, 3, 3]"])
    with pytest.raises(NndslTypeError, match=r'conv_transpose2d expects a floating-point input, got i: i64\[B, 3, 4, 4\]'):
        b2, (i,) = new(i="i64[B, 3, 4, 4]")
        call(b2, "conv_transpose2d", i, 6, 3)


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # the reference's own note on even kernels
@pytest.mark.parametrize("name,k,d", [("conv1d", 3, 1), ("conv1d", 4, 1), ("conv1d", 4, 3), ("conv2d", [3, 4], [1, 2]),
                                      ("conv2d", [2, 5], 1)])
def test_padding_same(name, k, d):
    nd = int(name[-2])
    spec = "f32[B, 3, T]" if nd == 1 else "f32[B, 3, T, 9]"
    ref_mod = (nn.Conv1d if nd == 1 else nn.Conv2d)(3, 5, tuple(k) if isinstance(k, list) else k, padding="same",
                                                    dilation=tuple(d) if isinstance(d, list) else d)
    out, _, _ = check({"x": spec}, lambda b, x: call(b, name, x, 5, k, padding="same", dilation=d, inst="c"),
                      lambda x, P: load(ref_mod, P, "c")(x), {"B": 2, "T": 11})
    assert out[0].shape[2:] == ((11,) if nd == 1 else (11, 9))
    conv = F.conv1d if nd == 1 else F.conv2d
    check_grad({"x": spec}, lambda b, x: call(b, name, x, 5, k, padding="same", dilation=d, inst="c"),
               lambda x, P: conv(x, P["c.weight"], P["c.bias"], padding="same", dilation=ref_mod.dilation),
               {"B": 2, "T": 11})


def test_padding_same_and_valid_errors():
    b, (x,) = new(x="f32[B, 3, T]")
    with pytest.raises(NndslTypeError, match='padding="same" needs stride 1, got stride \\[2\\]'):
        call(b, "conv1d", x, 4, 3, stride=2, padding="same")
    with pytest.raises(NndslTypeError, match='padding must be an int, 1 ints, "same" or "valid", got \'full\''):
        call(b, "conv1d", x, 4, 3, padding="full")
    y = call(b, "conv1d", x, 4, 3, padding="valid")
    assert str(y.type) == "f32[B, 4, T - 2]"


@pytest.mark.parametrize("spec,kw,ref", [
    ("f32[B, 3, 5]", {"scale_factor": 2}, lambda x: x.repeat_interleave(2, dim=-1)),
    ("f32[B, 3, 5, 4]", {"scale_factor": [2, 3]}, lambda x: x.repeat_interleave(2, -2).repeat_interleave(3, -1)),
    ("f32[B, 3, 5, 4]", {"size": [7, 9]}, lambda x: F.interpolate(x, size=(7, 9), mode="nearest")),
    ("f32[B, 3, 5, 4]", {"scale_factor": 1.5, "mode": "bilinear"},
     lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear")),
    ("f32[B, 3, 5, 4]", {"size": [8, 6], "mode": "bilinear", "align_corners": True},
     lambda x: F.interpolate(x, size=(8, 6), mode="bilinear", align_corners=True)),
    ("f32[B, 3, 5]", {"scale_factor": 2, "mode": "linear"}, lambda x: F.interpolate(x, scale_factor=2, mode="linear")),
])
def test_upsample(spec, kw, ref):
    check_grad({"x": spec}, lambda b, x: call(b, "upsample", x, **kw), lambda x, P: ref(x), {"B": 2})


def test_upsample_bilinear_by_hand():
    """Bilinear x2 (align_corners=false) on one row: the half-pixel formula written out."""
    x = torch.randn(1, 1, 1, 3, dtype=torch.float64)
    b, (xv,) = new(x="f32[1, 1, 1, 3]")
    (got,) = run(b.graph, [x], {}, outputs=[call(b, "upsample", xv, scale_factor=[1, 2], mode="bilinear")])
    r = x[0, 0, 0]
    want = torch.stack([r[0], 0.75 * r[0] + 0.25 * r[1], 0.25 * r[0] + 0.75 * r[1], 0.75 * r[1] + 0.25 * r[2],
                        0.25 * r[1] + 0.75 * r[2], r[2]])
    assert torch.allclose(got[0, 0, 0], want, atol=1e-12), (got, want)


def test_upsample_shapes_and_errors():
    assert shape("upsample", ["f32[B, C, H, W]"], {"mode": "nearest", "scale": (2.0, 2.0)}) == "f32[B, C, 2*H, 2*W]"
    assert shape("upsample", ["f32[B, 3, 5]"], {"mode": "nearest", "scale": (1.5,)}) == "f32[B, 3, 7]"
    assert "mode 'bilinear' does not apply to a rank-3 input" in fails(
        "upsample", ["f32[B, 3, 5]"], {"mode": "bilinear", "scale": (2.0,)})
    b, (x,) = new(x="f32[B, 3, 5, 5]")
    with pytest.raises(NndslTypeError, match="exactly one of scale_factor= and size="):
        call(b, "upsample", x)
    with pytest.raises(NndslTypeError, match="scale_factor needs 2 values"):
        call(b, "upsample", x, scale_factor=[2, 2, 2])


@pytest.mark.parametrize("name,spec,out,ref", [
    ("adaptive_avgpool1d", "f32[B, 4, 13]", 5, nn.AdaptiveAvgPool1d(5)),
    ("adaptive_avgpool2d", "f32[B, 4, 13, 7]", [3, 2], nn.AdaptiveAvgPool2d((3, 2))),
    ("adaptive_avgpool2d", "f32[B, 4, 13, 7]", 1, nn.AdaptiveAvgPool2d(1)),
])
def test_adaptive_avgpool(name, spec, out, ref):
    check_grad({"x": spec}, lambda b, x: call(b, name, x, out), lambda x, P: ref(x), {"B": 3})


def test_adaptive_avgpool_by_hand():
    """Cells of [13] into 5: start floor(i*13/5), end ceil((i+1)*13/5)."""
    x = torch.randn(2, 3, 13, dtype=torch.float64)
    b, (xv,) = new(x="f32[B, 3, 13]")
    (got,) = run(b.graph, [x], {"B": 2}, outputs=[call(b, "adaptive_avgpool1d", xv, 5)])
    cells = [(i * 13 // 5, -(-(i + 1) * 13 // 5)) for i in range(5)]
    want = torch.stack([x[..., s:e].mean(-1) for s, e in cells], -1)
    assert torch.allclose(got, want, atol=1e-12)
    assert shape("adaptive_avgpool2d", ["f32[B, C, H, W]"], {"out": (2, 3)}) == "f32[B, C, 2, 3]"
    assert "output sizes must be positive" in fails("adaptive_avgpool1d", ["f32[B, 3, 8]"], {"out": (0,)})


def test_dropout2d_zeroes_whole_channels_in_training_only():
    b, (x,) = new(x="f32[B, C, 5, 3]")
    y = call(b, "dropout2d", x, 0.4)
    xs = torch.randn(8, 50, 5, 3, dtype=torch.float64)
    (got,) = run(b.graph, [xs], {"B": 8, "C": 50}, outputs=[y], training=True)
    kept = got.abs().sum(dim=(2, 3)) > 0
    assert torch.allclose(got[kept], xs[kept] / 0.6, atol=1e-12)  # kept channels are scaled whole
    assert (got[~kept] == 0).all() and 0.2 < (~kept).float().mean().item() < 0.6
    (got,) = run(b.graph, [xs], {"B": 8, "C": 50}, outputs=[y], training=False)
    assert torch.equal(got, xs)
    with pytest.raises(NndslShapeError, match="dropout2d expects a rank-4 input"):
        call(b, "dropout2d", new(v="f32[B, 5]")[1][0], 0.5)
    with pytest.raises(NndslTypeError, match="p must be in"):
        call(b, "dropout2d", x, 1.5)


def test_pad():
    check_grad({"x": "f32[B, 3, T]"}, lambda b, x: call(b, "pad", x, [1, 2, 0, 1], value=0.5),
               lambda x, P: torch.cat([torch.cat([torch.full((2, 3, 1), 0.5, dtype=x.dtype), x,
                                                  torch.full((2, 3, 2), 0.5, dtype=x.dtype)], -1),
                                       torch.full((2, 1, 10), 0.5, dtype=x.dtype)], 1), {"B": 2, "T": 7})
    assert shape("pad", ["f32[B, T]"], {"pads": (2, 3)}) == "f32[B, T + 5]"
    assert "pairs of non-negative ints" in fails("pad", ["f32[B, T]"], {"pads": (1,)})
