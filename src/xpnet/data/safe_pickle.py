"""Restricted unpickling of CIFAR-10 batch files: the security boundary of ``xpnet.data``.

The official batch files are Python pickles.  A pickle can run arbitrary code, so
they are read with ``_BatchUnpickler``, which resolves only the handful of
globals a CIFAR-10 batch needs and hands numpy nothing but validated plain data;
:func:`load_batch` and :func:`load_label_names` then check what a batch and the
meta file hold.  Every read of a pickle in xpnet goes through this module.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np

from xpnet.data.layout import LABEL_NAMES, META_FILE, N_CLASSES, N_FEATURES
from xpnet.errors import DataError, UnsafeFileError

# A real batch holds 10,000 images (about 31 MB on disk); anything ten times larger
# is refused before it is read or allocated.
_REAL_BATCH_BYTES = 10_000 * N_FEATURES
MAX_ARRAY_BYTES = 10 * _REAL_BATCH_BYTES
MAX_FILE_BYTES = 10 * 31_000_000


class _Token:
    """Stands in for ``numpy.ndarray`` inside a pickle: it can be named, never called or changed."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise UnsafeFileError("constructs a raw numpy.ndarray directly")

    def __setstate__(self, state):
        raise UnsafeFileError("tries to modify a library type")


_NDARRAY = _Token()


class _PendingDtype:
    """A dtype named by the pickle; becomes a real numpy dtype only once validated.

    Only plain numeric dtypes are accepted, so object arrays (which would unpickle
    arbitrary objects) can never be created.
    """

    _NUMERIC = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"}
    _BYTEORDERS = {"<", ">", "|", "="}

    def __init__(self, code, align=False, copy=False):
        code = _as_text(code)
        if code is None or code[:1] == "O":
            raise UnsafeFileError(f"declares an object array (dtype {code!r})")
        if code not in self._NUMERIC:
            raise DataError(f"uses dtype {code!r}, which a CIFAR-10 batch never contains")
        self.dtype = np.dtype(code)
        self._built = False

    def __setstate__(self, state):
        # numpy pickles dtypes as (3, byteorder, subarray, names, fields, elsize, align, flags).
        if self._built or not isinstance(state, tuple) or len(state) not in (8, 9):
            raise UnsafeFileError("carries a malformed dtype description")
        version, byteorder, subarray, names, fields = state[:5]
        byteorder = _as_text(byteorder)
        if version not in (3, 4) or byteorder not in self._BYTEORDERS:
            raise UnsafeFileError("carries a malformed dtype description")
        if subarray is not None or names is not None or fields is not None:
            raise UnsafeFileError("declares a structured dtype")
        if byteorder in "<>":
            self.dtype = self.dtype.newbyteorder(byteorder)
        self._built = True


class _PendingArray:
    """An array named by the pickle; its bytes are checked before numpy sees them."""

    def __init__(self):
        self.array: np.ndarray | None = None

    def __setstate__(self, state):
        # ndarray state: (version, shape, dtype, is_fortran, raw bytes); version is optional.
        if self.array is not None or not isinstance(state, tuple):
            raise UnsafeFileError("carries a malformed array")
        if len(state) == 5:
            state = state[1:]
        if len(state) != 4:
            raise UnsafeFileError("carries a malformed array")
        shape, dtype, is_fortran, raw = state
        self.array = _build_array(raw, dtype, shape, "F" if is_fortran else "C")


