"""The shared data cache: the same numbers as an uncached load, mapped read-only, rebuilt
whenever the file is truncated, corrupt, stale or of another format, built once by
processes that start together, and read without unpickling anything."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xpnet.data import cache, cifar10, load_cifar10
from xpnet.data.synthetic import write_cifar_batches

N = 40  # images per synthetic batch
FIELDS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "mean", "std")
SRC = str(Path(cifar10.__file__).resolve().parents[2])  # the folder holding xpnet


@pytest.fixture
def root(tmp_path) -> Path:
    write_cifar_batches(tmp_path / "data", n_per_batch=N, seed=3)
    return tmp_path / "data"


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty cache for this test; returns its splits folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "xpnet" / "splits"


@pytest.fixture
def builds(monkeypatch) -> list:
    """Records each build of a cache file (each uncached load behind one)."""
    calls = []
    real = cifar10._load_folder

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(cifar10, "_load_folder", counting)
    return calls


def assert_same(a, b) -> None:
    """Bit-identical arrays (dtype, shape and bytes) and the same labels."""
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name
    assert a.label_names == b.label_names and a.n_classes == b.n_classes


def the_file(cache_home: Path) -> Path:
    (path,) = cache_home.glob("*.arrays")
    return path


@pytest.mark.parametrize("options", [
    dict(n_val=30), dict(split="a1"), dict(n_val=30, dtype=np.float64),
    dict(n_val=20, limit=25), dict(n_val=30, dtype=np.float16)])
def test_cached_load_is_bit_identical_and_read_only(root, cache_home, options):
    plain = load_cifar10(root, progress=False, **options)
    first = load_cifar10(root, progress=False, cache=True, **options)  # builds
    again = load_cifar10(root, progress=False, cache=True, **options)  # maps
    assert_same(plain, first)
    assert_same(plain, again)
    for name in FIELDS:
        array = getattr(again, name)
        assert type(array) is np.ndarray and not array.flags.writeable
        assert isinstance(array.base, np.memmap)  # a view of the file, not a copy


def test_a_sound_file_is_mapped_without_building_or_unpickling(root, cache_home, builds,
                                                               monkeypatch):
    load_cifar10(root, n_val=30, progress=False, cache=True)
    assert len(builds) == 1

    def no_pickles(*args, **kwargs):
        raise AssertionError("a cached load unpickled a file")

    monkeypatch.setattr(cifar10, "load_batch", no_pickles)
    monkeypatch.setattr(cifar10, "load_label_names", no_pickles)
    load_cifar10(root, n_val=30, progress=False, cache=True)
    assert len(builds) == 1


def test_other_options_get_a_file_of_their_own(root, cache_home, builds):
    load_cifar10(root, n_val=30, progress=False, cache=True)
    load_cifar10(root, n_val=20, progress=False, cache=True)
    load_cifar10(root, n_val=30, progress=False, cache=True)
    assert len(builds) == 2 and len(list(cache_home.glob("*.arrays"))) == 2


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 1000)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flip(offset_of):
    def damage(path: Path) -> None:
        blob = bytearray(path.read_bytes())
        blob[offset_of(len(blob))] ^= 0x55
        path.write_bytes(bytes(blob))
    return damage


@pytest.mark.parametrize("damage", [
    _truncate, _empty,
    _flip(lambda n: 0),  # the magic
    _flip(lambda n: 9),  # the header's length
    _flip(lambda n: 40),  # inside the header's JSON
    _flip(lambda n: n // 2),  # an image
    _flip(lambda n: n - 1),  # the last byte
], ids=["truncated", "empty", "magic", "length", "header", "image", "last-byte"])
def test_a_damaged_file_is_rebuilt_never_trusted(root, cache_home, builds, damage):
    plain = load_cifar10(root, n_val=30, progress=False)
    load_cifar10(root, n_val=30, progress=False, cache=True)
    damage(the_file(cache_home))
    assert_same(plain, load_cifar10(root, n_val=30, progress=False, cache=True))
    assert len(builds) == 3  # the plain load, the first build and the rebuild
    assert cache.read_arrays(the_file(cache_home), _identity_of(the_file(cache_home)))


def _identity_of(path: Path) -> dict:
    """The identity a file's header claims (to check that the file reads back whole)."""
    with open(path, "rb") as f:
        return cache._read_header(f, path.stat().st_size)["identity"]


