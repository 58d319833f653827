"""CIFAR-10 as a :class:`Dataset`: locate the batch folder (downloading it when asked),
load the batches, split them and standardise them with the training statistics.

Images are rows: ``X`` has shape ``(n, 3072)`` (channel planes R|G|B, each a row-major
32x32 image) and ``y`` has shape ``(n,)``.  Everything here runs on the host with
NumPy; moving arrays to a device is the caller's job (see ``backend``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from xpnet.data import cache as _cache
from xpnet.data.download import download_cifar
from xpnet.data.layout import (
    BATCH_FOLDER,
    META_FILE,
    N_CLASSES,
    TEST_BATCH,
    TRAIN_BATCHES,
    _has_batches,
)
from xpnet.data.safe_pickle import load_batch, load_label_names
from xpnet.errors import DataError

# --------------------------------------------------------------------------- locate


def _cache_root() -> Path:
    """The default data root, ``~/.cache/xpnet``."""
    return Path.home() / ".cache" / "xpnet"


def _batch_folder_in(root: Path) -> Path | None:
    """The batch folder for ``root``, which may be the data root or the folder itself."""
    for candidate in (root / BATCH_FOLDER, root):
        if _has_batches(candidate):
            return candidate
    return None


def locate_cifar(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Find the ``cifar-10-batches-py`` folder.

    Looks in ``data_dir`` (the root that contains ``cifar-10-batches-py/`` or that
    folder itself), then in ``$XPNET_DATA``, then in ``~/.cache/xpnet``.  Returns
    ``None`` when none of them holds batch files.  A ``data_dir`` that does not
    exist raises :class:`DataError`.
    """
    roots = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.exists():
            raise DataError(
                f"The data folder {data_dir} does not exist; pass --data-dir the folder "
                f"that contains {BATCH_FOLDER} (or pass --download to fetch CIFAR-10 there)."
            )
        roots.append(data_dir)
    env = os.environ.get("XPNET_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(_cache_root())
    for root in roots:
        found = _batch_folder_in(root)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------- the dataset


class Split(NamedTuple):
    """One split of a data set on the host: inputs ``X`` ``(n, d)``, labels ``y`` ``(n,)``.

    A named pair, so ``X, y = data.train`` works and ``Classifier.fit(data.train)`` takes it.
    """

    X: np.ndarray
    y: np.ndarray


@dataclass
class Dataset:
    """CIFAR-10 split and standardised, on the host.

    ``X_*`` are float arrays of shape ``(n, 3072)``, ``y_*`` int64 of shape ``(n,)``;
    ``mean`` and ``std`` (shape ``(3072,)``) are the training statistics of the pixels
    scaled to [0, 1], which every split was standardised with.  ``train``, ``val`` and
    ``test`` give each split as a :class:`Split` ``(X, y)``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    label_names: list[str]
    mean: np.ndarray
    std: np.ndarray
    n_classes: int = N_CLASSES

    @property
    def train(self) -> Split:
        return Split(self.X_train, self.y_train)

    @property
    def val(self) -> Split:
        return Split(self.X_val, self.y_val)

    @property
    def test(self) -> Split:
        return Split(self.X_test, self.y_test)


def _not_found_message(data_dir) -> str:
    places = [str(Path(data_dir).expanduser())] if data_dir is not None else []
    if os.environ.get("XPNET_DATA"):
        places.append(os.environ["XPNET_DATA"])
    places.append(str(_cache_root()))
    return (
        f"CIFAR-10 was not found (looked in {', '.join(places)}); put the {BATCH_FOLDER} "
        "folder there, point --data-dir DIR or XPNET_DATA at the folder that contains it, "
        "or pass --download to fetch it."
    )


@contextlib.contextmanager
def _removing_new_folders(path: Path):
    """Remove, on the way out, the folders of ``path`` made meanwhile that are still empty.

    So a failed download (or data found elsewhere) leaves no empty data folder behind;
    a folder that now holds the data is not empty and stays.
    """
    new = []
    for folder in (path.absolute(), *path.absolute().parents):  # deepest first
        if folder.exists():
            break
        new.append(folder)
    try:
        yield
    finally:
        for folder in new:
            try:
                folder.rmdir()
            except OSError:  # not empty (the data arrived), or never made
                if folder.exists():
                    break


def _find_or_download(data_dir, download: bool, progress: bool) -> Path:
    """The batch folder, downloading it when allowed and absent."""
    if not download:
        folder = locate_cifar(data_dir)
        if folder is None:
            raise DataError(_not_found_message(data_dir))
        return folder
    root = Path(data_dir).expanduser() if data_dir is not None else _cache_root()
    with _removing_new_folders(root):
        if data_dir is not None:
            root.mkdir(parents=True, exist_ok=True)
        return locate_cifar(data_dir) or download_cifar(root, progress=progress)


def _load_files(folder: Path, names) -> tuple[np.ndarray, np.ndarray]:
    """Load and stack batch files; returns uint8 ``(n, 3072)`` and int64 ``(n,)``."""
    for name in names:
        if not (folder / name).is_file():
            raise DataError(
                f"{folder / name} is missing; restore the complete {BATCH_FOLDER} folder "
                "or pass --download to fetch a fresh copy."
            )
    parts = [load_batch(folder / name) for name in names]
    return np.concatenate([X for X, _ in parts]), np.concatenate([y for _, y in parts])


def _pixel_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of ``X / 255`` for uint8 ``X`` of shape (n, 3072), in float64.

    Sums of pixels and of squared pixels are exact in int64, so the variance
    ``(n * sum(x^2) - sum(x)^2) / n^2`` has no cancellation error, and no float64 copy
    of the whole training set is ever made.
    """
    n = X.shape[0]
    total = np.zeros(X.shape[1], dtype=np.int64)
    total_sq = np.zeros(X.shape[1], dtype=np.int64)
    for start in range(0, n, 5000):
        block = X[start:start + 5000].astype(np.int64)
        total += block.sum(axis=0)
        total_sq += (block * block).sum(axis=0)
    var = (n * total_sq - total * total) / float(n) ** 2
    mean = total / n / 255.0
    std = np.sqrt(var) / 255.0
    # A constant pixel (possible in tiny or limited sets) is centred but not scaled.
    std[std == 0] = 1.0
    return mean, std


def _standardise(X: np.ndarray, mean: np.ndarray, std: np.ndarray, dtype) -> np.ndarray:
    """``(X / 255 - mean) / std`` as ``dtype``; uint8 (n, 3072) in, float (n, 3072) out."""
    out = X.astype(dtype)
    out /= 255
    out -= mean
    out /= std
    return out


def _check_options(split: str, n_val: int, limit) -> None:
    if split not in ("default", "a1"):
        raise DataError(f"Unknown split {split!r}; use 'default' (five batches) or 'a1' "
                        "(batch 1 / batch 2).")
    if type(n_val) is not int or n_val < 1:
        raise DataError(f"n_val must be a positive whole number, not {n_val!r}; "
                        "pass e.g. n_val=5000.")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise DataError(f"limit must be a positive whole number or None, not {limit!r}.")


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    split: str = "default",
    n_val: int = 5000,
    dtype=np.float32,
    download: bool = False,
    limit: int | None = None,
    progress: bool = True,
    cache: bool = False,
) -> Dataset:
    """Load, split and standardise CIFAR-10.

    ``split="default"``: the five training batches, the last ``n_val`` images for
    validation, ``test_batch`` for test.  ``split="a1"``: batch 1 for training, batch 2
    for validation (``n_val`` is ignored), ``test_batch`` for test.  ``limit`` keeps
    the first ``limit`` images of each split (for quick runs).  Pixels are scaled to
    [0, 1] by ``/255`` and then standardised per feature with the training mean and
    std (computed in float64 on the training part actually kept, then cast to ``dtype``).

    ``cache=True`` returns the same numbers as read-only arrays mapped from a cache file
    (see :mod:`xpnet.data.cache`), built on first use, which every process on the
    machine shares instead of holding a copy of its own.
    """
    _check_options(split, n_val, limit)
    folder = _find_or_download(data_dir, download, progress)
    if cache:
        return _load_cached(folder, split, n_val, np.dtype(dtype), limit)
    return _load_folder(folder, split, n_val, dtype, limit)


