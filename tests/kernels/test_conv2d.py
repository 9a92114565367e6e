"""conv2d kernels vs F.conv2d in float64: outputs and the gradients of x, weight and bias.

Tests taking `device` use odd sizes that are not multiples of the 32x16x16 interpreter tiles and
run in both groups (CPU under TRITON_INTERPRET=1; compiled on the GPU with NNDSL_TEST_CUDA=1);
the `cuda` tests at real sizes run only in the CUDA run (see tests/conftest.py).
"""
from __future__ import annotations

import importlib

import pytest
import torch

from nndsl.kernels.conv2d import conv2d, conv2d_reference
from tolerance import TOL, assert_close, dot_tol

mod = importlib.import_module("nndsl.kernels.conv2d")  # the module (nndsl.kernels.conv2d is the function)

# (N, C, H, W, Cout, (KH, KW), stride, padding, dilation, groups, bias, activation)
CASES = [
    (2, 3, 9, 11, 4, (3, 3), 1, 1, 1, 1, True, None),  # plain 3x3 "same"
    (1, 5, 7, 9, 6, (3, 3), 2, 1, 1, 1, False, "relu"),  # stride 2
    (1, 4, 11, 7, 6, (5, 3), 1, (2, 1), 1, 2, True, "gelu"),  # 5x3, asymmetric padding, groups 2
    (1, 3, 9, 9, 4, (3, 3), 1, 2, 2, 1, True, "silu"),  # dilation 2
    (2, 1, 7, 7, 4, (1, 1), 2, 0, 1, 1, False, "sigmoid"),  # 1x1, stride 2, one input channel
    (1, 6, 9, 7, 4, (3, 3), 2, 1, 2, 2, True, "tanh"),  # stride 2 + dilation 2 + groups 2
    (1, 5, 11, 9, 6, (5, 3), (2, 1), (2, 1), 1, 1, True, "none"),  # (h, w) stride pair
    (1, 19, 7, 9, 17, (3, 3), 1, 1, 1, 1, False, None),  # several channel tiles in K and N, dz = dy
    (1, 34, 7, 5, 34, (3, 3), 2, 1, 1, 2, True, "silu"),  # 17 channels per group: ragged tiles
]


def _inputs(n, c, h, w, co, k, groups, bias, layout="contiguous", device="cpu", dtype=torch.float32):
    """Fresh random x, weight, bias; x built directly in the requested memory layout."""
    new = dict(device=device, dtype=dtype)
    if layout == "channels_last":
        x = torch.randn(n, c, h, w, **new).contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # a sliced, permuted view: no dimension is contiguous
        x = torch.randn(n, w * 2, c + 2, h, **new).permute(0, 2, 3, 1)[:, 1 : c + 1, :, ::2]
    else:
        x = torch.randn(n, c, h, w, **new)
    weight = (torch.randn(co, c // groups, *k, **new) / (c // groups * k[0] * k[1]) ** 0.5).to(dtype)
    b = torch.randn(co, **new) if bias else None
    return x, weight, b


def _check(x, weight, b, conf, tol):
    """Run conv2d forward + backward and compare all of it with the float64 reference (on x's device)."""
    leaves = [t.detach().requires_grad_() for t in (x, weight) + ((b,) if b is not None else ())]
    xs, ws, bs = leaves[0], leaves[1], leaves[2] if b is not None else None
    y = conv2d(xs, ws, bs, **conf)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, leaves, dy)

    ref_leaves = [t.detach().to(torch.float64).requires_grad_() for t in leaves]
    rb = ref_leaves[2] if b is not None else None
    y_ref = conv2d_reference(ref_leaves[0], ref_leaves[1], rb, **conf)
    ref_grads = torch.autograd.grad(y_ref, ref_leaves, dy.to(torch.float64))
    assert_close("y", y, y_ref, tol)
    for name, g, r in zip(("dx", "dweight", "dbias"), grads, ref_grads):
        assert_close(name, g, r, tol)
    return y, grads


def _case_id(c) -> str:
    n, ci, h, w, co, (kh, kw), s, p, d, g, bias, act = c[:12]
    return f"{n}x{ci}x{h}x{w}-{co}-k{kh}x{kw}-s{s}-p{p}-d{d}-g{g}-{'b' if bias else 'nob'}-{act}".replace(" ", "")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_conv2d_matches_reference(case, device):
    n, c, h, w, co, k, stride, padding, dilation, groups, bias, act = case
    x, weight, b = _inputs(n, c, h, w, co, k, groups, bias, device=device)
    conf = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, activation=act)
    _check(x, weight, b, conf, dot_tol(torch.float32, device))


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_conv2d_non_contiguous_input(layout, device):
    x, weight, b = _inputs(2, 5, 9, 7, 6, (3, 3), 1, True, layout, device=device)
    assert not x.is_contiguous()
    y, (dx, _, _) = _check(x, weight, b, dict(stride=2, padding=1, activation="relu"),
                           dot_tol(torch.float32, device))
    # Outputs and dx follow x's layout like F.conv2d: channels-last in, channels-last out.
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt), f"y strides {y.stride()} are not {fmt}"
    assert dx.is_contiguous(memory_format=fmt), f"dx strides {dx.stride()} are not {fmt}"


def test_conv2d_weight_grad_only(device):
    x, weight, b = _inputs(1, 3, 7, 9, 4, (3, 3), 1, True, device=device)
    ws = weight.clone().requires_grad_()
    y = conv2d(x, ws, b, padding=1, activation="gelu")  # x and bias need no gradient
    dy = torch.randn_like(y)
    (dw,) = torch.autograd.grad(y, [ws], dy)
    wd = weight.double().requires_grad_()
    (dw_ref,) = torch.autograd.grad(conv2d_reference(x.double(), wd, b.double(), padding=1, activation="gelu"),
                                    [wd], dy.double())
    assert_close("dweight", dw, dw_ref, dot_tol(torch.float32, device))


