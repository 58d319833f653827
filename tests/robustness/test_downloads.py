"""Item 8: downloads against a real HTTP server on 127.0.0.1.

Every failure gives a DownloadError sentence, leaves nothing behind in the data root,
and a retry against a good URL then succeeds.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import types

import pytest

from xpnet.data import (
    BATCH_FOLDER,
    DataError,
    DownloadError,
    download_cifar,
    load_batch,
    load_cifar10,
)
from xpnet.data.synthetic import write_cifar_batches

TIMEOUT = 0.5  # seconds; the stalling handlers wait far longer


def _download(server, root, path="/cifar.tar.gz", md5=None, **kwargs):
    kwargs.setdefault("timeout", TIMEOUT)
    kwargs.setdefault("progress", False)
    return download_cifar(root, url=server.url(path), md5=md5 or server.md5, **kwargs)


def test_download_verifies_extracts_and_loads(http_server, tmp_path):
    root = tmp_path / "root"
    folder = _download(http_server, root)

    assert folder == root / BATCH_FOLDER
    assert sorted(p.name for p in root.iterdir()) == [BATCH_FOLDER]  # no temp files left
    X, y = load_batch(folder / "data_batch_1")
    assert X.shape == (20, 3072) and y.shape == (20,)
    data = load_cifar10(root, n_val=20, progress=False)
    assert data.X_train.shape == (80, 3072)


def test_download_shows_progress_when_asked(http_server, tmp_path, capsys):
    _download(http_server, tmp_path / "root", progress=True)
    assert "CIFAR-10" in capsys.readouterr().err


def test_download_replaces_an_existing_folder(http_server, tmp_path):
    root = tmp_path / "root"
    stale = root / BATCH_FOLDER
    stale.mkdir(parents=True)
    (stale / "leftover").write_text("old")

    folder = _download(http_server, root)

    assert not (folder / "leftover").exists()
    assert (folder / "test_batch").is_file()
    assert sorted(p.name for p in root.iterdir()) == [BATCH_FOLDER]


FAILURES = {
    "404": dict(path="/missing.tar.gz", words=["404"]),
    "wrong checksum": dict(md5="0" * 32, words=["MD5", "0" * 32]),
    "truncated body": dict(path="/truncated.tar.gz",
                           words=["closed before the whole file arrived"]),
    "stall before headers": dict(path="/stall-headers.tar.gz", words=["timed out"]),
    "stall mid-body": dict(path="/stall-body.tar.gz", words=["timed out"]),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
def test_failed_download_cleans_up_and_retry_succeeds(http_server, tmp_path, one_sentence, case):
    root = tmp_path / "root"
    start = time.perf_counter()

    with pytest.raises(DownloadError) as info:
        _download(http_server, root, path=case.get("path", "/cifar.tar.gz"), md5=case.get("md5"))

    assert time.perf_counter() - start < 5 * TIMEOUT + 2
    one_sentence(str(info.value), *case["words"])
    assert "127.0.0.1" in str(info.value)
    assert list(root.iterdir()) == []  # the partial file is gone, nothing half-extracted

    folder = _download(http_server, root)
    assert (folder / "data_batch_1").is_file()
    assert sorted(p.name for p in root.iterdir()) == [BATCH_FOLDER]


def test_checksummed_non_archive_is_refused_and_cleaned_up(http_server, tmp_path, one_sentence):
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        _download(http_server, root, path="/not-a-tar.tar.gz", md5=http_server.junk_md5)
    one_sentence(str(info.value))
    assert list(root.iterdir()) == []
    _download(http_server, root)
    assert sorted(p.name for p in root.iterdir()) == [BATCH_FOLDER]


def test_connection_refused_is_a_download_error(tmp_path, one_sentence, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = tmp_path / "root"
    with pytest.raises(DownloadError) as info:
        download_cifar(root, url=f"http://127.0.0.1:{port}/x.tar.gz", md5="0" * 32,
                       timeout=TIMEOUT, progress=False)
    one_sentence(str(info.value), "could not be reached")
    assert list(root.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: downloads do not lock there")
@pytest.mark.parametrize("other_succeeded", [True, False], ids=["other-done", "other-failed"])
def test_downloads_into_one_root_take_turns(http_server, tmp_path, monkeypatch, other_succeeded):
    """While another download holds the root (this test, in its place), a download waits;
    it then uses the folder the other put in place, or downloads if there is none."""
    import fcntl

    import xpnet.data.download as download

    root = tmp_path / "root"
    root.mkdir()
    found_held = threading.Event()

    def flock(fd, operation):
        try:
            return fcntl.flock(fd, operation)
        except BlockingIOError:
            found_held.set()  # the download is about to wait for the lock
            raise

    monkeypatch.setattr(download, "fcntl", types.SimpleNamespace(
        flock=flock, LOCK_EX=fcntl.LOCK_EX, LOCK_NB=fcntl.LOCK_NB))
    other = os.open(root, os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_EX)
    result = {}
    waiter = threading.Thread(target=lambda: result.update(folder=_download(http_server, root)))
    waiter.start()
    try:
        assert found_held.wait(30), "the download did not find the root locked"
        if other_succeeded:
            marker = write_cifar_batches(root, n_per_batch=5) / "made-by-the-other"
            marker.write_text("")
    finally:
        os.close(other)  # releases the lock
        waiter.join(30)
    assert result["folder"] == root / BATCH_FOLDER
    if other_succeeded:
        assert marker.is_file() and http_server.requests == []
    else:
        assert http_server.requests == ["/cifar.tar.gz"]
    assert sorted(p.name for p in root.iterdir()) == [BATCH_FOLDER]
