"""Every data loader: shapes, dtypes, splits, and no network (sockets blocked)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dropkit.experiments import data


@pytest.mark.parametrize(
    ("name", "train", "test", "shape", "classes"),
    [
        ("mnist1d", 4000, 1000, (40,), 10),
        ("digits", 1437, 360, (1, 8, 8), 10),
        ("breast_cancer", 455, 114, (30,), 2),
        ("wine", 142, 36, (13,), 3),
        ("diabetes", 353, 89, (10,), 0),
        ("mnist5k", 4000, 1000, (1, 28, 28), 10),
    ],
)
def test_loader_shapes_dtypes(no_network, name, train, test, shape, classes):
    dataset = data.load_dataset(name)
    assert dataset.x_train.shape == (train, *shape)
    assert dataset.x_test.shape == (test, *shape)
    assert dataset.x_train.dtype == np.float32 and dataset.x_test.dtype == np.float32
    assert dataset.num_classes == classes
    if classes:
        assert dataset.y_train.dtype == np.int64
        assert set(np.unique(dataset.y_train)) == set(range(classes))
    else:
        assert dataset.task == "regression" and dataset.y_train.dtype == np.float32
        assert abs(float(dataset.y_train.mean())) < 1e-5  # standardised on the training set
    assert np.isfinite(dataset.x_train).all()


def test_mnist1d_is_cached_and_identical(no_network, tmp_path):
    first = data.DATASETS["mnist1d"](tmp_path)
    cached = list(tmp_path.glob("mnist1d-*.npz"))
    assert len(cached) == 1
    second = data.DATASETS["mnist1d"](tmp_path)  # read back from the .npz
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    assert 0.9 < first.x_train.std() < 1.1  # make_dataset standardises the signals


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_mnist_from_idx_directory(no_network, tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28))
    labels = rng.integers(0, 10, 7)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, compress)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, compress)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:3], compress)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:3], compress)
    dataset = data.load_dataset("fashion-mnist", tmp_path)
    assert dataset.x_train.shape == (7, 1, 28, 28) and dataset.x_test.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(dataset.x_train[:, 0] * 255, images, atol=1e-3)
    np.testing.assert_array_equal(dataset.y_train, labels)


@pytest.mark.skipif(not data.FASHION_MNIST_DIRS[0].is_dir(), reason="dataset-fashion-mnist absent")
def test_fashion_mnist_debian_package(no_network):
    dataset = data.load_dataset("fashion-mnist")
    assert dataset.x_train.shape == (60000, 1, 28, 28) and dataset.x_test.shape == (
        10000,
        1,
        28,
        28,
    )


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(data.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(data.DataUnavailableError, match="does not exist"):
        data.load_dataset("digits", tmp_path / "missing")
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.load_dataset("imagenet")


def test_uci_needs_the_uncertainty_module_or_a_directory(tmp_path):
    try:
        from dropkit.experiments import uci  # noqa: F401
    except ImportError:
        with pytest.raises(data.DataUnavailableError, match="uncertainty module"):
            data.load_dataset("uci-housing", tmp_path)
    else:
        with pytest.raises(data.DataUnavailableError):
            data.load_dataset("uci-housing")
