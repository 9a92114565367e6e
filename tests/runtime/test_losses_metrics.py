"""Losses and metrics against hand-written computations (float64 references, odd shapes)."""
from __future__ import annotations

import math

import pytest
import torch

from nndsl.errors import NndslConfigError
from nndsl.runtime.config import Spec
from nndsl.runtime.losses import binary_cross_entropy, cross_entropy, make_loss, mse
from nndsl.runtime.metrics import Metrics, macro_f1


def _hand_ce(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> float:
    """Mean over examples of -(1-e) log p_y - e * mean_c log p_c, by explicit sums."""
    flat, t = logits.double().reshape(-1, logits.shape[-1]), y.reshape(-1)
    total = 0.0
    for row, k in zip(flat, t.tolist()):
        logz = math.log(sum(math.exp(v) for v in row.tolist()))
        logp = [v - logz for v in row.tolist()]
        total += -(1 - smoothing) * logp[k] - smoothing * sum(logp) / len(logp)
    return total / len(t)


@pytest.mark.parametrize("shape", [(7, 3), (3, 5, 11), (2, 1, 4, 6)])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy_logits_and_probs(shape, smoothing):
    g = torch.Generator().manual_seed(sum(shape))
    logits = torch.randn(*shape, generator=g) * 3
    y = torch.randint(shape[-1], shape[:-1], generator=g)
    ref = _hand_ce(logits, y, smoothing)
    got = cross_entropy(logits, y, label_smoothing=smoothing)
    assert abs(got.item() - ref) < 1e-5, f"logits: {got.item()} vs {ref}"
    probs = torch.softmax(logits, dim=-1)
    got_p = cross_entropy(probs, y, output_is_probs=True, label_smoothing=smoothing)
    assert abs(got_p.item() - ref) < 1e-4, f"probs: {got_p.item()} vs {ref}"
    loss = make_loss(Spec("cross_entropy", {"label_smoothing": smoothing}), output_is_probs=True)
    assert abs(loss(probs, y).item() - ref) < 1e-4


def test_cross_entropy_on_zero_probability_is_finite():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    out = cross_entropy(probs, torch.tensor([1, 0]), output_is_probs=True)
    assert torch.isfinite(out) and out.item() == pytest.approx((-math.log(1e-12) - math.log(0.5)) / 2, rel=1e-5)


def test_bce_logits_and_probs_and_mse_shapes():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(13, 1, generator=g)
    y = torch.randint(0, 2, (13,), generator=g)
    p = torch.sigmoid(z.double())
    ref = -(y.double() * p[:, 0].log() + (1 - y.double()) * (1 - p[:, 0]).log()).mean().item()
    assert binary_cross_entropy(z, y).item() == pytest.approx(ref, rel=1e-5)
    assert binary_cross_entropy(torch.sigmoid(z), y, output_is_probs=True).item() == pytest.approx(ref, rel=1e-4)
    pred = torch.randn(9, 1, generator=g)
    t = torch.randn(9, generator=g)
    assert mse(pred, t).item() == pytest.approx(((pred[:, 0] - t) ** 2).mean().item(), rel=1e-6)
    assert mse(pred, t.long()).item() == pytest.approx(((pred[:, 0] - t.long()) ** 2).mean().item(), rel=1e-6)


def _hand_confusion(y: list[int], guess: list[int], k: int) -> list[list[int]]:
    cm = [[0] * k for _ in range(k)]
    for a, b in zip(y, guess):
        cm[a][b] += 1
    return cm


def test_f1_and_accuracy_from_a_hand_computed_confusion_matrix():
    g = torch.Generator().manual_seed(11)
    k, n = 6, 97
    logits = torch.randn(n, k, generator=g)
    logits[:, 5] = -1e9  # class 5: never predicted, never a target -> left out of the mean
    y = torch.randint(0, k - 2, (n,), generator=g)  # class 4 never a target: still counted when predicted
    assert 4 in logits.argmax(1).tolist()
    guess = logits.argmax(1).tolist()
    cm = _hand_confusion(y.tolist(), guess, k)
    f1s = []
    for c in range(k):
        tp = cm[c][c]
        fp = sum(cm[r][c] for r in range(k)) - tp
        fn = sum(cm[c]) - tp
        if 2 * tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    ref_f1 = sum(f1s) / len(f1s)
    ref_acc = sum(a == b for a, b in zip(y.tolist(), guess)) / n
    m = Metrics(["accuracy", "f1"])
    for lo, hi in [(0, 10), (10, 11), (11, 60), (60, 97)]:  # uneven batches
        m.update(logits[lo:hi], y[lo:hi])
    out = m.compute()
    assert out["accuracy"] == pytest.approx(ref_acc, abs=1e-12)
    assert out["f1"] == pytest.approx(ref_f1, abs=1e-12), f"{out['f1']} vs hand {ref_f1}"
    assert macro_f1(torch.tensor(cm)) == pytest.approx(ref_f1, abs=1e-12)


def test_metrics_are_weighted_by_batch_size():
    g = torch.Generator().manual_seed(5)
    pred, y = torch.randn(23, 3, 4, generator=g), torch.randint(0, 4, (23, 3), generator=g)
    loss_fn = make_loss(Spec("cross_entropy", {"label_smoothing": 0.0}), False)
    m = Metrics(["loss", "perplexity", "accuracy"], loss_fn)
    for lo, hi in [(0, 1), (1, 20), (20, 23)]:
        m.update(pred[lo:hi], y[lo:hi])
    out = m.compute()
    ce = _hand_ce(pred, y)
    assert out["loss"] == pytest.approx(ce, rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(ce), rel=1e-5)
    assert out["accuracy"] == pytest.approx((pred.argmax(-1) == y).double().mean().item())


def test_regression_metrics():
    g = torch.Generator().manual_seed(9)
    pred = torch.randn(31, 2, generator=g)
    y = pred + 0.3 * torch.randn(31, 2, generator=g)
    m = Metrics(["mse", "mae", "r2"])
    m.update(pred[:7], y[:7])
    m.update(pred[7:], y[7:])
    out = m.compute()
    p, t = pred.double(), y.double()
    assert out["mse"] == pytest.approx(((p - t) ** 2).mean().item(), rel=1e-9)
    assert out["mae"] == pytest.approx((p - t).abs().mean().item(), rel=1e-9)
    r2 = [1 - ((t[:, j] - p[:, j]) ** 2).sum() / ((t[:, j] - t[:, j].mean()) ** 2).sum() for j in range(2)]
    assert out["r2"] == pytest.approx(float(sum(r2) / 2), rel=1e-9)


def test_binary_accuracy_from_one_output():
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-0.2]])
    y = torch.tensor([1, 1, 0, 0])
    m = Metrics(["accuracy", "f1"])
    m.update(logits, y)
    # guesses 1, 0, 1, 0 -> 2 of 4 right; class 1: tp 1 fp 1 fn 1 -> f1 .5; class 0: tp 1 fp 1 fn 1 -> .5
    assert m.compute() == {"accuracy": 0.5, "f1": 0.5}
    probs = Metrics(["accuracy"], output_is_probs=True)
    probs.update(torch.sigmoid(logits), y)
    assert probs.compute()["accuracy"] == 0.5


@pytest.mark.parametrize("probs", [False, True])
def test_cross_entropy_refuses_float_labels_instead_of_truncating_them(probs):
    pred = torch.randn(5, 3)
    y = torch.tensor([0.0, 1.7, 2.0, 0.2, 1.0])
    with pytest.raises(NndslConfigError, match="cross_entropy takes integer class labels, but the targets are float32"):
        cross_entropy(pred, y, output_is_probs=probs)


@pytest.mark.parametrize("metric", ["accuracy", "f1", "perplexity"])
def test_class_metrics_refuse_float_labels(metric):
    m = Metrics([metric])
    with pytest.raises(NndslConfigError, match=f"{metric} takes integer class labels"):
        m.update(torch.randn(6, 4), torch.rand(6) * 3)


def test_mse_refuses_class_indices_for_several_outputs():
    with pytest.raises(NndslConfigError, match=r"mse: the model's output \[7, 4\] does not fit targets \[7\]"):
        mse(torch.randn(7, 4), torch.randint(0, 4, (7,)))