def _as_text(value) -> str | None:
    """``value`` as ``str`` if it is ``str`` or ASCII ``bytes``, else ``None``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


def _checked_shape(shape, itemsize: int) -> tuple[int, ...]:
    """Validate a declared array shape and refuse absurd sizes before any allocation."""
    if not isinstance(shape, tuple) or len(shape) > 4:
        raise UnsafeFileError("declares a malformed array shape")
    n_bytes = itemsize
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise UnsafeFileError("declares a malformed array shape")
        n_bytes *= dim
    if n_bytes > MAX_ARRAY_BYTES:
        raise UnsafeFileError(
            f"declares an array of {n_bytes:,} bytes, far more than any CIFAR-10 batch holds"
        )
    return shape


def _build_array(raw, dtype, shape, order) -> np.ndarray:
    """A fresh array from raw bytes, after checking dtype, shape and byte count."""
    if not isinstance(dtype, _PendingDtype) or not dtype._built:
        raise UnsafeFileError("carries an array without a valid dtype")
    shape = _checked_shape(shape, dtype.dtype.itemsize)
    if order not in ("C", "F") or not isinstance(raw, (bytes, bytearray)):
        raise UnsafeFileError("carries an array whose data is not raw bytes")
    expected = dtype.dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(
            f"declares an array of {expected:,} bytes but stores {len(raw):,}"
        )
    flat = np.frombuffer(raw, dtype=dtype.dtype)
    return flat.reshape(shape, order=order).copy(order="C")


def _reconstruct(subtype, shape, code):
    """Guarded ``numpy.core.multiarray._reconstruct``: always an empty placeholder."""
    if subtype is not _NDARRAY or shape != (0,) or _as_text(code) != "b":
        raise UnsafeFileError("calls numpy's array constructor with unexpected arguments")
    return _PendingArray()


def _frombuffer(buf, dtype, shape, order):
    """Guarded ``numpy.core.numeric._frombuffer`` (how protocol-5 pickles store arrays)."""
    pending = _PendingArray()
    pending.array = _build_array(buf, dtype, shape, _as_text(order))
    return pending


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    """Guarded ``_codecs.encode``: Python 3 protocol-2 pickles spell bytes this way."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeFileError("calls _codecs.encode with unexpected arguments")
    return text.encode("latin1")


def _empty_bytes(*args):
    """Guarded ``bytes``: Python 3 protocol-2 pickles spell ``b""`` as ``bytes()``."""
    if args:
        raise UnsafeFileError("calls bytes() with arguments")
    return b""


class _Guarded:
    """Wraps an allowed callable so that a pickle cannot mutate it via BUILD."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return self._fn(*args)

    def __setstate__(self, state):
        raise UnsafeFileError("tries to modify a library function")


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _Guarded(_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _Guarded(_reconstruct),
    ("numpy.core.numeric", "_frombuffer"): _Guarded(_frombuffer),
    ("numpy._core.numeric", "_frombuffer"): _Guarded(_frombuffer),
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Guarded(_PendingDtype),
    ("_codecs", "encode"): _Guarded(_codecs_encode),
    ("__builtin__", "bytes"): _Guarded(_empty_bytes),
    ("builtins", "bytes"): _Guarded(_empty_bytes),
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals CIFAR-10 batch files need."""

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafeFileError(
                f"refers to {module}.{name}, which a CIFAR-10 batch never needs"
            )
        return allowed

    def persistent_load(self, pid):
        raise UnsafeFileError("uses persistent references")


def _replace_pending(obj):
    """Swap validated placeholders for their arrays (top level and one level down)."""
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise DataError("holds an array without data")
        return obj.array
    if isinstance(obj, dict):
        return {key: _replace_pending(value) for key, value in obj.items()}
    return obj


def _check_lengths(raw: bytes) -> None:
    """Walk the opcodes once without building anything.

    The C unpickler allocates a string's declared length before reading it, so a tiny
    file could ask for terabytes; pickletools instead fails when a length exceeds the
    bytes that remain.
    """
    for _ in pickletools.genops(io.BytesIO(raw)):
        pass


