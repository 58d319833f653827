"""CIFAR-10: locate, download and verify, safe extraction, safe unpickling, preprocessing.

One job a module: ``layout`` (the official file names and sizes), ``safe_pickle``
(the restricted unpickler, the security boundary), ``archive`` (safe tar extraction),
``download`` (fetch, MD5 and progress), ``cifar10`` (locate, load, split and
standardise into a :class:`Dataset`) and ``cache`` (the standardised splits in one file
per machine, which every process maps read-only: ``load_cifar10(..., cache=True)``).
This package re-exports their public names.
To replace a function in a test, patch the module that looks it up (for example
``xpnet.data.cifar10.download_cifar``), not this package.

Imports: :mod:`xpnet.base`, :mod:`xpnet.errors`.
"""

from __future__ import annotations

from xpnet.data.archive import safe_extract_tar
from xpnet.data.cifar10 import Dataset, Split, load_cifar10, locate_cifar
from xpnet.data.download import download_cifar
from xpnet.data.layout import (
    BATCH_FOLDER,
    CIFAR_MD5,
    CIFAR_URL,
    LABEL_NAMES,
    META_FILE,
    N_CLASSES,
    N_FEATURES,
    TEST_BATCH,
    TRAIN_BATCHES,
)
from xpnet.data.safe_pickle import MAX_ARRAY_BYTES, MAX_FILE_BYTES, load_batch, load_label_names
from xpnet.errors import DataError, DownloadError, UnsafeFileError

__all__ = [
    "BATCH_FOLDER",
    "CIFAR_MD5",
    "CIFAR_URL",
    "LABEL_NAMES",
    "MAX_ARRAY_BYTES",
    "MAX_FILE_BYTES",
    "META_FILE",
    "N_CLASSES",
    "N_FEATURES",
    "TEST_BATCH",
    "TRAIN_BATCHES",
    "DataError",
    "Dataset",
    "DownloadError",
    "Split",
    "UnsafeFileError",
    "download_cifar",
    "load_batch",
    "load_cifar10",
    "load_label_names",
    "locate_cifar",
    "safe_extract_tar",
]