def test_launchers_write_every_element(device):
    """NaN-filled outputs: every element must be written by the forward, dx and dw kernels."""
    tol = dot_tol(torch.float32, device)
    nan = lambda shape: torch.full(shape, float("nan"), device=device)  # noqa: E731
    x, weight, b = _inputs(2, 5, 11, 9, 6, (3, 3), 1, True, device=device)
    conf = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=1)
    y_ref = conv2d_reference(x.double(), weight.double(), b.double(), **conf)
    y, _ = mod.conv2d_fwd(x, weight, b, **conf, out=nan(y_ref.shape))
    assert_close("y", y, y_ref, tol)

    dz = torch.randn(y_ref.shape, device=device)
    xd, wd = x.double().requires_grad_(), weight.double().requires_grad_()
    dx_ref, dw_ref = torch.autograd.grad(conv2d_reference(xd, wd, None, **conf), [xd, wd], dz.double())
    dx = mod.conv2d_bwd_dx(dz, weight, x.shape, **conf, out=nan(x.shape))
    assert_close("dx", dx, dx_ref, tol)
    for splits in (1, 3):  # one pass straight into dw, and split fp32 partials summed afterwards
        dw = mod.conv2d_bwd_dw(dz, x, weight.shape, **conf, out=nan(weight.shape), splits=splits)
        assert_close(f"dw(splits={splits})", dw, dw_ref, tol)


def test_dx_stride_larger_than_kernel(device):
    """Stride 3 with a 1x1 kernel: most input pixels get no gradient and must read exactly zero."""
    x, weight, b = _inputs(1, 3, 7, 8, 4, (1, 1), 1, False, device=device)
    y, (dx, _) = _check(x, weight, b, dict(stride=3), dot_tol(torch.float32, device))
    assert dx[:, :, 1::3].abs().max() == 0 and dx[:, :, :, 2::3].abs().max() == 0


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, match",
    [
        ((1, 4, 7, 7), (6, 3, 3, 3), {}, "channel mismatch"),
        ((1, 6, 7, 7), (6, 3, 3, 3), {"groups": 4}, "groups"),
        ((1, 6, 7, 7), (5, 3, 3, 3), {"groups": 2}, "groups"),
        ((1, 3, 4, 4), (4, 3, 5, 5), {}, "output size"),
        ((1, 3, 7, 7), (4, 3, 3, 3), {"dilation": 4}, "output size"),
        ((3, 7, 7), (4, 3, 3, 3), {}, "x must be a 4-D"),
        ((1, 3, 7, 7), (4, 3, 3), {}, "weight must be a 4-D"),
        ((1, 3, 7, 7), (4, 3, 3, 3), {"activation": "swish"}, "activation"),
        ((1, 3, 7, 7), (4, 3, 3, 3), {"stride": 0}, "stride"),
        ((1, 3, 7, 7), (4, 3, 3, 3), {"padding": (1, 1, 1)}, "padding"),
        ((1, 3, 7, 7), (4, 3, 3, 3), {"bias": torch.zeros(3)}, "bias"),
    ],
)
def test_conv2d_value_errors(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        conv2d(torch.randn(x_shape), torch.randn(w_shape), **kwargs)


def test_launcher_rejects_float64():
    with pytest.raises(ValueError, match="dtype"):
        mod.conv2d_fwd(torch.randn(1, 3, 7, 7, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# CUDA: real sizes, all dtypes (the CUDA run only: NNDSL_TEST_CUDA=1 on a GPU)
# ---------------------------------------------------------------------------------------------
CUDA_DTYPES = [
    (torch.float32, dot_tol(torch.float32, "cuda")),  # tl.dot uses tf32 on fp32 inputs
    (torch.float16, TOL[torch.float16]),
    (torch.bfloat16, TOL[torch.bfloat16]),
]
CUDA_CASES = [
    # (N, C, H, W, Cout, k, stride, padding, dilation, groups, bias, activation, layout)
    (8, 64, 56, 56, 64, (3, 3), 1, 1, 1, 1, False, None, "channels_last"),  # ResNet-50 layer1 3x3
    (4, 128, 57, 55, 128, (3, 3), 2, 1, 1, 1, True, "relu", "contiguous"),  # stride 2, odd sizes
    (4, 96, 33, 31, 160, (5, 3), 1, (2, 1), 2, 2, True, "gelu", "contiguous"),  # dilation, groups
    (2, 3, 127, 129, 64, (7, 7), 2, 3, 1, 1, True, "silu", "contiguous"),  # stem conv, C = 3
    (4, 256, 14, 14, 256, (1, 1), 1, 0, 1, 1, True, "sigmoid", "strided"),  # 1x1
    (4, 128, 28, 28, 128, (3, 3), 1, 1, 1, 128, True, "tanh", "channels_last"),  # depthwise
]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, tol", CUDA_DTYPES, ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("case", CUDA_CASES, ids=lambda c: f"{_case_id(c)}-{c[12]}")
def test_conv2d_cuda(case, dtype, tol):
    n, c, h, w, co, k, stride, padding, dilation, groups, bias, act, layout = case
    x, weight, b = _inputs(n, c, h, w, co, k, groups, bias, layout, device="cuda", dtype=dtype)
    conf = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, activation=act)
    _check(x, weight, b, conf, tol)
