"""Fetching CIFAR-10: stream the archive with a progress bar and network timeouts,
verify its MD5, extract it safely and move the batch folder into place, leaving
nothing partial behind on failure.

Processes that download into one root at once (two suites on a fresh machine, say) take
turns: each holds an exclusive ``fcntl.flock`` on the root folder itself (no lock file
is left behind; a no-op where ``fcntl`` is missing), and one that had to wait uses the
folder the one before it put in place instead of downloading again.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from xpnet.data.archive import _CHUNK, safe_extract_tar
from xpnet.data.layout import BATCH_FOLDER, CIFAR_MD5, CIFAR_URL, _has_batches
from xpnet.errors import DownloadError

if sys.platform != "win32":
    import fcntl
else:  # Windows: no advisory locks; concurrent downloads still each move one whole folder
    fcntl = None


def _remove_quietly(path: Path) -> None:
    try:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _fetch(url: str, out, timeout: float, progress: bool) -> str:
    """Stream ``url`` into the open file ``out``; returns the MD5 hex digest of the body."""
    from tqdm import tqdm  # here, not at the top: `import xpnet` stays free of tqdm

    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and declared.isdigit() else None
        received = 0
        with tqdm(
            total=total, unit="B", unit_scale=True, desc="CIFAR-10", disable=not progress
        ) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)
    return digest.hexdigest()


def _download_problem(err: Exception) -> str:
    """A short phrase describing a network failure."""
    if isinstance(err, urllib.error.HTTPError):
        return f"the server answered HTTP {err.code} {err.reason}"
    if isinstance(err, http.client.IncompleteRead):
        return "the connection closed before the whole file arrived"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return "the server stopped sending data (timed out)"
    if isinstance(err, urllib.error.URLError):
        return f"the server could not be reached ({err.reason})"
    return f"{type(err).__name__}: {err}"


@contextlib.contextmanager
def _holding(fd: int):
    """Hold the lock of the folder open as ``fd`` (closed at the end, which releases it);
    yields True when another process held it first (and may have put the batch folder
    in place meanwhile)."""
    try:
        waited = False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fcntl.flock(fd, fcntl.LOCK_EX)
                waited = True
        yield waited
    finally:
        os.close(fd)


def download_cifar(
    root: str | os.PathLike,
    url: str = CIFAR_URL,
    md5: str | None = CIFAR_MD5,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download, verify and extract CIFAR-10 into ``root``; returns ``root/cifar-10-batches-py``.

    ``timeout`` bounds every network wait (connect and each read), so a stalled server
    fails instead of hanging.  ``md5=None`` skips the checksum (not recommended).  On
    failure :class:`DownloadError` is raised and nothing partial is left in ``root``.
    A download into a root that another process is downloading into waits for it, and
    then returns the folder it made.
    """
    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root, os.O_RDONLY)
    except OSError as err:
        raise _not_writable(root, err) from None
    with _holding(fd) as waited:
        if waited and _has_batches(root / BATCH_FOLDER):
            return root / BATCH_FOLDER
        return _download_into(root, url, md5, timeout, progress)


def _not_writable(root: Path, err: OSError) -> DownloadError:
    return DownloadError(
        f"Cannot write to {root} ({err.strerror}); pass --data-dir a writable folder.")


def _download_into(root: Path, url: str, md5: str | None, timeout: float,
                   progress: bool) -> Path:
    """:func:`download_cifar`'s work, under the root's lock."""
    try:
        handle = tempfile.NamedTemporaryFile(
            dir=root, prefix=".cifar-download-", suffix=".part", delete=False
        )
    except OSError as err:
        raise _not_writable(root, err) from None
    partial = Path(handle.name)
    try:
        with handle:
            try:
                digest = _fetch(url, handle, timeout, progress)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
                raise DownloadError(
                    f"Downloading {url} into {root} failed because {_download_problem(err)}; "
                    "check the network and run again."
                ) from None
        if md5 is not None and digest != md5.lower():
            raise DownloadError(
                f"The file downloaded from {url} has MD5 {digest} instead of {md5}, so it is "
                "corrupt or not CIFAR-10; run again, or fetch it by hand and pass --data-dir."
            )
        return _extract_into(partial, root)
    finally:
        _remove_quietly(partial)


def _extract_into(archive: Path, root: Path) -> Path:
    """Extract ``archive`` into a temp folder in ``root``, then move the batch folder into place."""
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-extract-"))
    try:
        safe_extract_tar(archive, staging)
        extracted = staging / BATCH_FOLDER
        if not _has_batches(extracted):
            raise DownloadError(
                f"The archive downloaded into {root} has no {BATCH_FOLDER} folder "
                "with batch files; check the --download URL."
            )
        final = root / BATCH_FOLDER
        if final.exists():
            # Swap the old folder out first: a directory cannot be replaced in one step.
            os.replace(final, staging / "previous")
        os.replace(extracted, final)
        return final
    finally:
        _remove_quietly(staging)
