"""Stateful builtins: layers that own parameters (linear, conv, embeddings, norms, recurrent).

The elaborator has already opened the instance scope (``attn.qkv``), so ``b.param("weight")``
declares ``attn.qkv.weight``. Parameter names, shapes, declaration order and initializers
follow the PyTorch layer of the same kind, so state_dicts read alike and a model starts with
the same numbers as its PyTorch twin under the same seed (see backend/init.py).
"""
from __future__ import annotations

import math

from ..errors import NndslTypeError
from ..ir import dims as D
from ..ir.builder import Builder
from ..ir.graph import Value
from ..ops.sequence import rnn_weight_shapes
from .registry import builtin
from .tying import shared_weight

KAIMING = {"a": math.sqrt(5)}  # nn.Linear / nn.Conv*d weight init: U(+-1/sqrt(fan_in))


def describe(v: Value) -> str:
    return f"{v.name}: {v.type}" if v.name else str(v.type)


def static_size(b: Builder, fn: str, x: Value, axis: int, what: str) -> int:
    """A size the parameters depend on: it must be a fixed int."""
    if x.type.rank == 0 or not -x.type.rank <= axis < x.type.rank:
        raise b.error(f"{fn} expects a tensor with a {what} axis, got {describe(x)}")
    n = x.type.shape[axis]
    if not isinstance(n, int):
        raise b.error(f"{fn} needs a fixed {what}, but dim {axis % x.type.rank} of {describe(x)} is "
                      f"{D.dim_str(n)}", "parameter shapes cannot depend on a symbolic dim")
    return n


def check_positive(b: Builder, fn: str, **vals) -> None:
    for k, v in vals.items():
        if v <= 0:
            raise b.error(f"{fn}: {k} must be positive, got {v}", cls=NndslTypeError)


def ntuple_arg(b: Builder, fn: str, key: str, v, nd: int) -> tuple:
    """A kernel/stride/padding argument (an int or nd ints) as an nd-tuple."""
    t = (v,) * nd if isinstance(v, int) else tuple(v)
    if len(t) != nd:
        raise b.error(f"{fn}: {key} must be an int or {nd} ints, got {list(t)}", cls=NndslTypeError)
    return t


def bias_bound(fan_in: int) -> float:
    return 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0


# ---------------------------------------------------------------------------------------- linear
@builtin("linear", "x: tensor, out: int, bias: bool = true, weight: any = none", stateful=True)
def linear(b: Builder, x, out, bias, weight):
    """y = x W^T + b over the last axis: [..., in] -> [..., out] (nn.Linear); weight= shares another
    layer's parameter ("wte.weight") or takes a tensor [out, in] instead of declaring one."""
    expect_float(b, "linear", x)
    n_in = static_size(b, "linear", x, -1, "input size (last dim)")
    check_positive(b, "linear", out=out)
    if weight is None:
        w = b.param("weight", (out, n_in), init="kaiming_uniform", init_args=KAIMING)
    else:
        w = shared_weight(b, "linear", weight, (out, n_in))
    ins = [x, w]
    if bias:
        ins.append(b.param("bias", (out,), init="uniform", init_args={"bound": bias_bound(n_in)}))
    return b.op("linear", ins)


def expect_float(b: Builder, fn: str, x: Value) -> None:
    """Layers compute in floating point: an integer or bool input is a dtype error, said first."""
    if not x.type.is_float:
        raise b.error(f"{fn} expects a floating-point input, got {describe(x)}",
                      f"cast({x.name or 'x'}, \"f32\") first", NndslTypeError)