def _load_folder(folder: Path, split: str, n_val: int, dtype, limit) -> Dataset:
    """:func:`load_cifar10` from the batch folder ``folder`` (options already checked)."""
    if split == "default":
        X_all, y_all = _load_files(folder, TRAIN_BATCHES)
        if n_val >= X_all.shape[0]:
            raise DataError(
                f"n_val={n_val} leaves no training images out of the {X_all.shape[0]} in {folder}; "
                "pass a smaller n_val."
            )
        cut = X_all.shape[0] - n_val
        X_tr, y_tr, X_va, y_va = X_all[:cut], y_all[:cut], X_all[cut:], y_all[cut:]
    else:
        X_tr, y_tr = _load_files(folder, TRAIN_BATCHES[:1])
        X_va, y_va = _load_files(folder, TRAIN_BATCHES[1:2])
    X_te, y_te = _load_files(folder, (TEST_BATCH,))
    if limit is not None:
        X_tr, y_tr, X_va, y_va = X_tr[:limit], y_tr[:limit], X_va[:limit], y_va[:limit]
        X_te, y_te = X_te[:limit], y_te[:limit]
    mean, std = _pixel_stats(X_tr)
    mean_d, std_d = mean.astype(dtype), std.astype(dtype)
    return Dataset(
        X_train=_standardise(X_tr, mean_d, std_d, dtype), y_train=y_tr,
        X_val=_standardise(X_va, mean_d, std_d, dtype), y_val=y_va,
        X_test=_standardise(X_te, mean_d, std_d, dtype), y_test=y_te,
        label_names=load_label_names(folder), mean=mean_d, std=std_d,
    )


