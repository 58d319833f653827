"""Shared fixtures for the robustness tests: a synthetic batch folder, a message
checker, and a throw-away HTTP server on 127.0.0.1 for download failures."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from xpnet.data import BATCH_FOLDER
from xpnet.data.synthetic import write_cifar_batches


@pytest.fixture
def one_sentence():
    """Return a checker: an error message is one sentence with the given words in it."""

    def check(message: str, *must_contain: str) -> str:
        assert "\n" not in message, message
        assert message.endswith("."), message
        assert ". " not in message, f"more than one sentence: {message}"
        for word in must_contain:
            assert str(word) in message, f"{word!r} not in: {message}"
        return message

    return check


@pytest.fixture
def batch_folder(tmp_path: Path) -> Path:
    """A tiny valid ``cifar-10-batches-py`` folder (20 images per batch)."""
    return write_cifar_batches(tmp_path / "data", n_per_batch=20)


def make_cifar_tar_gz(tmp_path: Path, n_per_batch: int = 20) -> bytes:
    """The bytes of a small ``.tar.gz`` laid out like the official CIFAR-10 archive."""
    folder = write_cifar_batches(tmp_path / "archive-source", n_per_batch=n_per_batch)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=BATCH_FOLDER)
    return buffer.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves the archive correctly or in one of several broken ways, chosen by path."""

    timeout = 5  # bounds every socket operation on the server side

    def log_message(self, *args):  # keep test output quiet
        pass

    def _start(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        body = server.body
        if self.path == "/cifar.tar.gz":
            self._start(len(body))
            self.wfile.write(body)
        elif self.path == "/not-a-tar.tar.gz":
            self._start(len(server.junk))
            self.wfile.write(server.junk)
        elif self.path == "/truncated.tar.gz":
            self._start(len(body))  # promise the whole archive, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/stall-headers.tar.gz":
            server.release.wait(5)
        elif self.path == "/stall-body.tar.gz":
            self._start(len(body))
            self.wfile.write(body[: len(body) // 4])
            self.wfile.flush()
            server.release.wait(5)
        else:
            self.send_error(404, "Not Found")


class LocalServer:
    """Handle for tests: ``url(path)``, the good archive ``body`` and its ``md5``."""

    def __init__(self, httpd):
        self.httpd = httpd
        self.body = httpd.body
        self.requests = httpd.requests
        self.md5 = hashlib.md5(httpd.body).hexdigest()
        self.junk_md5 = hashlib.md5(httpd.junk).hexdigest()

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch):
    """A threaded HTTP server on 127.0.0.1 (free port), shut down after the test."""
    for name in (
        "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.body = make_cifar_tar_gz(tmp_path)
    httpd.junk = b"this is not a tar archive\n" * 100
    httpd.release = threading.Event()
    httpd.requests = []  # the paths asked for, in order
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield LocalServer(httpd)
    finally:
        httpd.release.set()  # wake stalling handlers so they end promptly
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
