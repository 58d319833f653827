"""Item 3: broken batch files give a DataError that names the file and what is wrong."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from xpnet.data import (
    META_FILE,
    TEST_BATCH,
    DataError,
    load_batch,
    load_cifar10,
    load_label_names,
)


def _record(n: int = 4) -> dict:
    rng = np.random.default_rng(0)
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }


def _with(**changes) -> dict:
    record = _record()
    for key, value in changes.items():
        if value is _DROP:
            del record[key.encode()]
        else:
            record[key.encode()] = value
    return record


_DROP = object()

# (case id, record or raw bytes factory, words the message must contain)
BROKEN_RECORDS = [
    ("data float64", lambda: _with(data=np.zeros((4, 3072))), ["float64", "uint8"]),
    ("data int16", lambda: _with(data=np.zeros((4, 3072), np.int16)), ["int16"]),
    ("data int64", lambda: _with(data=np.zeros((4, 3072), np.int64)), ["int64"]),
    ("data 1-D", lambda: _with(data=np.zeros(3072, np.uint8)), ["shape", "(3072,)"]),
    ("data wrong width", lambda: _with(data=np.zeros((4, 1024), np.uint8)), ["shape", "(4, 1024)"]),
    ("data 4-D", lambda: _with(data=np.zeros((4, 3, 32, 32), np.uint8)), ["shape"]),
    ("data empty", lambda: _with(data=np.zeros((0, 3072), np.uint8), labels=[]), ["shape"]),
    ("data a list", lambda: _with(data=[[0] * 3072] * 4), ["list"]),
    ("data missing", lambda: _with(data=_DROP), ["'data'", "missing"]),
    ("labels missing", lambda: _with(labels=_DROP), ["'labels'", "missing"]),
    ("label 10", lambda: _with(labels=[0, 1, 2, 10]), ["labels", "0..9"]),
    ("label -1", lambda: _with(labels=[0, -1, 2, 3]), ["labels", "0..9"]),
    ("labels too few", lambda: _with(labels=[0, 1, 2]), ["4 images", "3 labels"]),
    ("labels too many", lambda: _with(labels=[0] * 5), ["4 images", "5 labels"]),
    ("labels bytes", lambda: _with(labels=[b"cat"] * 4), ["labels", "integers"]),
    ("labels floats", lambda: _with(labels=[0.0, 1.0, 2.0, 3.0]), ["labels", "integers"]),
    ("labels float array", lambda: _with(labels=np.zeros(4)), ["labels", "float64"]),
    ("labels array out of range", lambda: _with(labels=np.array([0, 1, 2, 99])),
     ["labels", "0..9"]),
    ("labels a dict", lambda: _with(labels={0: 1}), ["labels", "dict"]),
    ("not a dict", lambda: [1, 2, 3], ["list", "not a dict"]),
    ("a bare array", lambda: np.zeros((4, 3072), np.uint8), ["ndarray", "not a dict"]),
]


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(
    "make, words", [(m, w) for _, m, w in BROKEN_RECORDS], ids=[c for c, _, _ in BROKEN_RECORDS]
)
def test_inconsistent_batch_is_refused_with_the_reason(
    tmp_path, one_sentence, make, words, protocol
):
    path = tmp_path / "data_batch_3"
    path.write_bytes(pickle.dumps(make(), protocol=protocol))
    with pytest.raises(DataError) as info:
        load_batch(path)
    one_sentence(str(info.value), str(path), *words)


def _valid_bytes() -> bytes:
    return pickle.dumps(_record(50), protocol=2)


RAW_FILES = {
    "empty": lambda: b"",
    "truncated to half": lambda: _valid_bytes()[: len(_valid_bytes()) // 2],
    "truncated by one byte": lambda: _valid_bytes()[:-1],
    "only the header": lambda: _valid_bytes()[:10],
    "random bytes": lambda: (
        np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    ),
    "text": lambda: b"<html>404 Not Found</html>\n",
    "gzip data": lambda: b"\x1f\x8b\x08\x00" + b"\x00" * 100,
    "corrupted opcode": lambda: _flip(_valid_bytes(), 2),
}


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1:]


@pytest.mark.parametrize("make", RAW_FILES.values(), ids=RAW_FILES.keys())
def test_corrupt_file_is_a_data_error_naming_it(tmp_path, one_sentence, make):
    path = tmp_path / "data_batch_2"
    path.write_bytes(make())
    with pytest.raises(DataError) as info:
        load_batch(path)
    one_sentence(str(info.value), str(path))


def test_byte_count_that_does_not_match_the_shape_is_refused(tmp_path, one_sentence):
    reconstruct = np.zeros(1, np.uint8).__reduce__()[0]

    class ShortArray:
        def __reduce__(self):
            state = (1, (4, 3072), np.dtype(np.uint8), False, b"\x00" * 100)
            return reconstruct, (np.ndarray, (0,), b"b"), state

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": ShortArray(), b"labels": [0] * 4}, protocol=2))
    with pytest.raises(DataError) as info:
        load_batch(path)
    one_sentence(str(info.value), str(path), "12,288", "100")


def test_unreadable_path_is_a_data_error(tmp_path, one_sentence):
    with pytest.raises(DataError) as info:
        load_batch(tmp_path / "no_such_batch")
    one_sentence(str(info.value), "no_such_batch")


@pytest.mark.parametrize("split, missing", [("default", TEST_BATCH), ("a1", TEST_BATCH),
                                            ("default", "data_batch_4"), ("a1", "data_batch_2")])
def test_missing_batch_is_named(batch_folder, one_sentence, split, missing):
    (batch_folder / missing).unlink()
    with pytest.raises(DataError) as info:
        load_cifar10(batch_folder.parent, split=split, n_val=10, progress=False)
    one_sentence(str(info.value), str(batch_folder / missing), "missing")


def test_broken_batch_inside_the_folder_is_named_by_load_cifar10(batch_folder, one_sentence):
    target = batch_folder / "data_batch_5"
    target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(DataError) as info:
        load_cifar10(batch_folder.parent, n_val=10, progress=False)
    one_sentence(str(info.value), str(target))


def test_missing_meta_falls_back_to_standard_names(batch_folder):
    (batch_folder / META_FILE).unlink()
    names = load_label_names(batch_folder)
    assert names[0] == "airplane" and names[-1] == "truck" and len(names) == 10


@pytest.mark.parametrize("content", [b"garbage", pickle.dumps({b"label_names": 3}, protocol=2),
                                     pickle.dumps([1, 2], protocol=2)])
def test_broken_meta_is_a_data_error_naming_it(batch_folder, one_sentence, content):
    path = batch_folder / META_FILE
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_label_names(batch_folder)
    one_sentence(str(info.value), str(path))
