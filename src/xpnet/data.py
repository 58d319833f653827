"""CIFAR-10: locate, download and verify, safe extraction, safe unpickling, preprocessing.

Images are rows: ``X`` has shape ``(n, 3072)`` (channel planes R|G|B, each a row-major
32x32 image) and ``y`` has shape ``(n,)``.  Everything here runs on the host with
NumPy; moving arrays to a device is the caller's job (see ``backend``).

The official batch files are Python pickles.  A pickle can run arbitrary code, so
they are read with :class:`_BatchUnpickler`, which resolves only the handful of
globals a CIFAR-10 batch needs and hands numpy nothing but validated plain data.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import lzma
import os
import pickle
import pickletools
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from tqdm import tqdm

from xpnet.atomic import atomic_write
from xpnet.errors import DataError, DownloadError, UnsafeFileError

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

# A real batch holds 10,000 images (about 31 MB on disk); anything ten times larger
# is refused before it is read or allocated.
_REAL_BATCH_BYTES = 10_000 * N_FEATURES
MAX_ARRAY_BYTES = 10 * _REAL_BATCH_BYTES
MAX_FILE_BYTES = 10 * 31_000_000

_CHUNK = 1 << 20


# --------------------------------------------------------------------------- locate


def _cache_root() -> Path:
    """The default data root, ``~/.cache/xpnet``."""
    return Path.home() / ".cache" / "xpnet"


def _has_batches(folder: Path) -> bool:
    """True if ``folder`` is a directory holding at least one CIFAR-10 batch file."""
    if not folder.is_dir():
        return False
    return any((folder / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH))


def _batch_folder_in(root: Path) -> Path | None:
    """The batch folder for ``root``, which may be the data root or the folder itself."""
    for candidate in (root / BATCH_FOLDER, root):
        if _has_batches(candidate):
            return candidate
    return None


def locate_cifar(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Find the ``cifar-10-batches-py`` folder.

    Looks in ``data_dir`` (the root that contains ``cifar-10-batches-py/`` or that
    folder itself), then in ``$XPNET_DATA``, then in ``~/.cache/xpnet``.  Returns
    ``None`` when none of them holds batch files.  A ``data_dir`` that does not
    exist raises :class:`DataError`.
    """
    roots = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.exists():
            raise DataError(
                f"The data folder {data_dir} does not exist; pass --data-dir the folder "
                f"that contains {BATCH_FOLDER} (or pass --download to fetch CIFAR-10 there)."
            )
        roots.append(data_dir)
    env = os.environ.get("XPNET_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(_cache_root())
    for root in roots:
        found = _batch_folder_in(root)
        if found is not None:
            return found
    return None


# ----------------------------------------------------------------- safe unpickling


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
        raise DataError(f"Cannot read {path} ({err.strerror or err}); check the path and its permissions.") from None
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
        raise DataError(f"Cannot read {path} ({err.strerror or err}); check the path and its permissions.") from None
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
            f"{path} has label names that are not text; delete it (the standard names are then used)."
        )
    return texts


# ------------------------------------------------------------------ safe extraction


def _member_problem(member: tarfile.TarInfo, max_member_bytes: int) -> str | None:
    """Why ``member`` may not be extracted, or ``None`` if it is a plain file or folder."""
    name = member.name
    if not name or "\x00" in name:
        return "has an empty or malformed name"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "has an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "climbs out of the target folder with '..'"
    if member.issym() or member.islnk():
        return "is a link"
    if not (member.isreg() or member.isdir()):
        return "is a device, fifo or other special file"
    if member.size > max_member_bytes:
        return f"is {member.size:,} bytes, more than the {max_member_bytes:,} allowed"
    return None


# gzip.BadGzipFile is an OSError, so it must be told apart from a failed write.
_CORRUPT_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def _refusal(archive: Path, name: str, problem: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"Refused to extract {archive}: member {name!r} {problem}; "
        "delete the archive and download it again from the official source."
    )


def _target_path(archive: Path, dest: Path, name: str) -> Path:
    """Where member ``name`` goes under the resolved ``dest``; refuses anything outside it."""
    target = (dest / name.replace("\\", "/")).resolve()
    if target != dest and dest not in target.parents:
        raise _refusal(archive, name, "resolves to a path outside the target folder")
    return target


