"""Synthetic test data in the official CIFAR-10 format: a tiny learnable look-alike
written as protocol-2 pickles, for tests and quick runs.  Writing pickles here is
fine (it is data we make); reading them goes only through ``xpnet.data.safe_pickle``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from xpnet.base.atomic import atomic_write
from xpnet.data import (
    BATCH_FOLDER,
    LABEL_NAMES,
    META_FILE,
    N_CLASSES,
    N_FEATURES,
    TEST_BATCH,
    TRAIN_BATCHES,
)


def _atomic_pickle(obj, path: Path) -> None:
    """Write ``obj`` as a protocol-2 pickle to ``path`` atomically."""
    with atomic_write(path) as out:
        pickle.dump(obj, out, protocol=2)


def _synthetic_batch(
    rng: np.random.Generator, templates: np.ndarray, n: int
) -> tuple[np.ndarray, list[int]]:
    """``n`` noisy images around per-class templates (n_classes, 3072); uint8 (n, 3072)."""
    labels = rng.permutation(np.arange(n) % templates.shape[0])
    noise = rng.normal(0.0, 48.0, size=(n, N_FEATURES))
    X = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    return X, [int(v) for v in labels]


def write_cifar_batches(
    root: str | os.PathLike, n_per_batch: int = 100, seed: int = 0, n_classes: int = 10
) -> Path:
    """Write a tiny learnable CIFAR-10 look-alike under ``root/cifar-10-batches-py``.

    Each of ``data_batch_1..5`` and ``test_batch`` holds ``n_per_batch`` images in the
    official format (protocol-2 pickled dicts with bytes keys, data uint8 (n, 3072));
    each class is its own random template image plus Gaussian noise.  Returns the folder.
    """
    if not 1 <= n_classes <= N_CLASSES or n_per_batch < 1:
        raise ValueError("need 1 <= n_classes <= 10 and n_per_batch >= 1")
    folder = Path(root) / BATCH_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    templates = rng.uniform(48.0, 208.0, size=(n_classes, N_FEATURES))
    names = (*TRAIN_BATCHES, TEST_BATCH)
    for i, name in enumerate(names):
        X, labels = _synthetic_batch(rng, templates, n_per_batch)
        title = "testing batch 1 of 1" if name == TEST_BATCH else f"training batch {i + 1} of 5"
        record = {
            b"batch_label": title.encode(),
            b"labels": labels,
            b"data": X,
            b"filenames": [f"synthetic_{i}_{j}.png".encode() for j in range(n_per_batch)],
        }
        _atomic_pickle(record, folder / name)
    meta = {
        b"num_cases_per_batch": n_per_batch,
        b"label_names": [name.encode() for name in LABEL_NAMES[:n_classes]],
        b"num_vis": N_FEATURES,
    }
    _atomic_pickle(meta, folder / META_FILE)
    return folder
