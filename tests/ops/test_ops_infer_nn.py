"""Inference of the neural-network ops (linear, conv, pool, norms, attention, recurrent, logmel)
and the errors builtins report through the Builder (located at the call's span)."""
from __future__ import annotations

import pytest
from ops.opcheck import call, fails, infer, new, shape

from nndsl.errors import NndslShapeError, NndslTypeError, Span
from nndsl.ops import registry as R
from nndsl.ops.sequence import rnn_weight_shapes


def test_linear():
    assert shape("linear", ["f32[B, T, 5]", "f32[7, 5]", "f32[7]"]) == "f32[B, T, 7]"
    assert shape("linear", ["f32[5]", "f32[7, 5]"]) == "f32[7]"
    msg = fails("linear", ["f32[B, 3136]", "f32[10, 1600]"], names=["h", None])
    assert msg == "linear expects last dim 1600, got 3136 (h: f32[B, 3136])"
    assert "the bias must have shape [7]" in fails("linear", ["f32[B, 5]", "f32[7, 5]", "f32[6]"])
    fails("linear", ["f16[B, 5]", "f32[7, 5]"], kind=NndslTypeError)


CONV = {"stride": (1,), "padding": (0,), "dilation": (1,), "groups": 1}


def test_conv_output_sizes():
    a2 = {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2), "groups": 1}
    # H: (28 + 2 - 2 - 1) // 2 + 1 = 14 ; W: (L - 4 - 1) // 1 + 1 = L - 4
    assert shape("conv2d", ["f32[B, 3, 28, L]", "f32[8, 3, 3, 3]", "f32[8]"], a2) == "f32[B, 8, 14, L - 4]"
    assert shape("conv1d", ["f32[B, 4, T]", "f32[6, 2, 5]"], dict(CONV, groups=2, stride=(3,))) == \
        "f32[B, 6, (T - 5) // (3) + 1]"
    assert shape("conv1d", ["f32[4, 9]", "f32[6, 4, 3]"], CONV) == "f32[6, 7]"  # unbatched


def test_conv_errors():
    msg = fails("conv2d", ["f32[B, 1, 28, 28]", "f32[8, 3, 3, 3]"], dict(CONV, stride=(1, 1), padding=(0, 0),
                                                                          dilation=(1, 1)), names=["img", None])
    assert msg == "conv2d expects 3 input channels (dim 1), got 1 (img: f32[B, 1, 28, 28])"
    msg = fails("conv1d", ["f32[B, 3, 4]", "f32[8, 3, 5]"], CONV)
    assert "input too small: dim 2 of f32[B, 3, 4] is 4" in msg
    assert "rank-4 or 3 input" in fails("conv2d", ["f32[B, 3]", "f32[8, 3, 3, 3]"], CONV)


def test_pooling():
    assert shape("maxpool2d", ["f32[B, 32, 26, 26]"], {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0)}) \
        == "f32[B, 32, 13, 13]"
    assert shape("avgpool1d", ["f32[B, C, T]"], {"kernel": (3,), "stride": (2,), "padding": (1,)}) == \
        "f32[B, C, (T - 1) // (2) + 1]"
    assert "at most half the kernel" in fails("maxpool1d", ["f32[B, 3, 9]"], {"kernel": (2,), "padding": (2,)})


def test_embeddings():
    assert shape("embedding", ["i64[B, T]", "f32[65, 16]"]) == "f32[B, T, 16]"
    assert "integer index tensor" in fails("embedding", ["f32[B, T]", "f32[65, 16]"], names=["x", None],
                                           kind=NndslTypeError)
    assert shape("pos_embedding", ["i64[B, T]", "f32[256, 16]"], {"axis": 1}) == "f32[T, 16]"
    assert "sequence length 300 (dim 1 of idx: i64[B, 300]) exceeds max_len 256" in fails(
        "pos_embedding", ["i64[B, 300]", "f32[256, 16]"], {"axis": 1}, ["idx", None])


def test_norms():
    assert shape("layernorm", ["f32[B, T, 8]", "f32[8]", "f32[8]"], {"eps": 1e-5}) == "f32[B, T, 8]"
    assert shape("layernorm", ["f32[B, T, D]"], {"eps": 1e-5}) == "f32[B, T, D]"
    assert "the weight must have shape [8], got f32[7]" in fails("rmsnorm", ["f32[B, 8]", "f32[7]"])
    assert shape("batchnorm", ["f32[B, 4, T]"] + ["f32[4]"] * 4 + ["i64[]"]) == "f32[B, 4, T]"
    assert "running_var must have shape [4]" in fails("batchnorm", ["f32[B, 4]"] + ["f32[4]"] * 3 + ["f32[5]"])