def test_other_data_in_the_folder_rebuilds_the_file_in_place(root, cache_home, builds):
    old = load_cifar10(root, n_val=30, progress=False, cache=True)
    write_cifar_batches(root, n_per_batch=N, seed=4)  # same sizes, other images
    new = load_cifar10(root, n_val=30, progress=False, cache=True)
    assert len(builds) == 2 and len(list(cache_home.glob("*.arrays"))) == 1
    assert_same(load_cifar10(root, n_val=30, progress=False), new)
    assert not np.array_equal(old.X_train, new.X_train)  # the old mapping still reads


def test_another_format_version_is_rebuilt(root, cache_home, builds, monkeypatch):
    load_cifar10(root, n_val=30, progress=False, cache=True)
    monkeypatch.setattr(cache, "FORMAT_VERSION", cache.FORMAT_VERSION + 1)
    load_cifar10(root, n_val=30, progress=False, cache=True)
    load_cifar10(root, n_val=30, progress=False, cache=True)
    assert len(builds) == 2


def test_an_unwritable_cache_loads_into_memory_with_a_warning(root, tmp_path, monkeypatch,
                                                              builds):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.warns(UserWarning, match="Could not use the data cache"):
        d = load_cifar10(root, n_val=30, progress=False, cache=True)
    assert_same(load_cifar10(root, n_val=30, progress=False), d)
    assert d.X_train.flags.writeable and len(builds) == 2  # built once for each load


def test_the_cache_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "xpnet" / "splits"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec: ignore it
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "xpnet" / "splits"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "xpnet" / "splits"


def test_disallowed_dtypes_are_refused_on_write_and_on_read(tmp_path):
    with pytest.raises(ValueError, match="cannot hold"):
        cache.write_arrays(tmp_path / "f", {}, {"x": np.array(["a"], dtype=object)}, {})
    cache.write_arrays(tmp_path / "f", {"k": 1}, {"x": np.arange(3)}, {})
    assert cache.read_arrays(tmp_path / "f", {"k": 1})[0]["x"].tolist() == [0, 1, 2]
    blob = (tmp_path / "f").read_bytes().replace(b'"<i8"', b'"|O8"')
    (tmp_path / "f").write_bytes(blob)
    assert cache.read_arrays(tmp_path / "f", {"k": 1}) is None


BUILDER = textwrap.dedent("""
    import sys
    from xpnet.data import cache, cifar10
    if sys.argv[2] == "no-lock":
        cache.fcntl = None
    real = cifar10._load_folder
    def building(*args):
        print("built", flush=True)
        return real(*args)
    cifar10._load_folder = building
    d = cifar10.load_cifar10(sys.argv[1], n_val=30, progress=False, cache=True)
    print(float(d.X_train.sum()), flush=True)
""")


@pytest.mark.parametrize("lock", ["lock", "no-lock"])
def test_builders_starting_together_leave_one_good_file(root, cache_home, lock):
    if lock == "lock" and cache.fcntl is None:
        pytest.skip("no fcntl.flock on this platform: builders may each build")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [SRC, *filter(None, [os.environ.get("PYTHONPATH")])])}
    procs = []
    try:
        for _ in range(3):
            procs.append(subprocess.Popen([sys.executable, "-c", BUILDER, str(root), lock],
                                          env=env, stdout=subprocess.PIPE, text=True))
        outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs)
    builds = sum(out.count("built") for out in outputs)
    assert builds == 1 if lock == "lock" else builds >= 1
    assert len({out[-1] for out in outputs}) == 1  # every process saw the same numbers
    left = sorted(p.name for p in cache_home.iterdir())
    assert left == [".build.lock", the_file(cache_home).name]  # no temp files
    assert_same(load_cifar10(root, n_val=30, progress=False),
                load_cifar10(root, n_val=30, progress=False, cache=True))


def test_the_cpu_backend_trains_on_the_mapping_itself(root, cache_home):
    """No private copy of the images in a process: the cpu DeviceSplit views the file."""
    from xpnet.backend.devices import get_backend
    from xpnet.training import DeviceSplit

    d = load_cifar10(root, n_val=30, progress=False, cache=True)
    split = DeviceSplit.from_host(get_backend("cpu"), d.X_train, d.y_train, 10, "float32")
    assert np.shares_memory(split.X, d.X_train)
