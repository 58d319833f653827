"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file xpnet writes (results, reports, figures, checkpoints, data batches) goes
through :func:`atomic_write`: a temp file in the destination folder, flushed and
fsynced, given the permissions a plain ``open`` would give, then ``os.replace``-d over
the target.  On any error the temp file is removed and the old file stays intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def default_mode() -> int:
    """Permission bits of a new file under the current umask (mkstemp makes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", encoding: str | None = None):
    """Open a temp file beside ``path`` for writing; replace ``path`` with it on success.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 unless ``encoding`` says otherwise).
    """
    path = Path(path)
    if mode not in ("w", "wb"):
        raise ValueError("atomic_write supports mode 'w' or 'wb'")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)
