"""Text windows and vocabulary, npz / csv readers, synthetic regression, path resolution, batching."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nndsl.errors import NndslConfigError, NndslDataError
from nndsl.runtime.data import (EpochBatches, csv, eval_batches, npz, synthetic_regression, text,
                                train_batches)
from nndsl.runtime.data.paths import candidates


# ----------------------------------------------------------------------------- text
def test_text_vocab_windows_and_split(tmp_path):
    body = "hello world, this is a tiny corpus!\nzzz qq\n" * 3
    (tmp_path / "c.txt").write_text(body)
    train = text("c.txt", context=5, split=0.75, base_dir=tmp_path)
    val = text("c.txt", context=5, split=0.75, part="val", base_dir=tmp_path)
    vocab = sorted(set(body))
    assert train.vocab == vocab and val.vocab == vocab and train.vocab_size == len(vocab)
    cut = int(len(body) * 0.75)
    assert train.decode(train.tokens) == body[:cut] and val.decode(val.tokens) == body[cut:]
    assert len(train) == (cut - 1) // 5
    x, y = train[torch.tensor([0, 3])].values()
    assert x.shape == (2, 5) and x.dtype == torch.int64
    assert train.decode(x[1]) == body[15:20] and train.decode(y[1]) == body[16:21]


def test_text_random_windows_are_next_char_pairs(tmp_path):
    body = "".join(chr(ord("a") + i % 26) for i in range(403))
    (tmp_path / "abc.txt").write_text(body)
    src = text(str(tmp_path / "abc.txt"), context=7)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x1, y1 = src.sample(13, g1).values()
    x2, _ = src.sample(13, g2).values()
    assert torch.equal(x1, x2), "same generator state, different windows"
    assert x1.shape == (13, 7)
    assert torch.equal(x1[:, 1:], y1[:, :-1])
    assert torch.equal((x1 + 1) % 26, y1), "y is not x shifted by one character"


def test_text_errors(tmp_path):
    (tmp_path / "s.txt").write_text("abc")
    with pytest.raises(NndslDataError, match="too few"):
        text("s.txt", context=8, base_dir=tmp_path)
    with pytest.raises(NndslConfigError, match="split"):
        text("s.txt", context=1, split=1.5, base_dir=tmp_path)


# ----------------------------------------------------------------------------- npz
def test_npz_scales_int16_and_types_labels(tmp_path):
    rng = np.random.default_rng(1)
    xs = rng.integers(-32768, 32767, size=(9, 31), dtype=np.int16)
    ys = rng.integers(0, 26, size=9).astype(np.uint8)
    np.savez_compressed(tmp_path / "w.npz", x_train=xs, y_train=ys, x_test=xs[:2], y_test=ys[:2])
    src = npz("w.npz", scale=1.0 / 32768, base_dir=tmp_path)
    assert src.x.dtype == torch.float32 and src.y.dtype == torch.int64
    np.testing.assert_allclose(src.x.numpy(), xs.astype(np.float32) / 32768, rtol=1e-7)
    np.testing.assert_array_equal(src.y.numpy(), ys)
    test = npz("w.npz", x="x_test", y="y_test", base_dir=tmp_path)
    assert len(test) == 2
    with pytest.raises(NndslDataError, match="no array 'x_tset'") as info:
        npz("w.npz", x="x_tset", base_dir=tmp_path)
    assert "did you mean 'x_test'" in str(info.value)


# ----------------------------------------------------------------------------- csv
def test_csv_target_by_name_and_index(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label,c\n1,2,0,3\n4.5,5,1,6\n\n7,8,2,9\n")
    src = csv("t.csv", target="label", base_dir=tmp_path)
    assert src.x.tolist() == [[1, 2, 3], [4.5, 5, 6], [7, 8, 9]] and src.x.dtype == torch.float32
    assert src.y.tolist() == [0, 1, 2] and src.y.dtype == torch.int64
    last = csv("t.csv", target=-1, base_dir=tmp_path)
    assert last.y.dtype == torch.int64 and last.y.tolist() == [3, 6, 9]
    first = csv("t.csv", target=0, base_dir=tmp_path)
    assert first.y.dtype == torch.float32 and first.y.shape == (3, 1)
    assert first.y[:, 0].tolist() == [1.0, 4.5, 7.0]


def test_csv_errors(tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,2\n3,x\n")
    with pytest.raises(NndslDataError, match=r"t.csv:3: 'x' is not a number"):
        csv("t.csv", base_dir=tmp_path)
    (tmp_path / "u.csv").write_text("a,b\n1,2\n")
    with pytest.raises(NndslDataError, match="no column 'y'"):
        csv("u.csv", base_dir=tmp_path)
    (tmp_path / "v.csv").write_text("1,2\n3\n")
    with pytest.raises(NndslDataError, match="1 fields, expected 2"):
        csv("v.csv", header=False, target=0, base_dir=tmp_path)


# ----------------------------------------------------------------------------- synthetic
def test_synthetic_regression_shares_truth_between_parts():
    tr = synthetic_regression(n=301, features=7, noise=0.0, seed=5)
    te = synthetic_regression(n=45, features=7, noise=0.0, seed=5, part="test")
    assert torch.equal(tr.true_w, te.true_w) and tr.true_b == te.true_b
    assert tr.x.shape == (301, 7) and tr.y.shape == (301, 1)
    assert not torch.equal(tr.x[:45], te.x)
    expect = tr.x.double() @ tr.true_w.double() + tr.true_b
    torch.testing.assert_close(tr.y[:, 0].double(), expect, rtol=1e-5, atol=1e-5)
    other = synthetic_regression(n=10, features=7, seed=6)
    assert not torch.equal(other.true_w, tr.true_w)


# ----------------------------------------------------------------------------- paths
def test_resolution_order(tmp_path, monkeypatch):
    base, shared, cwd = tmp_path / "proj", tmp_path / "shared", tmp_path / "cwd"
    for d in (base, shared, cwd):
        d.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("NNDSL_DATA", str(shared))
    assert candidates("f.txt", base) == [base / "f.txt", shared / "f.txt", cwd / "f.txt"]
    assert candidates(str(tmp_path / "abs.txt"), base) == [tmp_path / "abs.txt"]
    (cwd / "f.txt").write_text("from cwd " * 5)
    assert text("f.txt", context=2, base_dir=base).decode(text("f.txt", 2, base_dir=base).tokens[:4]) == "from"
    (shared / "f.txt").write_text("shared!! " * 5)
    assert text("f.txt", context=2, base_dir=base).decode(text("f.txt", 2, base_dir=base).tokens[:4]) == "shar"
    (base / "f.txt").write_text("base... " * 5)
    assert text("f.txt", context=2, base_dir=base).decode(text("f.txt", 2, base_dir=base).tokens[:4]) == "base"


def test_missing_file_error_names_every_path(tmp_path, monkeypatch):
    monkeypatch.delenv("NNDSL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NndslDataError) as info:
        npz("nope/x.npz", base_dir=tmp_path / "proj")
    msg = str(info.value)
    assert str(tmp_path / "proj" / "nope" / "x.npz") in msg and str(tmp_path / "nope" / "x.npz") in msg
    assert "never downloads" in msg and "NNDSL_DATA" in msg


# ----------------------------------------------------------------------------- batching
def test_epoch_batches_cover_each_index_once_and_resume():
    n, b = 103, 10
    batches = list(EpochBatches(n, b, shuffle=True, seed=4, epoch=2))
    assert [len(i) for i in batches] == [10] * 10 + [3]
    assert sorted(torch.cat(batches).tolist()) == list(range(n))
    again = list(EpochBatches(n, b, shuffle=True, seed=4, epoch=2, skip=7))
    assert all(torch.equal(a, c) for a, c in zip(batches[7:], again)) and len(again) == 4
    other = torch.cat(list(EpochBatches(n, b, shuffle=True, seed=4, epoch=3)))
    assert not torch.equal(torch.cat(batches), other), "epochs should be shuffled differently"


def test_train_batches_from_a_later_step_continue_the_same_stream():
    src = synthetic_regression(n=37, features=3)
    full = train_batches(src, 8, seed=1, start=0, step_mode=False)
    first = [next(full) for _ in range(13)]  # crosses two epoch boundaries (5 batches per epoch)
    later = train_batches(src, 8, seed=1, start=6, step_mode=True)
    for i in range(6, 13):
        x, y = next(later).values()
        assert torch.equal(x, first[i]["x"]) and torch.equal(y, first[i]["y"]), f"batch {i} differs"


def test_eval_batches_whole_set_in_order_or_a_fixed_sample(tmp_path):
    src = synthetic_regression(n=23, features=2)
    whole = list(eval_batches(src, 5, None))
    assert torch.equal(torch.cat([b["x"] for b in whole]), src.x)
    some = [b["x"] for b in eval_batches(src, 5, 2)]
    assert len(some) == 2 and all(torch.equal(a, b) for a, b in zip(some, [b["x"] for b in eval_batches(src, 5, 2)]))
    (tmp_path / "t.txt").write_text("abcdefghij" * 20)
    txt = text("t.txt", context=4, base_dir=tmp_path)
    r1 = [b["x"] for b in eval_batches(txt, 3, 4)]
    r2 = [b["x"] for b in eval_batches(txt, 3, 4)]
    assert len(r1) == 4 and all(torch.equal(a, b) for a, b in zip(r1, r2))
