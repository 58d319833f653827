"""The official CIFAR-10 python layout: where the archive comes from and its checksum,
the batch folder and file names, the image size and class names, and the test of
whether a folder holds batch files.  Every other module of ``xpnet.data`` (and the
synthetic writer in ``xpnet.data.synthetic``) takes these facts from here.
"""

from __future__ import annotations

from pathlib import Path

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCH_FOLDER = "cifar-10-batches-py"

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
LABEL_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]
N_FEATURES = 3072
N_CLASSES = 10


def _has_batches(folder: Path) -> bool:
    """True if ``folder`` is a directory holding at least one CIFAR-10 batch file."""
    if not folder.is_dir():
        return False
    return any((folder / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH))