def safe_extract_tar(
    archive: str | os.PathLike, dest: str | os.PathLike, max_member_bytes: int = 200_000_000
) -> None:
    """Extract ``archive`` into ``dest`` after validating every member.

    Only plain files and folders with relative paths inside ``dest`` are allowed; links,
    devices, ``..`` components, absolute paths and members over ``max_member_bytes``
    raise :class:`UnsafeFileError` before anything is written.  Permissions and owners
    stored in the archive are ignored.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                problem = _member_problem(member, max_member_bytes)
                if problem is not None:
                    raise _refusal(archive, member.name, problem)
            dest.mkdir(parents=True, exist_ok=True)
            root = dest.resolve()
            for member in members:
                target = _target_path(archive, root, member.name)
                _extract_member(archive, tar, member, target, max_member_bytes)
    except _CORRUPT_ARCHIVE_ERRORS:
        raise DataError(
            f"{archive} is not a readable tar archive (it is truncated or corrupt); "
            "delete it and download it again."
        ) from None
    except OSError as err:
        raise DataError(
            f"Extracting {archive} into {dest} failed ({err.strerror or err}); "
            "check that the folder is writable and has free space."
        ) from None


def _extract_member(archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, limit: int) -> None:
    """Write one validated member; file bytes are copied with a hard size cap."""
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    written = 0
    with source, open(target, "wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise _refusal(archive, member.name, "holds more data than it declares")
            out.write(chunk)


# -------------------------------------------------------------------------- download


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
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and declared.isdigit() else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc="CIFAR-10", disable=not progress) as bar:
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
    """
    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=root, prefix=".cifar-download-", suffix=".part", delete=False)
    except OSError as err:
        raise DownloadError(f"Cannot write to {root} ({err.strerror}); pass --data-dir a writable folder.") from None
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
                f"The archive downloaded into {root} has no {BATCH_FOLDER} folder with batch files; "
                "check the --download URL."
            )
        final = root / BATCH_FOLDER
        if final.exists():
            # Swap the old folder out first: a directory cannot be replaced in one step.
            os.replace(final, staging / "previous")
        os.replace(extracted, final)
        return final
    finally:
        _remove_quietly(staging)


# ---------------------------------------------------------------------- the dataset


@dataclass
class Dataset:
    """CIFAR-10 split and standardised, on the host.

    ``X_*`` are float arrays of shape ``(n, 3072)``, ``y_*`` int64 of shape ``(n,)``;
    ``mean`` and ``std`` (shape ``(3072,)``) are the training statistics of the pixels
    scaled to [0, 1], which every split was standardised with.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    label_names: list[str]
    mean: np.ndarray
    std: np.ndarray
    n_classes: int = N_CLASSES


def _not_found_message(data_dir) -> str:
    places = [str(Path(data_dir).expanduser())] if data_dir is not None else []
    if os.environ.get("XPNET_DATA"):
        places.append(os.environ["XPNET_DATA"])
    places.append(str(_cache_root()))
    return (
        f"CIFAR-10 was not found (looked in {', '.join(places)}); put the {BATCH_FOLDER} "
        "folder there, point --data-dir DIR or XPNET_DATA at the folder that contains it, "
        "or pass --download to fetch it."
    )


def _find_or_download(data_dir, download: bool, progress: bool) -> Path:
    """The batch folder, downloading it when allowed and absent."""
    if download and data_dir is not None:
        Path(data_dir).expanduser().mkdir(parents=True, exist_ok=True)
    folder = locate_cifar(data_dir)
    if folder is not None:
        return folder
    if not download:
        raise DataError(_not_found_message(data_dir))
    root = Path(data_dir).expanduser() if data_dir is not None else _cache_root()
    return download_cifar(root, progress=progress)


def _load_files(folder: Path, names) -> tuple[np.ndarray, np.ndarray]:
    """Load and stack batch files; returns uint8 ``(n, 3072)`` and int64 ``(n,)``."""
    for name in names:
        if not (folder / name).is_file():
            raise DataError(
                f"{folder / name} is missing; restore the complete {BATCH_FOLDER} folder "
                "or pass --download to fetch a fresh copy."
            )
    parts = [load_batch(folder / name) for name in names]
    return np.concatenate([X for X, _ in parts]), np.concatenate([y for _, y in parts])


def _pixel_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of ``X / 255`` for uint8 ``X`` of shape (n, 3072), in float64.

    Sums of pixels and of squared pixels are exact in int64, so the variance
    ``(n * sum(x^2) - sum(x)^2) / n^2`` has no cancellation error, and no float64 copy
    of the whole training set is ever made.
    """
    n = X.shape[0]
    total = np.zeros(X.shape[1], dtype=np.int64)
    total_sq = np.zeros(X.shape[1], dtype=np.int64)
    for start in range(0, n, 5000):
        block = X[start:start + 5000].astype(np.int64)
        total += block.sum(axis=0)
        total_sq += (block * block).sum(axis=0)
    var = (n * total_sq - total * total) / float(n) ** 2
    mean = total / n / 255.0
    std = np.sqrt(var) / 255.0
    # A constant pixel (possible in tiny or limited sets) is centred but not scaled.
    std[std == 0] = 1.0
    return mean, std


def _standardise(X: np.ndarray, mean: np.ndarray, std: np.ndarray, dtype) -> np.ndarray:
    """``(X / 255 - mean) / std`` as ``dtype``; uint8 (n, 3072) in, float (n, 3072) out."""
    out = X.astype(dtype)
    out /= 255
    out -= mean
    out /= std
    return out


