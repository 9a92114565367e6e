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

KAIMING = {"a": math.sqrt(5)}  # nn.Linear / nn.Conv*d weight init: U(+-1/sqrt(fan_in))


def _desc(v: Value) -> str:
    return f"{v.name}: {v.type}" if v.name else str(v.type)


def _static(b: Builder, fn: str, x: Value, axis: int, what: str) -> int:
    """A size the parameters depend on: it must be a fixed int."""
    if x.type.rank == 0 or not -x.type.rank <= axis < x.type.rank:
        raise b.error(f"{fn} expects a tensor with a {what} axis, got {_desc(x)}")
    n = x.type.shape[axis]
    if not isinstance(n, int):
        raise b.error(f"{fn} needs a fixed {what}, but dim {axis % x.type.rank} of {_desc(x)} is "
                      f"{D.dim_str(n)}", "parameter shapes cannot depend on a symbolic dim")
    return n


def _positive(b: Builder, fn: str, **vals) -> None:
    for k, v in vals.items():
        if v <= 0:
            raise b.error(f"{fn}: {k} must be positive, got {v}", cls=NndslTypeError)


def _ntuple(b: Builder, fn: str, key: str, v, nd: int) -> tuple:
    """A kernel/stride/padding argument (an int or nd ints) as an nd-tuple."""
    t = (v,) * nd if isinstance(v, int) else tuple(v)
    if len(t) != nd:
        raise b.error(f"{fn}: {key} must be an int or {nd} ints, got {list(t)}", cls=NndslTypeError)
    return t


def _bias_bound(fan_in: int) -> float:
    return 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0


# ---------------------------------------------------------------------------------------- linear
@builtin("linear", "x: tensor, out: int, bias: bool = true", stateful=True)
def linear(b: Builder, x, out, bias):
    """y = x W^T + b over the last axis: [..., in] -> [..., out] (nn.Linear)."""
    n_in = _static(b, "linear", x, -1, "input size (last dim)")
    _positive(b, "linear", out=out)
    ins = [x, b.param("weight", (out, n_in), init="kaiming_uniform", init_args=KAIMING)]
    if bias:
        ins.append(b.param("bias", (out,), init="uniform", init_args={"bound": _bias_bound(n_in)}))
    return b.op("linear", ins)


def _conv(name: str):
    nd = int(name[-2])

    def fn(b: Builder, x, out, kernel, stride, padding, dilation, groups, bias):
        if x.type.rank not in (nd + 1, nd + 2):
            raise b.error(f"{name} expects a rank-{nd + 2} input [B, C, {', '.join('HW'[:nd] if nd == 2 else 'L')}] "
                          f"(or rank-{nd + 1} unbatched), got {_desc(x)}")
        cin = _static(b, name, x, -nd - 1, "channel count")
        k = _ntuple(b, name, "kernel", kernel, nd)
        _positive(b, name, out=out, groups=groups, kernel=min(k))
        if cin % groups or out % groups:
            raise b.error(f"{name}: groups={groups} must divide both the input channels ({cin}) and out ({out})")
        fan_in = cin // groups * math.prod(k)
        ins = [x, b.param("weight", (out, cin // groups) + k, init="kaiming_uniform", init_args=KAIMING)]
        if bias:
            ins.append(b.param("bias", (out,), init="uniform", init_args={"bound": _bias_bound(fan_in)}))
        attrs = {k: _ntuple(b, name, k, v, nd) for k, v in (("stride", stride), ("padding", padding),
                                                             ("dilation", dilation))}
        return b.op(name, ins, dict(attrs, groups=groups))

    fn.__doc__ = f"{nd}-D convolution (nn.Conv{nd}d): [B, C, ...] -> [B, out, ...]."
    builtin(name, "x: tensor, out: int, kernel: ints, stride: ints = 1, padding: ints = 0, dilation: ints = 1, "
                  "groups: int = 1, bias: bool = true", stateful=True)(fn)


_conv("conv1d")
_conv("conv2d")


# ------------------------------------------------------------------------------------ embeddings
@builtin("embedding", "idx: tensor, num: int, dim: int", stateful=True)
def embedding(b: Builder, idx, num, dim):
    """Lookup table (nn.Embedding): int idx [...] -> [..., dim]; weight [num, dim] ~ N(0, 1)."""
    _positive(b, "embedding", num=num, dim=dim)
    w = b.param("weight", (num, dim), init="normal", init_args={"mean": 0.0, "std": 1.0})
    return b.op("embedding", [idx, w])


@builtin("pos_embedding", "x: tensor, max_len: int, dim: int", stateful=True)
def pos_embedding(b: Builder, x, max_len, dim):
    """Learned positions for dim 1 of x: [T, dim] (the first T rows of weight [max_len, dim])."""
    _positive(b, "pos_embedding", max_len=max_len, dim=dim)
    if x.type.rank < 2:
        raise b.error(f"pos_embedding reads the sequence length from dim 1 of x, got {_desc(x)}")
    w = b.param("weight", (max_len, dim), init="normal", init_args={"mean": 0.0, "std": 1.0})
    return b.op("pos_embedding", [x, w], {"axis": 1})


# -------------------------------------------------------------------------------- normalizations
@builtin("layernorm", "x: tensor, eps: float = 1e-5, bias: bool = true", stateful=True)
def layernorm(b: Builder, x, eps, bias):
    """Layer normalization over the last axis (nn.LayerNorm): weight ones, bias zeros."""
    n = _static(b, "layernorm", x, -1, "feature size (last dim)")
    ins = [x, b.param("weight", (n,), init="ones")]
    if bias:
        ins.append(b.param("bias", (n,), init="zeros"))
    return b.op("layernorm", ins, {"eps": eps})


@builtin("rmsnorm", "x: tensor, eps: float = 1e-6", stateful=True)
def rmsnorm(b: Builder, x, eps):
    """RMS normalization over the last axis (nn.RMSNorm): x / rms(x) * weight, weight ones."""
    n = _static(b, "rmsnorm", x, -1, "feature size (last dim)")
    return b.op("rmsnorm", [x, b.param("weight", (n,), init="ones")], {"eps": eps})


@builtin("batchnorm", "x: tensor, momentum: float = 0.1, eps: float = 1e-5", stateful=True)
def batchnorm(b: Builder, x, momentum, eps):
    """Batch normalization over dim 1 (nn.BatchNorm1d/2d): [B, C], [B, C, L] or [B, C, H, W]."""
    if x.type.rank not in (2, 3, 4, 5):
        raise b.error(f"batchnorm expects [B, C], [B, C, L] or [B, C, H, W], got {_desc(x)}")
    c = _static(b, "batchnorm", x, 1, "channel count (dim 1)")
    ins = [x, b.param("weight", (c,), init="ones"), b.param("bias", (c,), init="zeros"),
           b.param("running_mean", (c,), init="zeros", buffer=True),
           b.param("running_var", (c,), init="ones", buffer=True),
           b.param("num_batches_tracked", (), init="zeros", dtype="i64", buffer=True)]
    return b.op("batchnorm", ins, {"momentum": momentum, "eps": eps})


# ------------------------------------------------------------------------------------- recurrent
def _recurrent(name: str, sig_extra: str):
    def fn(b: Builder, x, hidden, layers, bidirectional, dropout, bias, nonlinearity="tanh"):
        if x.type.rank != 3:
            raise b.error(f"{name} expects [B, T, features] (batch first), got {_desc(x)}")
        n_in = _static(b, name, x, 2, "input size (last dim)")
        _positive(b, name, hidden=hidden, layers=layers)
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
