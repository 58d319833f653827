"""The CIFAR-10 pipeline: synthetic round trips, splits, standardisation, locating, real files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from xpnet.data import (
    BATCH_FOLDER,
    DataError,
    Dataset,
    cifar10,
    load_batch,
    load_cifar10,
    load_label_names,
    locate_cifar,
)
from xpnet.data.synthetic import write_cifar_batches

N = 40  # images per synthetic batch


@pytest.fixture
def root(tmp_path) -> Path:
    write_cifar_batches(tmp_path / "data", n_per_batch=N, seed=3)
    return tmp_path / "data"


@pytest.fixture
def no_data_anywhere(tmp_path, monkeypatch):
    """Empty HOME and no XPNET_DATA, so only explicit folders are found."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XPNET_DATA", raising=False)
    return home


def _raw(root: Path, name: str):
    return load_batch(root / BATCH_FOLDER / name)


# ------------------------------------------------------------------ synthetic data


def test_write_cifar_batches_uses_the_official_layout(root):
    folder = root / BATCH_FOLDER
    expected = {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch", "batches.meta"}
    assert {p.name for p in folder.iterdir()} == expected  # no temp files left behind
    blob = (folder / "data_batch_1").read_bytes()
    assert blob[:2] == b"\x80\x02"  # protocol 2, like the official files
    X, y = _raw(root, "data_batch_1")
    assert X.dtype == np.uint8 and X.shape == (N, 3072)
    assert y.dtype == np.int64 and y.shape == (N,)
    assert set(y.tolist()) == set(range(10))
    assert load_label_names(folder)[:2] == ["airplane", "automobile"]


def test_write_cifar_batches_is_deterministic_per_seed(tmp_path):
    a = write_cifar_batches(tmp_path / "a", n_per_batch=10, seed=1)
    b = write_cifar_batches(tmp_path / "b", n_per_batch=10, seed=1)
    c = write_cifar_batches(tmp_path / "c", n_per_batch=10, seed=2)
    Xa, ya = load_batch(a / "data_batch_2")
    Xb, yb = load_batch(b / "data_batch_2")
    Xc, _ = load_batch(c / "data_batch_2")
    assert np.array_equal(Xa, Xb) and np.array_equal(ya, yb)
    assert not np.array_equal(Xa, Xc)


def test_synthetic_classes_are_learnable(root):
    d = load_cifar10(root, n_val=N, progress=False)
    centroids = np.stack([d.X_train[d.y_train == k].mean(axis=0) for k in range(10)])
    dists = ((d.X_test[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    accuracy = (dists.argmin(axis=1) == d.y_test).mean()
    assert accuracy > 0.5  # chance is 0.1


def test_fewer_classes(tmp_path):
    folder = write_cifar_batches(tmp_path, n_per_batch=12, n_classes=3)
    _, y = load_batch(folder / "test_batch")
    assert set(y.tolist()) == {0, 1, 2}
    assert load_label_names(folder) == ["airplane", "automobile", "bird"]


# --------------------------------------------------------------------- load_cifar10


def test_default_split_round_trip(root):
    d = load_cifar10(root, n_val=30, progress=False)
    assert isinstance(d, Dataset)
    raw = [_raw(root, f"data_batch_{i}") for i in range(1, 6)]
    y_all = np.concatenate([y for _, y in raw])
    assert d.X_train.shape == (5 * N - 30, 3072) and d.X_val.shape == (30, 3072)
    assert d.X_test.shape == (N, 3072)
    assert np.array_equal(d.y_train, y_all[:-30]) and np.array_equal(d.y_val, y_all[-30:])
    assert np.array_equal(d.y_test, _raw(root, "test_batch")[1])
    for X in (d.X_train, d.X_val, d.X_test):
        assert X.dtype == np.float32
    for y in (d.y_train, d.y_val, d.y_test):
        assert y.dtype == np.int64
    assert d.mean.shape == d.std.shape == (3072,)
    assert d.n_classes == 10 and len(d.label_names) == 10


def test_a1_split_round_trip(root):
    d = load_cifar10(root, split="a1", progress=False)
    X1, y1 = _raw(root, "data_batch_1")
    X2, y2 = _raw(root, "data_batch_2")
    assert np.array_equal(d.y_train, y1) and np.array_equal(d.y_val, y2)
    assert np.array_equal(d.y_test, _raw(root, "test_batch")[1])
    assert d.X_train.shape == d.X_val.shape == d.X_test.shape == (N, 3072)
    # Each row is still the same image, scaled and standardised.
    np.testing.assert_allclose(d.X_val, (X2 / 255 - d.mean) / d.std, rtol=1e-5, atol=1e-5)


def test_standardisation_uses_training_statistics(root):
    d = load_cifar10(root, n_val=30, dtype=np.float64, progress=False)
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(d.X_train.std(axis=0), 1.0, rtol=1e-10)

    X_all = np.concatenate([_raw(root, f"data_batch_{i}")[0] for i in range(1, 6)])
    train = X_all[:-30] / 255
    np.testing.assert_allclose(d.mean, train.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(d.std, train.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(d.X_val, (X_all[-30:] / 255 - d.mean) / d.std, rtol=1e-12)
    X_test = _raw(root, "test_batch")[0]
    np.testing.assert_allclose(d.X_test, (X_test / 255 - d.mean) / d.std, rtol=1e-12)
    # Val/test are not re-centred on their own statistics.
    assert abs(d.X_val.mean(axis=0)).max() > 1e-3


def test_float32_standardisation_is_close(root):
    d = load_cifar10(root, n_val=30, progress=False)
    assert d.mean.dtype == d.std.dtype == np.float32
    assert abs(d.X_train.mean(axis=0)).max() < 1e-4
    np.testing.assert_allclose(d.X_train.std(axis=0), 1.0, rtol=1e-4)


def test_limit_keeps_the_first_samples_and_their_statistics(root):
    full = load_cifar10(root, n_val=30, dtype=np.float64, progress=False)
    d = load_cifar10(root, n_val=30, dtype=np.float64, limit=25, progress=False)
    assert (d.X_train.shape == (25, 3072) and d.X_val.shape == (25, 3072)
            and d.X_test.shape == (25, 3072))
    assert np.array_equal(d.y_train, full.y_train[:25])
    assert np.array_equal(d.y_val, full.y_val[:25])
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0.0, atol=1e-10)


@pytest.mark.parametrize("n_val", [0, -5, 5 * N, 10**6, 2.5])
def test_bad_n_val_is_refused(root, n_val):
    with pytest.raises(DataError, match="n_val"):
        load_cifar10(root, n_val=n_val, progress=False)


@pytest.mark.parametrize("kwargs", [dict(split="b2"), dict(limit=0), dict(limit=-1)])
def test_bad_options_are_refused(root, kwargs):
    with pytest.raises(DataError):
        load_cifar10(root, progress=False, **kwargs)


def test_constant_pixel_does_not_divide_by_zero(tmp_path):
    folder = write_cifar_batches(tmp_path, n_per_batch=10)
    d = load_cifar10(tmp_path, n_val=10, limit=1, progress=False)  # one image: std is 0 everywhere
    assert np.isfinite(d.X_train).all() and np.isfinite(d.X_test).all()
    assert folder.is_dir()


# -------------------------------------------------------------------------- locate


def test_locate_order_data_dir_then_env_then_cache(tmp_path, no_data_anywhere, monkeypatch):
    explicit = write_cifar_batches(tmp_path / "explicit", n_per_batch=2)
    env = write_cifar_batches(tmp_path / "env", n_per_batch=2)
    cache = write_cifar_batches(no_data_anywhere / ".cache" / "xpnet", n_per_batch=2)
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "env"))

    assert locate_cifar(tmp_path / "explicit") == explicit
    assert locate_cifar(explicit) == explicit  # the batch folder itself also works
    assert locate_cifar() == env
    monkeypatch.delenv("XPNET_DATA")
    assert locate_cifar() == cache
    assert locate_cifar(str(tmp_path / "explicit")) == explicit


def test_locate_skips_a_data_dir_without_batches(tmp_path, no_data_anywhere, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = write_cifar_batches(tmp_path / "env", n_per_batch=2)
    monkeypatch.setenv("XPNET_DATA", str(env))  # XPNET_DATA may name the folder itself
    assert locate_cifar(empty) == env


def test_locate_finds_nothing(tmp_path, no_data_anywhere):
    assert locate_cifar() is None
    (tmp_path / "empty").mkdir()
    assert locate_cifar(tmp_path / "empty") is None


def test_locate_missing_data_dir_is_an_error(tmp_path, no_data_anywhere):
    with pytest.raises(DataError, match="does not exist"):
        locate_cifar(tmp_path / "typo")


def test_no_data_offline_message_is_one_sentence(tmp_path, no_data_anywhere):
    with pytest.raises(DataError) as info:
        load_cifar10(progress=False)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".") and ". " not in message
    for word in ("--data-dir", "XPNET_DATA", "--download", BATCH_FOLDER, str(no_data_anywhere)):
        assert word in message


def test_download_flag_fetches_into_data_dir(tmp_path, no_data_anywhere, monkeypatch):
    calls = []

    def fake_download(target, progress=True, **kwargs):
        calls.append(Path(target))
        return write_cifar_batches(target, n_per_batch=10)

    monkeypatch.setattr(cifar10, "download_cifar", fake_download)
    d = load_cifar10(tmp_path / "new" / "dir", n_val=10, download=True, progress=False)
    assert calls == [tmp_path / "new" / "dir"]
    assert d.X_train.shape == (40, 3072)
    load_cifar10(tmp_path / "new" / "dir", n_val=10, download=True, progress=False)
    assert len(calls) == 1  # found the second time: no new download


def test_download_flag_defaults_to_the_cache(no_data_anywhere, monkeypatch):
    calls = []

    def fake_download(target, progress=True, **kwargs):
        calls.append(Path(target))
        return write_cifar_batches(target, n_per_batch=10)

    monkeypatch.setattr(cifar10, "download_cifar", fake_download)
    load_cifar10(n_val=10, download=True, progress=False)
    assert calls == [no_data_anywhere / ".cache" / "xpnet"]


def _refused_download(root, progress=True, **kwargs):
    """The real download against a port nothing listens on: it fails at once."""
    import socket

    from xpnet.data import download_cifar

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return download_cifar(root, url=f"http://127.0.0.1:{port}/cifar.tar.gz", timeout=0.5,
                          progress=False)


@pytest.mark.parametrize("where", ["data_dir", "cache"])
def test_failed_download_leaves_no_folder_behind(tmp_path, no_data_anywhere, monkeypatch, where):
    from xpnet.data import DownloadError

    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(cifar10, "download_cifar", _refused_download)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DownloadError):
        load_cifar10(tmp_path / "new" / "data" if where == "data_dir" else None,
                     download=True, progress=False)
    assert sorted(tmp_path.rglob("*")) == before  # neither new/data nor ~/.cache/xpnet


def test_download_keeps_folders_that_existed(tmp_path, no_data_anywhere, monkeypatch):
    from xpnet.data import DownloadError

    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(cifar10, "download_cifar", _refused_download)
    (tmp_path / "mine").mkdir()
    with pytest.raises(DownloadError):
        load_cifar10(tmp_path / "mine" / "data", download=True, progress=False)
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "data").exists()


def test_loader_never_calls_plain_pickle_load(root, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("plain pickle.load/loads must never be used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    load_cifar10(root, n_val=10, progress=False)


# ---------------------------------------------------------------------- real data


@pytest.mark.cifar
def test_real_cifar_batch_loads():
    root = os.environ.get("XPNET_DATA")
    path = Path(root) / BATCH_FOLDER / "data_batch_1" if root else None
    if path is None or not path.is_file():
        reason = (f"the real CIFAR-10 files are not at $XPNET_DATA/{BATCH_FOLDER} "
                  f"(XPNET_DATA={root!r})")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    X, y = load_batch(path)
    assert X.shape == (10000, 3072) and X.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int64
    assert np.bincount(y, minlength=10).min() > 800
    assert load_label_names(path.parent)[3] == "cat"