def _unpickle_file(path: Path):
    """Read ``path`` with the restricted unpickler; errors become one-sentence DataErrors."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DataError(
            f"Cannot read {path} ({err.strerror or err}); check the path and its permissions."
        ) from None
    if size > MAX_FILE_BYTES:
        raise UnsafeFileError(
            f"{path} is {size:,} bytes, far larger than any CIFAR-10 file; "
            "delete it and download the dataset again with --download."
        )
    try:
        # Read into memory first so a length field in the pickle can never make the
        # reader allocate more than the file actually holds.
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(
            f"Cannot read {path} ({err.strerror or err}); check the path and its permissions."
        ) from None
    try:
        _check_lengths(raw)
        return _replace_pending(_BatchUnpickler(io.BytesIO(raw), encoding="bytes").load())
    except UnsafeFileError as err:
        raise UnsafeFileError(
            f"Refused to load {path}: it {err}, so it is not a genuine CIFAR-10 file; "
            "delete it and download the dataset again with --download."
        ) from None
    except DataError as err:
        raise DataError(
            f"{path} is not a valid CIFAR-10 file (it {err}); "
            "delete it and download the dataset again with --download."
        ) from None
    except Exception as err:  # any parse failure of a corrupt file: truncation, bad opcodes, ...
        raise DataError(
            f"{path} is truncated or corrupt ({type(err).__name__}); "
            "delete it and download the dataset again with --download."
        ) from None


def _bytes_keys(record: dict) -> dict:
    """The dict with ``str`` keys encoded to ``bytes`` (files re-saved by Python 3 use str)."""
    return {(k.encode() if isinstance(k, str) else k): v for k, v in record.items()}


def _bad_batch(path: Path, problem: str) -> DataError:
    return DataError(
        f"{path} is not a valid CIFAR-10 batch ({problem}); "
        "delete it and download the dataset again with --download."
    )


def _labels_array(labels, path: Path, n: int) -> np.ndarray:
    """Validate a label list or array against ``n`` images; returns int64 of shape (n,)."""
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise _bad_batch(path, f"labels have dtype {labels.dtype} and {labels.ndim} dimensions")
        y = labels.astype(np.int64)
    elif isinstance(labels, (list, tuple)):
        if not all(type(v) is int for v in labels):
            raise _bad_batch(path, "labels are not all integers")
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    else:
        raise _bad_batch(path, f"labels are a {type(labels).__name__}, not a list")
    if y.shape[0] != n:
        raise _bad_batch(path, f"it has {n} images but {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() >= N_CLASSES):
        raise _bad_batch(path, f"labels fall outside 0..{N_CLASSES - 1}")
    return y


def load_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load one CIFAR-10 batch file safely.

    Returns ``X`` uint8 of shape ``(n, 3072)`` and ``y`` int64 of shape ``(n,)``.
    Raises :class:`UnsafeFileError` for pickles that try anything but plain data and
    :class:`DataError` for truncated, corrupt or inconsistent files.
    """
    path = Path(path)
    record = _unpickle_file(path)
    if not isinstance(record, dict):
        raise _bad_batch(path, f"it holds a {type(record).__name__}, not a dict")
    record = _bytes_keys(record)
    for key in (b"data", b"labels"):
        if key not in record:
            raise _bad_batch(path, f"the {key.decode()!r} entry is missing")
    X = record[b"data"]
    if not isinstance(X, np.ndarray):
        raise _bad_batch(path, f"data is a {type(X).__name__}, not an array")
    if X.dtype != np.uint8:
        raise _bad_batch(path, f"data has dtype {X.dtype}, expected uint8")
    if X.ndim != 2 or X.shape[1] != N_FEATURES or X.shape[0] == 0:
        raise _bad_batch(path, f"data has shape {X.shape}, expected (n, {N_FEATURES})")
    y = _labels_array(record[b"labels"], path, X.shape[0])
    return X, y


def load_label_names(folder: str | os.PathLike) -> list[str]:
    """The class names from ``folder/batches.meta``, or the standard ten if it is missing."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        return list(LABEL_NAMES)
    record = _unpickle_file(path)
    names = _bytes_keys(record).get(b"label_names") if isinstance(record, dict) else None
    if not isinstance(names, list) or not names:
        raise DataError(
            f"{path} has no list of label names; delete it (the standard names are then used)."
        )
    texts = [name.decode("utf-8", "replace") if isinstance(name, bytes) else name for name in names]
    if not all(isinstance(t, str) for t in texts):
        raise DataError(
            f"{path} has label names that are not text; "
            "delete it (the standard names are then used)."
        )
    return texts