def test_attention():
    assert shape("attention", ["f32[B, H, T, 8]", "f32[B, H, S, 8]", "f32[B, H, S, 5]"]) == "f32[B, H, T, 5]"
    assert "same last dim" in fails("attention", ["f32[B, T, 8]", "f32[B, T, 4]", "f32[B, T, 8]"])
    assert "same length" in fails("attention", ["f32[B, T, 8]", "f32[B, T, 8]", "f32[B, 3, 8]"])
    assert "batch dims" in fails("attention", ["f32[2, 3, T, 8]", "f32[4, 3, T, 8]", "f32[4, 3, T, 8]"])
    assert "k/v heads that divide q's" in fails("attention", ["f32[B, 2, T, 8]", "f32[B, 3, T, 8]", "f32[B, 3, T, 8]"])


@pytest.mark.parametrize("mode,bi,layers", [("lstm", False, 1), ("gru", True, 2), ("rnn", True, 1)])
def test_recurrent(mode, bi, layers):
    ws = [f"f32[{', '.join(map(str, s))}]" for _, s in rnn_weight_shapes(mode, 5, 7, layers, bi, True)]
    attrs = {"hidden": 7, "layers": layers, "bidirectional": bi, "bias": True}
    assert shape(mode, ["f32[B, T, 5]"] + ws, attrs) == f"f32[B, T, {14 if bi else 7}]"
    bad = list(ws)
    bad[1] = "f32[3, 3]"
    assert "weight_hh_l0 must have shape" in fails(mode, ["f32[B, T, 5]"] + bad, attrs)
    assert f"expected {len(ws)} weights" in fails(mode, ["f32[B, T, 5]"] + ws[:-1], attrs)


def test_rnn_weight_names_follow_pytorch():
    import torch

    names = [n for n, _ in rnn_weight_shapes("lstm", 5, 7, 2, True, True)]
    ref = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    assert names == [n for n, _ in ref.named_parameters()]


def test_logmel():
    assert shape("logmel", ["f32[B, 16000]"], {}) == "f32[B, 40, 101]"
    assert shape("logmel", ["f32[B, N]"], {"hop": 128, "n_mels": 20}) == "f32[B, 20, (N) // (128) + 1]"
    assert "too short" in fails("logmel", ["f32[B, 100]"], {"n_fft": 512})


# ------------------------------------------------------------------- builtins through a Builder
SPAN = Span("m.nn", 3, 9, 3, 20, "model M(x) {\n  # ...\n    h = linear(x, 10)\n}")


def test_builtin_errors_are_located():
    b, (h,) = new(h="f32[B, 3136]")
    with b.at(SPAN):
        w = b.param("w", (10, 1600), init="zeros")
        with pytest.raises(NndslShapeError) as ei:
            b.op("linear", [h, w])
    assert ei.value.span == SPAN
    text = str(ei.value)
    assert text.startswith("m.nn:3:9: shape error: linear expects last dim 1600, got 3136 (h: f32[B, 3136])")
    assert "h = linear(x, 10)" in text


def test_stateful_builtins_need_static_sizes():
    b, (x,) = new(x="f32[B, T]")
    with pytest.raises(NndslShapeError, match=r"linear needs a fixed input size \(last dim\), but dim 1 of "
                                              r"x: f32\[B, T\] is T"):
        call(b, "linear", x, 4)
    with pytest.raises(NndslShapeError, match="conv2d expects a rank-4 input"):
        call(b, "conv2d", x, 4, 3)


def test_builtin_argument_errors():
    b, (x,) = new(x="f32[B, 6, 10]")
    with pytest.raises(NndslShapeError, match=r"split: dim 2 of x: f32\[B, 6, 10\] \(10\) does not split into 3"):
        call(b, "split", x, 3, dim=2)
    with pytest.raises(NndslShapeError, match="groups=4 must divide"):
        call(b, "conv1d", x, 4, 3, groups=4)
    with pytest.raises(NndslTypeError, match="'dim' must be none, an int or a list"):
        call(b, "max", x, 1.5)
    with pytest.raises(NndslTypeError, match="dropout: p must be in"):
        call(b, "dropout", x, 2.0)


def test_linear_on_an_index_tensor_says_float():
    msg = fails("linear", ["i64[B, T]", "f32[7, 5]"], names=["idx", None], kind=NndslTypeError)
    assert msg == "linear expects a floating-point input, got idx: i64[B, T]"


def test_every_op_and_builtin_is_documented():
    from pathlib import Path

    from nndsl import layers

    text = (Path(__file__).resolve().parents[2] / "docs" / "stdlib.md").read_text()
    R.get("add")  # loads every op family
    missing = [n for n in list(layers.load_all()) + list(R.OPS) if n not in text]
    assert not missing, f"not in docs/stdlib.md: {missing}"
    undocumented = [n for n, b in layers.load_all().items() if not b.doc] + [n for n, o in R.OPS.items() if not o.doc]
    assert not undocumented, f"no docstring: {undocumented}"