# ---------------------------------------------------------------- the shared cache

#: The Dataset fields stored as arrays in a cache file.
_ARRAYS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "mean", "std")


def _load_cached(folder: Path, split: str, n_val: int, dtype: np.dtype, limit) -> Dataset:
    """:func:`_load_folder`'s Dataset, its arrays mapped from this machine's cache file.

    The file is named after the folder and options, and built for a fingerprint of the
    batch files' contents: other data in the same folder rebuilds it in place.  Where the
    cache folder cannot be written, the data is loaded into this process instead, with
    a warning.
    """
    options = {"split": split, "n_val": n_val, "limit": limit, "dtype": dtype.str}
    sources = [folder / name for name in (*TRAIN_BATCHES, TEST_BATCH, META_FILE)]
    identity = {**options, "sources": _cache.fingerprint_files(sources)}
    place = json.dumps({**options, "folder": str(folder.resolve())}, sort_keys=True)
    name = f"cifar10-{hashlib.sha256(place.encode()).hexdigest()[:20]}.arrays"
    built = []

    def build():
        built.append(_load_folder(folder, split, n_val, dtype, limit))
        d = built[0]
        return ({k: getattr(d, k) for k in _ARRAYS},
                {"label_names": d.label_names, "n_classes": d.n_classes})

    try:
        arrays, record, _ = _cache.load_or_build(name, identity, build)
    except OSError as exc:
        warnings.warn(f"Could not use the data cache in {_cache.cache_dir()} "
                      f"({exc.strerror or exc}); loading CIFAR-10 into this process instead.",
                      stacklevel=3)
        return built[0] if built else _load_folder(folder, split, n_val, dtype, limit)
    return Dataset(**{k: arrays[k] for k in _ARRAYS}, label_names=record["label_names"],
                   n_classes=record["n_classes"])
