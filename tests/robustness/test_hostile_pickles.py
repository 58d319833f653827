"""Item 1: hostile pickles in batch files are refused before anything runs."""

from __future__ import annotations

import builtins
import os
import pickle
import pickletools
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from xpnet.data import MAX_FILE_BYTES, DataError, UnsafeFileError, load_batch
from xpnet.errors import UnsafeFileError as UnsafeFileErrorFromErrors

# The function numpy itself uses to rebuild arrays (numpy.core or numpy._core).
_RECONSTRUCT = np.zeros(1, np.uint8).__reduce__()[0]


class Payload:
    """Pickles as a call to ``func(*args)``: what an attacker would plant."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class FakeArray:
    """Pickles exactly like a numpy array, but with a state we choose."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return _RECONSTRUCT, (np.ndarray, (0,), b"b"), self.state


def _payloads(marker: Path) -> dict[str, Payload]:
    return {
        "os.system": Payload(os.system, f"touch {marker}"),
        "subprocess.Popen": Payload(subprocess.Popen, ["touch", str(marker)]),
        "builtins.eval": Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
    }


def _valid_record(n: int = 4) -> dict:
    return {b"data": np.zeros((n, 3072), np.uint8), b"labels": [0] * n}


def _write(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


def _globals_named(blob: bytes) -> set[str]:
    """Names of the GLOBAL / STACK_GLOBAL references in a pickle (read, never run)."""
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(blob):
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.add(".".join(strings[-2:]))
    return names


def _global_call(module: str, name: str, args: bytes = b")") -> bytes:
    """A protocol-2 pickle that calls ``module.name(*args)``."""
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + args + b"R."


PLACEMENTS = ["whole file", "before the data", "inside the labels"]


def _place(payload: Payload, where: str):
    if where == "whole file":
        return payload
    if where == "before the data":
        return {b"evil": payload, **_valid_record()}
    record = _valid_record()
    record[b"labels"] = [0, 0, 0, payload]
    return record


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("where", PLACEMENTS)
@pytest.mark.parametrize(
    "kind", ["os.system", "subprocess.Popen", "builtins.eval", "builtins.exec"]
)
def test_code_execution_payload_is_refused(tmp_path, one_sentence, kind, where, protocol):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_place(_payloads(marker)[kind], where), protocol=protocol)
    # The planted call really is in the file (so a plain pickle.load would run it).
    assert _globals_named(blob) & {"posix.system", "nt.system", "subprocess.Popen",
                                   "commands.Popen", "__builtin__.eval", "builtins.eval",
                                   "__builtin__.exec", "builtins.exec"}
    path = _write(tmp_path / "data_batch_1", blob)

    with pytest.raises(UnsafeFileError) as info:
        load_batch(path)

    one_sentence(str(info.value), str(path), "Refused")
    if kind == "subprocess.Popen":
        time.sleep(0.2)  # a spawned `touch` would have finished by now
    assert not marker.exists()


def test_unsafe_file_error_is_the_project_class():
    assert UnsafeFileError is UnsafeFileErrorFromErrors
    assert issubclass(UnsafeFileError, DataError)


def test_object_array_with_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    record = _valid_record()
    record[b"data"] = np.array([Payload(os.system, f"touch {marker}")], dtype=object)
    path = _write(tmp_path / "data_batch_1", pickle.dumps(record, protocol=2))

    with pytest.raises(UnsafeFileError, match="object array"):
        load_batch(path)
    assert not marker.exists()


def test_harmless_object_array_is_still_refused(tmp_path, one_sentence):
    record = {b"data": np.array([[1] * 3072], dtype=object), b"labels": [0]}
    path = _write(tmp_path / "data_batch_1", pickle.dumps(record, protocol=2))

    with pytest.raises(UnsafeFileError) as info:
        load_batch(path)
    one_sentence(str(info.value), str(path), "object array")