def _check_options(split: str, n_val: int, limit) -> None:
    if split not in ("default", "a1"):
        raise DataError(f"Unknown split {split!r}; use 'default' (five batches) or 'a1' (batch 1 / batch 2).")
    if type(n_val) is not int or n_val < 1:
        raise DataError(f"n_val must be a positive whole number, not {n_val!r}; pass e.g. n_val=5000.")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise DataError(f"limit must be a positive whole number or None, not {limit!r}.")


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    split: str = "default",
    n_val: int = 5000,
    dtype=np.float32,
    download: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> Dataset:
    """Load, split and standardise CIFAR-10.

    ``split="default"``: the five training batches, the last ``n_val`` images for
    validation, ``test_batch`` for test.  ``split="a1"``: batch 1 for training, batch 2
    for validation (``n_val`` is ignored), ``test_batch`` for test.  ``limit`` keeps
    the first ``limit`` images of each split (for quick runs).  Pixels are scaled to
    [0, 1] by ``/255`` and then standardised per feature with the training mean and
    std (computed in float64 on the training part actually kept, then cast to ``dtype``).
    """
    _check_options(split, n_val, limit)
    folder = _find_or_download(data_dir, download, progress)
    if split == "default":
        X_all, y_all = _load_files(folder, TRAIN_BATCHES)
        if n_val >= X_all.shape[0]:
            raise DataError(
                f"n_val={n_val} leaves no training images out of the {X_all.shape[0]} in {folder}; "
                "pass a smaller n_val."
            )
        cut = X_all.shape[0] - n_val
        X_tr, y_tr, X_va, y_va = X_all[:cut], y_all[:cut], X_all[cut:], y_all[cut:]
    else:
        X_tr, y_tr = _load_files(folder, TRAIN_BATCHES[:1])
        X_va, y_va = _load_files(folder, TRAIN_BATCHES[1:2])
    X_te, y_te = _load_files(folder, (TEST_BATCH,))
    if limit is not None:
        X_tr, y_tr, X_va, y_va = X_tr[:limit], y_tr[:limit], X_va[:limit], y_va[:limit]
        X_te, y_te = X_te[:limit], y_te[:limit]
    mean, std = _pixel_stats(X_tr)
    mean_d, std_d = mean.astype(dtype), std.astype(dtype)
    return Dataset(
        X_train=_standardise(X_tr, mean_d, std_d, dtype), y_train=y_tr,
        X_val=_standardise(X_va, mean_d, std_d, dtype), y_val=y_va,
        X_test=_standardise(X_te, mean_d, std_d, dtype), y_test=y_te,
        label_names=load_label_names(folder), mean=mean_d, std=std_d,
    )


# ------------------------------------------------------------------ synthetic data


def _atomic_pickle(obj, path: Path) -> None:
    """Write ``obj`` as a protocol-2 pickle to ``path`` atomically."""
    with atomic_write(path) as out:
        pickle.dump(obj, out, protocol=2)


def _synthetic_batch(rng: np.random.Generator, templates: np.ndarray, n: int) -> tuple[np.ndarray, list[int]]:
    """``n`` noisy images around per-class templates (n_classes, 3072); uint8 (n, 3072)."""
    labels = rng.permutation(np.arange(n) % templates.shape[0])
    noise = rng.normal(0.0, 48.0, size=(n, N_FEATURES))
    X = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    return X, [int(v) for v in labels]


def write_cifar_batches(
    root: str | os.PathLike, n_per_batch: int = 100, seed: int = 0, n_classes: int = 10
) -> Path:
    """Write a tiny learnable CIFAR-10 look-alike under ``root/cifar-10-batches-py``.

    Each of ``data_batch_1..5`` and ``test_batch`` holds ``n_per_batch`` images in the
    official format (protocol-2 pickled dicts with bytes keys, data uint8 (n, 3072));
    each class is its own random template image plus Gaussian noise.  Returns the folder.
    """
    if not 1 <= n_classes <= N_CLASSES or n_per_batch < 1:
        raise ValueError("need 1 <= n_classes <= 10 and n_per_batch >= 1")
    folder = Path(root) / BATCH_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    templates = rng.uniform(48.0, 208.0, size=(n_classes, N_FEATURES))
    names = (*TRAIN_BATCHES, TEST_BATCH)
    for i, name in enumerate(names):
        X, labels = _synthetic_batch(rng, templates, n_per_batch)
        title = "testing batch 1 of 1" if name == TEST_BATCH else f"training batch {i + 1} of 5"
        record = {
            b"batch_label": title.encode(),
            b"labels": labels,
            b"data": X,
            b"filenames": [f"synthetic_{i}_{j}.png".encode() for j in range(n_per_batch)],
        }
        _atomic_pickle(record, folder / name)
    meta = {
        b"num_cases_per_batch": n_per_batch,
        b"label_names": [name.encode() for name in LABEL_NAMES[:n_classes]],
        b"num_vis": N_FEATURES,
    }
    _atomic_pickle(meta, folder / META_FILE)
    return folder
