"""Sequence ops: recurrent layers (rnn, lstm, gru) and the log-mel spectrogram front end.

Recurrent ops take ``[x, *weights]`` with x [B, T, I] (batch first) and the weights in
nn.LSTM's flat order — per layer, per direction: weight_ih, weight_hh, (bias_ih, bias_hh) —
and return the output sequence [B, T, hidden * directions] only. They lower to
``rt.rnn(mode, x, [weights], ...)`` which calls the same ``torch._VF`` kernels nn.LSTM does.
"""
from __future__ import annotations

from ..ir import dims as D
from ..ir.types import TensorType
from .core import same_dtype
from .registry import EmitCtx, InferCtx, op

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def rnn_weight_shapes(mode: str, input_size: int, hidden: int, layers: int, bidirectional: bool,
                      bias: bool) -> list[tuple[str, tuple]]:
    """(name, shape) of every weight in nn.LSTM's order: weight_ih_l0, weight_hh_l0, bias_ih_l0, ..."""
    gate = GATES[mode] * hidden
    dirs = 2 if bidirectional else 1
    out = []
    for layer in range(layers):
        in_size = input_size if layer == 0 else hidden * dirs
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            out += [(f"weight_ih{sfx}", (gate, in_size)), (f"weight_hh{sfx}", (gate, hidden))]
            if bias:
                out += [(f"bias_ih{sfx}", (gate,)), (f"bias_hh{sfx}", (gate,))]
    return out


def _rnn_emit(e: EmitCtx) -> str:
    a = e.attrs
    mode = e.node.op
    if mode == "rnn":
        mode = "rnn_relu" if a.get("nonlinearity", "tanh") == "relu" else "rnn_tanh"
    return (f"rt.rnn({e.lit(mode)}, {e.ins[0]}, [{', '.join(e.ins[1:])}], {e.lit(a['hidden'])}, "
            f"{e.lit(a.get('layers', 1))}, {e.lit(bool(a.get('bidirectional', False)))}, "
            f"{e.lit(float(a.get('dropout', 0.0)))}, self.training, {e.lit(bool(a.get('bias', True)))})")


def _rnn_infer(c: InferCtx) -> TensorType:
    """x [B, T, I] -> [B, T, hidden * (2 if bidirectional)]; attrs hidden, layers, bidirectional,
    dropout (between layers, while training), bias, nonlinearity ('tanh' or 'relu', rnn only)."""
    x = c.expect_rank(0, 3)
    c.expect_float(0)
    same_dtype(c)
    a = c.attrs
    hidden, layers, bi, bias = a["hidden"], a.get("layers", 1), bool(a.get("bidirectional", False)), \
        bool(a.get("bias", True))
    if a.get("nonlinearity", "tanh") not in ("tanh", "relu"):
        raise c.error(f"{c.op}: nonlinearity must be 'tanh' or 'relu', got {a['nonlinearity']!r}")
    if not isinstance(x.shape[2], int):
        raise c.error(f"{c.op} needs a fixed input size, but the last dim of {c.describe(0)} is symbolic")
    want = rnn_weight_shapes(c.op, x.shape[2], hidden, layers, bi, bias)
    if len(c.types) - 1 != len(want):
        raise c.error(f"{c.op}: expected {len(want)} weights, got {len(c.types) - 1}")
    for i, (name, shape) in enumerate(want, 1):
        if c.types[i].shape != shape:
            raise c.error(f"{c.op}: {name} must have shape {D.shape_str(shape)}, got {c.describe(i)} "
                          f"(input {c.describe(0)}, hidden {hidden})")
    return x.with_shape((x.shape[0], x.shape[1], hidden * (2 if bi else 1)))


for _n in GATES:
    op(_n, emit=_rnn_emit)(_rnn_infer)


# ------------------------------------------------------------------------------------- log-mel
def _logmel_emit(e: EmitCtx) -> str:
    a = e.attrs
    args = [a.get("sample_rate", 16000), a.get("n_fft", 512), a.get("hop", 160), a.get("n_mels", 40)]
    return f"rt.logmel({e.ins[0]}, {', '.join(e.lit(v) for v in args)})"


@op("logmel", emit=_logmel_emit)
def _logmel(c: InferCtx) -> TensorType:
    """waveform [B, N] (or [N]) -> log(mel power spectrogram + 1e-6) [B, n_mels, N // hop + 1].
    attrs sample_rate, n_fft, hop, n_mels; Hann window, centered frames with reflect padding."""
    x = c.expect_rank(0, 1, 2, what="waveform")
    c.expect_float(0)
    a = c.attrs
    sr, n_fft, hop, n_mels = (a.get("sample_rate", 16000), a.get("n_fft", 512), a.get("hop", 160),
                              a.get("n_mels", 40))
    for k, v in (("sample_rate", sr), ("n_fft", n_fft), ("hop", hop), ("n_mels", n_mels)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise c.error(f"logmel: {k} must be a positive int, got {v!r}")
    if n_mels > n_fft // 2 + 1:
        raise c.error(f"logmel: n_mels {n_mels} exceeds the {n_fft // 2 + 1} frequency bins of n_fft {n_fft}")
    n = x.shape[-1]
    if isinstance(n, int) and n <= n_fft // 2:
        raise c.error(f"logmel: the waveform {c.describe(0)} is too short for n_fft {n_fft} "
                      f"(needs more than {n_fft // 2} samples)")
    frames = D.norm(D.floordiv(n, hop) + 1)
    return x.with_shape(list(x.shape[:-1]) + [n_mels, frames])