def _same_padding(b: Builder, name: str, x: Value, k: tuple, stride: tuple, dilation: tuple) -> tuple:
    """padding="same" as PyTorch does it: d*(k-1) zeros per axis, half before and the rest after.
    Returns (x, the conv's symmetric padding); an odd total pads x by one more after, explicitly."""
    if any(s != 1 for s in stride):
        raise b.error(f"{name}: padding=\"same\" needs stride 1, got stride {list(stride)}", cls=NndslTypeError)
    totals = [d * (kk - 1) for kk, d in zip(k, dilation)]
    if any(t % 2 for t in totals):
        pads = tuple(p for t in reversed(totals) for p in (0, t % 2))  # F.pad order: last axis first
        x = b.op("pad", [x], {"pads": pads, "value": 0.0})
    return x, tuple(t // 2 for t in totals)


def _padding_arg(b: Builder, name: str, padding, nd: int):
    """padding=: an int, nd ints, "valid" (0) or "same" (returned as is)."""
    if padding == "valid":
        return (0,) * nd
    if isinstance(padding, str) and padding != "same":
        raise b.error(f"{name}: padding must be an int, {nd} ints, \"same\" or \"valid\", got {padding!r}",
                      cls=NndslTypeError)
    if padding == "same":
        return padding
    vals = padding if isinstance(padding, (list, tuple)) else [padding]
    if not all(isinstance(v, int) and not isinstance(v, bool) or getattr(v, "is_Integer", False) for v in vals):
        raise b.error(f"{name}: padding must be an int, {nd} ints, \"same\" or \"valid\", got {padding!r}",
                      cls=NndslTypeError)
    return ntuple_arg(b, name, "padding", [int(v) for v in vals] if isinstance(padding, (list, tuple))
                      else int(padding), nd)


def conv_args(b: Builder, name: str, x: Value, out: int, kernel, groups: int) -> tuple[int, tuple]:
    """The checks every convolution layer makes first: rank, dtype, a fixed channel count, the kernel
    and groups; returns (input channels, the kernel as a tuple)."""
    nd = int(name[-2])
    if x.type.rank not in (nd + 1, nd + 2):
        raise b.error(f"{name} expects a rank-{nd + 2} input [B, C, {', '.join('HW'[:nd] if nd == 2 else 'L')}] "
                      f"(or rank-{nd + 1} unbatched), got {describe(x)}")
    expect_float(b, name, x)
    cin = static_size(b, name, x, -nd - 1, "channel count")
    k = ntuple_arg(b, name, "kernel", kernel, nd)
    check_positive(b, name, out=out, groups=groups, kernel=min(k))
    if cin % groups or out % groups:
        raise b.error(f"{name}: groups={groups} must divide both the input channels ({cin}) and out ({out})")
    return cin, k


def _conv(name: str):
    nd = int(name[-2])

    def fn(b: Builder, x, out, kernel, stride, padding, dilation, groups, bias):
        cin, k = conv_args(b, name, x, out, kernel, groups)
        fan_in = cin // groups * math.prod(k)
        ws = [b.param("weight", (out, cin // groups) + k, init="kaiming_uniform", init_args=KAIMING)]
        if bias:
            ws.append(b.param("bias", (out,), init="uniform", init_args={"bound": bias_bound(fan_in)}))
        attrs = {k: ntuple_arg(b, name, k, v, nd) for k, v in (("stride", stride), ("dilation", dilation))}
        pad = _padding_arg(b, name, padding, nd)
        if pad == "same":
            x, pad = _same_padding(b, name, x, k, attrs["stride"], attrs["dilation"])
        return b.op(name, [x] + ws, dict(attrs, padding=pad, groups=groups))

    fn.__doc__ = (f"{nd}-D convolution (nn.Conv{nd}d): [B, C, ...] -> [B, out, ...]; padding is an int, "
                  f"{nd} ints, \"same\" (output as long as the input, stride 1) or \"valid\" (0).")
    builtin(name, "x: tensor, out: int, kernel: ints, stride: ints = 1, padding: any = 0, dilation: ints = 1, "
                  "groups: int = 1, bias: bool = true", stateful=True)(fn)


_conv("conv1d")
_conv("conv2d")


# ------------------------------------------------------------------------------------ embeddings
@builtin("embedding", "idx: tensor, num: int, dim: int, weight: any = none, std: float = 1.0", stateful=True)
def embedding(b: Builder, idx, num, dim, weight, std):
    """Lookup table (nn.Embedding): int idx [...] -> [..., dim]; weight [num, dim] ~ N(0, std²) (std 1 as
    nn.Embedding; nanoGPT's 0.02 suits a table the output head shares), or shared with weight= (a
    parameter path such as lm_head.weight, or a tensor)."""
    check_positive(b, "embedding", num=num, dim=dim, std=std)
    if weight is None:
        w = b.param("weight", (num, dim), init="normal", init_args={"mean": 0.0, "std": float(std)})
    else:
        w = shared_weight(b, "embedding", weight, (num, dim))
    return b.op("embedding", [idx, w])


@builtin("pos_embedding", "x: tensor, max_len: int, dim: int, std: float = 1.0", stateful=True)
def pos_embedding(b: Builder, x, max_len, dim, std):
    """Learned positions for dim 1 of x: [T, dim] (the first T rows of weight [max_len, dim] ~ N(0, std²))."""
    check_positive(b, "pos_embedding", max_len=max_len, dim=dim, std=std)
    if x.type.rank < 2:
        raise b.error(f"pos_embedding reads the sequence length from dim 1 of x, got {describe(x)}")
    w = b.param("weight", (max_len, dim), init="normal", init_args={"mean": 0.0, "std": float(std)})
    return b.op("pos_embedding", [x, w], {"axis": 1})


# -------------------------------------------------------------------------------- normalizations
@builtin("layernorm", "x: tensor, eps: float = 1e-5, bias: bool = true", stateful=True)
def layernorm(b: Builder, x, eps, bias):
    """Layer normalization over the last axis (nn.LayerNorm): weight ones, bias zeros."""
    n = static_size(b, "layernorm", x, -1, "feature size (last dim)")
    ins = [x, b.param("weight", (n,), init="ones")]
    if bias:
        ins.append(b.param("bias", (n,), init="zeros"))
    return b.op("layernorm", ins, {"eps": eps})


@builtin("rmsnorm", "x: tensor, eps: float = 1e-6", stateful=True)
def rmsnorm(b: Builder, x, eps):
    """RMS normalization over the last axis (nn.RMSNorm): x / rms(x) * weight, weight ones."""
    n = static_size(b, "rmsnorm", x, -1, "feature size (last dim)")
    return b.op("rmsnorm", [x, b.param("weight", (n,), init="ones")], {"eps": eps})


@builtin("batchnorm", "x: tensor, momentum: float = 0.1, eps: float = 1e-5", stateful=True)
def batchnorm(b: Builder, x, momentum, eps):
    """Batch normalization over dim 1 (nn.BatchNorm1d/2d): [B, C], [B, C, L] or [B, C, H, W]."""
    if x.type.rank not in (2, 3, 4, 5):
        raise b.error(f"batchnorm expects [B, C], [B, C, L] or [B, C, H, W], got {describe(x)}")
    c = static_size(b, "batchnorm", x, 1, "channel count (dim 1)")
    ins = [x, b.param("weight", (c,), init="ones"), b.param("bias", (c,), init="zeros"),
           b.param("running_mean", (c,), init="zeros", buffer=True),
           b.param("running_var", (c,), init="ones", buffer=True),
           b.param("num_batches_tracked", (), init="zeros", dtype="i64", buffer=True)]
    return b.op("batchnorm", ins, {"momentum": momentum, "eps": eps})


# ------------------------------------------------------------------------------------- recurrent
def _recurrent(name: str, sig_extra: str):
    def fn(b: Builder, x, hidden, layers, bidirectional, dropout, bias, nonlinearity="tanh"):
        if x.type.rank != 3:
            raise b.error(f"{name} expects [B, T, features] (batch first), got {describe(x)}")
        n_in = static_size(b, name, x, 2, "input size (last dim)")
        check_positive(b, name, hidden=hidden, layers=layers)
        if not 0.0 <= dropout <= 1.0:
            raise b.error(f"{name}: dropout must be in [0, 1], got {dropout}", cls=NndslTypeError)
        if nonlinearity not in ("tanh", "relu"):
            raise b.error(f"{name}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}", cls=NndslTypeError)
        bound = 1.0 / math.sqrt(hidden)  # nn.RNNBase.reset_parameters
        ws = [b.param(n, shape, init="uniform", init_args={"bound": bound})
              for n, shape in rnn_weight_shapes(name, n_in, hidden, layers, bidirectional, bias)]
        attrs = {"hidden": hidden, "layers": layers, "bidirectional": bidirectional, "dropout": dropout,
                 "bias": bias}
        if name == "rnn":
            attrs["nonlinearity"] = nonlinearity
        return b.op(name, [x] + ws, attrs)

    fn.__doc__ = (f"nn.{name.upper()}(batch_first=True) from a zero state: x [B, T, I] -> "
                  f"[B, T, hidden * (2 if bidirectional)] (the output sequence).")
    builtin(name, "x: tensor, hidden: int, layers: int = 1, bidirectional: bool = false, dropout: float = 0.0, "
                  "bias: bool = true" + sig_extra, stateful=True)(fn)


_recurrent("rnn", ", nonlinearity: str = 'tanh'")
_recurrent("lstm", "")
_recurrent("gru", "")
