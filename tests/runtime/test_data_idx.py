"""IDX parsing (MNIST / Fashion-MNIST) on tiny files written here, and one read of the real MNIST."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from runtime.rtkit import write_idx, write_mnist_dir

from nndsl.errors import NndslDataError
from nndsl.runtime.data import fashion_mnist, mnist, read_idx

REPO = Path(__file__).resolve().parents[2]
REAL_MNIST = REPO / "examples" / "data" / "mnist"


@pytest.mark.parametrize("dtype,shape", [(np.uint8, (3, 5, 7)), (np.int8, (11,)), (">i2", (2, 3)),
                                         (">i4", (4, 1)), (">f4", (5, 2, 1)), (">f8", (1, 3))])
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trips_every_type(tmp_path, dtype, shape, gz):
    rng = np.random.default_rng(len(shape))
    arr = (rng.normal(size=shape) * 50).astype(dtype)
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), arr, gz=gz)
    got = read_idx(path)
    assert got.shape == arr.shape, f"shape {got.shape} != {arr.shape}"
    np.testing.assert_array_equal(got, arr)


def test_read_idx_checks_magic_and_length(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    path = write_idx(tmp_path / "labels.gz", labels)
    with pytest.raises(NndslDataError, match=r"magic number 2049 \(u8, 1 dim\), expected 2051 \(u8, 3 dims\)"):
        read_idx(path, expect_magic=2051)
    bad = write_idx(tmp_path / "bad.gz", labels, magic_override=0x12340801)
    with pytest.raises(NndslDataError, match="not an IDX file"):
        read_idx(bad)
    raw = tmp_path / "short.idx"
    raw.write_bytes(write_idx(tmp_path / "x.idx", labels, gz=False).read_bytes()[:-3])
    with pytest.raises(NndslDataError, match="7 data bytes, expected 10"):
        read_idx(raw)
    notgz = tmp_path / "plain.gz"
    notgz.write_bytes(b"hello, not gzip")
    with pytest.raises(NndslDataError, match="cannot read"):
        read_idx(notgz)


def test_mnist_reads_a_folder_scales_and_normalizes(tmp_path):
    arrays = write_mnist_dir(tmp_path / "digits", n_train=7, n_test=5)
    raw = mnist(str(tmp_path / "digits"), split="train", normalize=False)
    assert raw.x.shape == (7, 1, 28, 28) and raw.x.dtype == torch.float32
    assert raw.y.dtype == torch.int64
    np.testing.assert_allclose(raw.x[:, 0].numpy(), arrays["train_images"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(raw.y.numpy(), arrays["train_labels"])
    norm = mnist(str(tmp_path / "digits"), split="test")
    expect = (arrays["test_images"] / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(norm.x[:, 0].numpy(), expect, rtol=1e-5, atol=1e-5)
    fashion = fashion_mnist(str(tmp_path / "digits"), split="test")
    np.testing.assert_allclose(fashion.x[:, 0].numpy(), (arrays["test_images"] / 255.0 - 0.2860) / 0.3530,
                               rtol=1e-5, atol=1e-5)


def test_mnist_relative_root_resolves_against_the_nn_folder(tmp_path):
    write_mnist_dir(tmp_path / "proj" / "data" / "mnist")
    src = mnist("data/mnist", split="test", base_dir=tmp_path / "proj")
    assert len(src) == 5


def test_mnist_mismatched_counts(tmp_path):
    write_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(NndslDataError, match="do not match labels"):
        mnist(str(tmp_path), split="test")


def test_missing_mnist_lists_the_paths_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("NNDSL_DATA", str(tmp_path / "shared"))
    with pytest.raises(NndslDataError) as info:
        mnist("data/mnist", base_dir=tmp_path / "proj")
    text = str(info.value)
    assert str(tmp_path / "proj" / "data" / "mnist") in text
    assert str(tmp_path / "shared" / "data" / "mnist") in text
    assert "never downloads" in text


@pytest.mark.skipif(not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="examples/data/mnist missing")
def test_real_mnist_test_split():
    src = mnist(str(REAL_MNIST), split="test", normalize=False)
    assert src.x.shape == (10000, 1, 28, 28)
    assert float(src.x.min()) == 0.0 and float(src.x.max()) == 1.0
    counts = torch.bincount(src.y, minlength=10).tolist()
    # class counts from the dataset's README
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], counts