@pytest.mark.parametrize(
    "module, name",
    [
        ("collections", "OrderedDict"),
        ("builtins", "getattr"),
        ("__builtin__", "open"),
        ("copyreg", "_reconstructor"),
        ("copy_reg", "_reconstructor"),
        ("numpy", "load"),
        ("numpy", "frombuffer"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.lib.npyio", "load"),
        ("os", "remove"),
        ("shutil", "rmtree"),
    ],
)
def test_unknown_global_is_refused(tmp_path, one_sentence, module, name):
    path = _write(tmp_path / "data_batch_1", _global_call(module, name))
    with pytest.raises(UnsafeFileError) as info:
        load_batch(path)
    one_sentence(str(info.value), str(path), f"{module}.{name}")


def test_calling_ndarray_directly_is_refused(tmp_path):
    # numpy.ndarray((10**12,)) would allocate; the reader must never call it.
    path = _write(tmp_path / "data_batch_1",
                  _global_call("numpy", "ndarray", b"\x8a\x05\x00\x10\xa5\xd4\xe8\x85\x85"))
    with pytest.raises(UnsafeFileError):
        load_batch(path)


def test_bytes_with_a_size_is_refused(tmp_path):
    # bytes(10**12) would allocate a terabyte; only the empty bytes() spelling is allowed.
    for module in ("builtins", "__builtin__"):
        path = _write(tmp_path / "data_batch_1",
                      _global_call(module, "bytes", b"\x8a\x05\x00\x10\xa5\xd4\xe8\x85"))
        with pytest.raises(UnsafeFileError):
            load_batch(path)


def test_reconstruct_with_unexpected_arguments_is_refused(tmp_path):
    blob = pickle.dumps(Payload(_RECONSTRUCT, np.ndarray, (10**9,), b"b"), protocol=2)
    path = _write(tmp_path / "data_batch_1", blob)
    with pytest.raises(UnsafeFileError):
        load_batch(path)


@pytest.mark.parametrize("shape", [(10**6, 10**6), (10**12,), (10**4, 3072, 10**4)])
def test_huge_declared_array_is_refused_without_allocating(tmp_path, one_sentence, shape):
    state = (1, shape, np.dtype(np.uint8), False, b"\x00" * 16)
    record = {b"data": FakeArray(state), b"labels": [0]}
    path = _write(tmp_path / "data_batch_1", pickle.dumps(record, protocol=2))

    start = time.perf_counter()
    with pytest.raises(UnsafeFileError) as info:
        load_batch(path)
    assert time.perf_counter() - start < 2.0
    one_sentence(str(info.value), str(path), "bytes")


def test_huge_array_in_protocol_5_form_is_refused(tmp_path):
    # Protocol 5 stores arrays via numpy's _frombuffer(buffer, dtype, shape, order).
    frombuffer = np.zeros(4, np.uint8).__reduce_ex__(5)[0]
    blob = pickle.dumps(
        {b"data": Payload(frombuffer, b"\x00" * 16, np.dtype(np.uint8), (10**12,), "C"),
         b"labels": [0]},
        protocol=5,
    )
    path = _write(tmp_path / "data_batch_1", blob)
    with pytest.raises(UnsafeFileError):
        load_batch(path)


def test_huge_string_length_is_refused_without_allocating(tmp_path):
    # BINBYTES8 claiming a terabyte: the C unpickler would allocate it up front.
    blob = b"\x80\x04\x8e" + struct.pack("<Q", 10**12) + b"abc."
    path = _write(tmp_path / "data_batch_1", blob)
    with pytest.raises(DataError, match="data_batch_1"):
        load_batch(path)


@pytest.mark.parametrize("shape", [(-1, 3072), (2.5, 3072), ("2", 3072), [1, 3072]])
def test_malformed_declared_shape_is_refused(tmp_path, shape):
    record = {b"data": FakeArray((1, shape, np.dtype(np.uint8), False, b"\x00" * 3072)),
              b"labels": [0]}
    path = _write(tmp_path / "data_batch_1", pickle.dumps(record, protocol=2))
    with pytest.raises(UnsafeFileError):
        load_batch(path)


def test_oversized_file_is_refused_before_reading(tmp_path, one_sentence):
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk space
    with pytest.raises(UnsafeFileError) as info:
        load_batch(path)
    one_sentence(str(info.value), str(path))


def test_structured_dtype_is_refused(tmp_path):
    record = {b"data": np.zeros(3072, dtype=[("a", "u1")]), b"labels": [0]}
    path = _write(tmp_path / "data_batch_1", pickle.dumps(record, protocol=2))
    with pytest.raises(DataError, match="data_batch_1"):
        load_batch(path)


def test_persistent_reference_is_refused(tmp_path):
    path = _write(tmp_path / "data_batch_1", b"\x80\x02X\x01\x00\x00\x00aQ.")
    with pytest.raises(UnsafeFileError):
        load_batch(path)


def test_pickle_cannot_modify_the_allowed_functions(tmp_path, batch_folder):
    # GLOBAL numpy.dtype, then BUILD with a slot state that would overwrite attributes.
    blob = b"\x80\x02cnumpy\ndtype\nN}X\x03\x00\x00\x00_fnNs\x86b."
    path = _write(tmp_path / "data_batch_1", blob)
    with pytest.raises(UnsafeFileError):
        load_batch(path)
    X, y = load_batch(batch_folder / "data_batch_1")  # the reader still works afterwards
    assert X.shape == (20, 3072) and y.shape == (20,)


def test_array_state_applied_twice_is_refused(tmp_path, one_sentence):
    state = (1, (1, 3072), np.dtype(np.uint8), False, b"\x00" * 3072)
    blob = pickle.dumps(FakeArray(state), protocol=2)
    assert blob.endswith(b"b.")
    # Push the array's state again from the memo and BUILD a second time.
    twice = blob[:-1] + b"h" + bytes([_memo_index_of_state(blob)]) + b"b."
    path = _write(tmp_path / "data_batch_1", twice)
    with pytest.raises(UnsafeFileError) as info:
        load_batch(path)
    one_sentence(str(info.value), str(path), "malformed array")


def _memo_index_of_state(blob: bytes) -> int:
    """Memo slot of the array state tuple: the last one stored before the final BUILD."""
    last = slot = None
    for op, arg, _ in pickletools.genops(blob):
        if op.name == "BINPUT":
            last = arg
        if op.name == "BUILD":
            slot = last
    return slot
