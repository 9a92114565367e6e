"""Runtime helpers that generated ``forward`` code calls as ``rt.<fn>``.

``params`` reads every parameter once per call; ``check_input`` checks an input against its
declared type. The rest is what an op needs beyond a one-line torch expression: a mask built on the right
device, a run-time bound check, the recurrent kernels with nn.LSTM's calling convention,
batch norm's step counter, and the log-mel front end (a hand-built mel filterbank, since
torchaudio is not a dependency). ``math`` is re-exported for scalar expressions over dims.
"""
from __future__ import annotations

import functools
import math  # also used by generated code as rt.math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import _VF


def params(module: torch.nn.Module) -> list:
    """Every parameter and buffer of a compiled model, in ``graph.params`` order, read once per call.

    ``module._nndsl_slots`` holds (the ``_parameters``/``_buffers`` dict of the owning sub-module,
    key) pairs: dict reads are cheap, and they stay right after ``.to()``, ``.half()``,
    ``load_state_dict`` and ``copy.deepcopy`` (which rebind entries of the same dicts).
    """
    return [owner[key] for owner, key in module._nndsl_slots]


def check_input(t: Any, spec: tuple) -> None:
    """Runtime check of a model input against its declared type (cheap: one shape compare).

    ``spec`` is (input name, static size or None per axis, the type as text), data from the
    module's constants table.
    """
    name, pattern, type_str = spec
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"input '{name}' must be a tensor of type {type_str}, got {type(t).__name__}")
    if t.dim() != len(pattern) or any(p is not None and p != s for p, s in zip(pattern, t.shape)):
        raise ValueError(f"input '{name}' must have shape {type_str}, got {list(t.shape)}")


def causal_mask(T: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[T, T]: 0 on and below the diagonal, -inf above (added to attention scores)."""
    return torch.full((T, T), float("-inf"), device=device, dtype=dtype).triu(1)


def pos_rows(weight: torch.Tensor, T: int) -> torch.Tensor:
    """The first T rows of a learned positional table; an error when T exceeds its length."""
    if T > weight.shape[0]:
        raise ValueError(f"sequence length {T} exceeds max_len {weight.shape[0]} of the positional embedding")
    return weight[:T]


def batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor, num_batches_tracked: Optional[torch.Tensor], training: bool, momentum: float,
               eps: float) -> torch.Tensor:
    """nn.BatchNorm*d's forward: batch statistics (and running-stat updates) while training."""
    if training and num_batches_tracked is not None:
        num_batches_tracked.add_(1)
    return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


def rnn(mode: str, x: torch.Tensor, weights: list, hidden: int, layers: int, bidirectional: bool,
        dropout: float, training: bool, bias: bool) -> torch.Tensor:
    """nn.RNN/LSTM/GRU(batch_first=True) from zero initial state; returns the output sequence only.

    ``mode`` is 'lstm', 'gru', 'rnn_tanh' or 'rnn_relu'; ``weights`` in nn.LSTM's flat order.
    """
    h0 = x.new_zeros(layers * (2 if bidirectional else 1), x.shape[0], hidden)
    if mode == "lstm":
        out = _VF.lstm(x, (h0, torch.zeros_like(h0)), weights, bias, layers, dropout, training, bidirectional,
                       True)
    else:
        fn = {"gru": _VF.gru, "rnn_tanh": _VF.rnn_tanh, "rnn_relu": _VF.rnn_relu}[mode]
        out = fn(x, h0, weights, bias, layers, dropout, training, bidirectional, True)
    return out[0]


# --------------------------------------------------------------------------------------- log-mel
def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    """HTK mel scale, inverted: mel = 2595 log10(1 + hz / 700)."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=32)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, device: torch.device = torch.device("cpu"),
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[n_fft // 2 + 1, n_mels] triangular filters, equally spaced on the HTK mel scale from 0 Hz to
    Nyquist, unnormalized (torchaudio's melscale_fbanks defaults)."""
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=torch.float64)
    top = 2595.0 * math.log10(1.0 + (sample_rate // 2) / 700.0)  # Nyquist in mels (HTK)
    f_pts = _mel_to_hz(torch.linspace(0.0, top, n_mels + 2, dtype=torch.float64))
    f_diff = f_pts[1:] - f_pts[:-1]  # [n_mels + 1]
    slopes = f_pts.unsqueeze(0) - freqs.unsqueeze(1)  # [n_freqs, n_mels + 2]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0.0)
    return fb.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=32)
def _hann(n_fft: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)


def logmel(x: torch.Tensor, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> torch.Tensor:
    """waveform [B, N] -> log(mel power spectrogram + 1e-6) [B, n_mels, N // hop + 1]."""
    if x.shape[-1] <= n_fft // 2:
        raise ValueError(f"logmel: a waveform of {x.shape[-1]} samples is too short for n_fft {n_fft}")
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=_hann(n_fft, x.device, x.dtype),
                      center=True, pad_mode="reflect", return_complex=True)  # [B, n_freqs, frames]
    power = spec.real ** 2 + spec.imag ** 2
    fb = mel_filterbank(sample_rate, n_fft, n_mels, x.device, x.dtype)
    mel = torch.matmul(power.transpose(-1, -2), fb).transpose(-1, -2)
    return torch.log(mel + 1e-6)


def generated(key: str, inputs: list, scalars: list, training: bool) -> list:
    """Run the generated kernel ``key`` (registered by ``passes.group``) on ``inputs``."""
    from .triton_gen import op

    return op.run(key, inputs, scalars, training)
