"""Parameter initializers: ``initialize(tensor, init, init_args)`` fills a tensor in place.

Builtins name an initializer per parameter (``Param.init``/``init_args``) chosen so a model
starts exactly as the equivalent PyTorch layer would — same distribution, and, since each
initializer makes the same random call PyTorch's ``reset_parameters`` makes, the same numbers
under the same seed when parameters are initialized in declaration order:

    nn.Linear / nn.Conv*d  weight  kaiming_uniform(a=sqrt(5))  == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                           bias    uniform(bound=1/sqrt(fan_in))
    nn.Embedding           weight  normal(mean=0, std=1)
    nn.LayerNorm/BatchNorm weight  ones, bias zeros; running_mean zeros, running_var ones
    nn.RNN/LSTM/GRU        all     uniform(bound=1/sqrt(hidden))
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn


def _uniform(t: torch.Tensor, bound: float = None, low: float = None, high: float = None) -> None:
    if bound is not None:
        low, high = -bound, bound
    t.uniform_(low, high)


def _normal(t: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> None:
    t.normal_(mean, std)


def _kaiming_uniform(t: torch.Tensor, a: float = math.sqrt(5), mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> None:
    nn.init.kaiming_uniform_(t, a=a, mode=mode, nonlinearity=nonlinearity)


# name -> fill(tensor, **init_args)
INITS: dict[str, Callable[..., None]] = {
    "zeros": lambda t: t.zero_(),
    "ones": lambda t: t.fill_(1),
    "constant": lambda t, value: t.fill_(value),
    "uniform": _uniform,
    "normal": _normal,
    "trunc_normal": lambda t, mean=0.0, std=1.0, a=-2.0, b=2.0: nn.init.trunc_normal_(t, mean, std, a, b),
    "kaiming_uniform": _kaiming_uniform,
    "kaiming_normal": lambda t, a=0.0, mode="fan_in", nonlinearity="leaky_relu":
        nn.init.kaiming_normal_(t, a=a, mode=mode, nonlinearity=nonlinearity),
    "xavier_uniform": lambda t, gain=1.0: nn.init.xavier_uniform_(t, gain),
    "xavier_normal": lambda t, gain=1.0: nn.init.xavier_normal_(t, gain),
}


def fan_in_bound(fan_in: int) -> float:
    """1/sqrt(fan_in), the bound nn.Linear and nn.Conv*d use for their bias (0 when fan_in is 0)."""
    return 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def initialize(tensor: torch.Tensor, init: str, init_args: dict[str, Any]) -> None:
    """Fill ``tensor`` in place with initializer ``init`` (a name in INITS) and its arguments."""
    try:
        fill = INITS[init]
    except KeyError:
        raise ValueError(f"unknown initializer {init!r}; known: {', '.join(sorted(INITS))}") from None
    with torch.no_grad():
        fill(tensor, **dict(init_args or {}))
