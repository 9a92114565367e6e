"""rnn / lstm / gru builtins against nn.RNN / nn.LSTM / nn.GRU with copied weights: outputs and
every gradient (input and weights), several layer/direction layouts, odd sizes."""
from __future__ import annotations

import pytest
import torch
from ops.opcheck import call, make_params, new, run
from torch import nn

REF = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bi,bias", [(1, False, True), (2, True, True), (3, False, False)])
def test_recurrent_matches_torch(mode, layers, bi, bias):
    b, (x,) = new(x="f32[B, T, 5]")
    kw = {"nonlinearity": "relu"} if mode == "rnn" and layers == 2 else {}
    drop = 0.3 if layers > 1 else 0.0  # inactive in eval mode; exercised by the test below
    out = call(b, mode, x, 7, layers=layers, bidirectional=bi, dropout=drop, bias=bias, inst=mode, **kw)
    b.graph.outputs = [out]
    P = {k: v.requires_grad_() for k, v in make_params(b.graph).items()}
    ref = REF[mode](5, 7, num_layers=layers, bidirectional=bi, bias=bias, batch_first=True, dropout=drop,
                    **kw).double().eval()
    names = [n for n, _ in ref.named_parameters()]
    assert sorted(P) == sorted(f"{mode}.{n}" for n in names), "parameter names follow nn." + mode.upper()
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(P[f"{mode}.{n}"])

    xs = torch.randn(3, 11, 5, dtype=torch.float64, requires_grad=True)
    got = run(b.graph, [xs], {"B": 3, "T": 11}, P)[0]
    want = ref(xs)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert got.shape == (3, 11, 7 * (2 if bi else 1))

    g = torch.randn_like(got)
    grads = torch.autograd.grad(got, [xs] + [P[f"{mode}.{n}"] for n in names], g)
    ref_grads = torch.autograd.grad(want, [xs] + [p for _, p in ref.named_parameters()], g)
    for n, a, r in zip(["x"] + names, grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=0, atol=1e-11, msg=f"gradient of {n}")


def test_dropout_between_layers_only_while_training():
    b, (x,) = new(x="f32[B, T, 4]")
    out = call(b, "lstm", x, 6, layers=2, dropout=0.5)
    P = make_params(b.graph)
    xs = [torch.randn(2, 9, 4, dtype=torch.float64)]
    ev1, ev2 = (run(b.graph, xs, {"B": 2, "T": 9}, P, outputs=[out])[0] for _ in range(2))
    assert torch.equal(ev1, ev2)
    torch.manual_seed(1)
    tr = run(b.graph, xs, {"B": 2, "T": 9}, P, outputs=[out], training=True)[0]
    assert not torch.allclose(tr, ev1)
