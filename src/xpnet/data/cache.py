"""One copy per machine: named arrays written once to a cache file that every process maps.

A cache file holds a few named arrays (the standardised splits) and a small JSON
record.  Each process maps it read-only, so the pages are shared through the page
cache: ten worker processes of one machine hold one copy of the data, not ten.

Layout of a file (all integers little-endian)::

    b"XPNETARR"                  8 bytes, the magic
    header length H              8 bytes, unsigned
    header                       H bytes of UTF-8 JSON, padded with spaces
    arrays                       each at an offset that is a multiple of ALIGN

The header holds the format version, the ``identity`` the file was built for (a
fingerprint of the source files and the loading options), the JSON ``record``, the
file's size, each array's name, dtype, shape and offset, and the SHA-256 of these
fields and of everything after the header.  A file is used only if all of these check
out; otherwise (truncated, corrupt, another format version, other data or options) it
is rebuilt.  Nothing is unpickled: the arrays are plain numbers of a few allowed dtypes.

Files are written atomically (a temp file, then ``os.replace``), and builders take a
lock file (``fcntl.flock`` where it exists), so processes starting at once build once
and none reads half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from xpnet.base.atomic import atomic_write

if sys.platform != "win32":
    import fcntl
else:  # Windows: no advisory locks; concurrent builders still leave one whole file
    fcntl = None

MAGIC = b"XPNETARR"
#: Bump when the layout or the arrays' meaning changes: older files are then rebuilt.
FORMAT_VERSION = 1
#: Arrays start at multiples of this (a page), so each maps page-aligned.
ALIGN = 4096
#: A header longer than this is not one of ours.
MAX_HEADER_BYTES = 1 << 20
#: The dtypes a cache file may hold (little-endian floats and ints, bytes).
ALLOWED_DTYPES = ("<f2", "<f4", "<f8", "<i4", "<i8", "|u1")
_CHUNK = 8 << 20


def cache_dir() -> Path:
    """Where cache files live: ``$XDG_CACHE_HOME/xpnet/splits``, else ``~/.cache/xpnet/splits``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "xpnet" / "splits"


def fingerprint_files(paths: Iterable[Path]) -> str:
    """SHA-256 (hex) of the names, sizes and contents of ``paths`` (absent ones marked)."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            digest.update(f"{path.name}:absent;".encode())
            continue
        digest.update(f"{path.name}:{path.stat().st_size};".encode())
        with open(path, "rb") as f:
            _hash_stream(f, digest, None)
    return digest.hexdigest()


def _hash_stream(f, digest, length: int | None) -> int:
    """Feed ``length`` bytes (all if None) of ``f`` to ``digest``; returns the bytes read."""
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    total = 0
    while length is None or total < length:
        want = _CHUNK if length is None else min(_CHUNK, length - total)
        got = f.readinto(view[:want])
        if not got:
            break
        digest.update(view[:got])
        total += got
    return total


# ------------------------------------------------------------------------- write


def _layout(arrays: dict[str, np.ndarray], data_start: int) -> tuple[list[dict], int]:
    """Each array's entry (name, dtype, shape, offset, nbytes) and the file's total size."""
    entries, offset = [], data_start
    for name, array in arrays.items():
        offset += -offset % ALIGN
        entries.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape),
                        "offset": offset, "nbytes": int(array.nbytes)})
        offset += array.nbytes
    return entries, offset


def _checked_part(header: dict) -> bytes:
    """The header fields the checksum covers (all but the checksum), as canonical JSON."""
    fields = {k: header.get(k) for k in ("format", "identity", "record", "arrays", "size")}
    return json.dumps(fields, sort_keys=True).encode()


def _chunks(entries: list[dict], arrays: Iterable[np.ndarray], data_start: int):
    """The bytes after the header: each array's bytes, preceded by its zero padding."""
    position = data_start
    for entry, array in zip(entries, arrays, strict=True):
        yield b"\0" * (entry["offset"] - position)
        yield memoryview(array).cast("B")
        position = entry["offset"] + entry["nbytes"]


def write_arrays(path: Path, identity: dict, arrays: dict[str, np.ndarray], record: dict) -> None:
    """Write ``arrays`` and the JSON-able ``record`` to the cache file ``path``, atomically.

    A reader sees the old file, or the new one whole.
    """
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    for name, array in arrays.items():
        if array.dtype.str not in ALLOWED_DTYPES:
            raise ValueError(f"array {name!r} has dtype {array.dtype}, which a cache cannot hold")
    # The offsets depend on the header's length and it on them: leave room for the
    # offsets' extra digits (a page) and start the arrays on the page after.
    header = {"format": FORMAT_VERSION, "identity": identity, "record": record,
              "sha256": "0" * 64}
    draft = json.dumps({**header, "arrays": _layout(arrays, 0)[0], "size": 0}).encode()
    data_start = len(MAGIC) + 8 + len(draft) + ALIGN
    data_start += -data_start % ALIGN
    entries, size = _layout(arrays, data_start)
    header.update(arrays=entries, size=size)
    digest = hashlib.sha256(_checked_part(header))
    for chunk in _chunks(entries, arrays.values(), data_start):
        digest.update(chunk)
    header["sha256"] = digest.hexdigest()
    text = json.dumps(header, sort_keys=True).encode()
    text += b" " * (data_start - len(MAGIC) - 8 - len(text))
    with atomic_write(path) as f:
        f.write(MAGIC + struct.pack("<Q", len(text)) + text)
        for chunk in _chunks(entries, arrays.values(), data_start):
            f.write(chunk)


# -------------------------------------------------------------------------- read


def _read_header(f, file_size: int) -> dict | None:
    """The parsed header of the open file ``f``, or None if it is not a cache file's."""
    lead = f.read(len(MAGIC) + 8)
    if len(lead) != len(MAGIC) + 8 or lead[:len(MAGIC)] != MAGIC:
        return None
    (length,) = struct.unpack("<Q", lead[len(MAGIC):])
    if length > MAX_HEADER_BYTES or len(MAGIC) + 8 + length > file_size:
        return None
    text = f.read(length)
    try:
        header = json.loads(text.decode())
    except ValueError:  # not UTF-8 or not JSON (UnicodeDecodeError is a ValueError)
        return None
    return header if isinstance(header, dict) else None


def _entries_fit(header: dict, data_start: int) -> bool:
    """True if the header lists arrays of allowed dtypes that tile the file in order."""
    entries, position = header.get("arrays"), data_start
    if not isinstance(entries, list) or not isinstance(header.get("size"), int):
        return False
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and entry.get("dtype") in ALLOWED_DTYPES
                and isinstance(entry.get("shape"), list)
                and all(type(n) is int and n >= 0 for n in entry["shape"])
                and type(entry.get("offset")) is int and type(entry.get("nbytes")) is int):
            return False
        expected = int(np.prod(entry["shape"], dtype=np.int64)) * np.dtype(entry["dtype"]).itemsize
        if (entry["nbytes"] != expected or entry["offset"] < position
                or entry["offset"] % ALIGN):
            return False
        position = entry["offset"] + entry["nbytes"]
    return position == header["size"]


def read_arrays(path: Path, identity: dict) -> tuple[dict[str, np.ndarray], dict] | None:
    """The arrays and record of the cache file ``path``, mapped read-only, if it is sound.

    Returns None when the file is absent, truncated, corrupt (its checksum), of another
    format version or built for another ``identity``.  The arrays are read-only NumPy
    views of one shared mapping of the file, the very file that was checked.
    """
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = _read_header(f, size)
        if header is None or header.get("format") != FORMAT_VERSION:
            return None
        if header.get("identity") != identity or header.get("size") != size:
            return None
        data_start = f.tell()
        if not _entries_fit(header, data_start):
            return None
        digest = hashlib.sha256(_checked_part(header))
        if _hash_stream(f, digest, size - data_start) != size - data_start:
            return None
        if digest.hexdigest() != header.get("sha256"):
            return None
        whole = np.memmap(f, dtype=np.uint8, mode="r", shape=(size,))
    arrays = {}
    for entry in header["arrays"]:
        start, stop = entry["offset"], entry["offset"] + entry["nbytes"]
        view = whole[start:stop].view(np.dtype(entry["dtype"])).reshape(entry["shape"])
        arrays[entry["name"]] = np.asarray(view)  # a plain ndarray on the same mapping
    return arrays, header.get("record", {})


# ------------------------------------------------------------------- load or build


@contextlib.contextmanager
def _build_lock(folder: Path):
    """Hold ``folder/.build.lock`` exclusively (a no-op where ``fcntl`` is missing)."""
    with open(folder / ".build.lock", "a+b") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield  # closing the file releases the lock


Build = Callable[[], tuple[dict[str, np.ndarray], dict]]


def load_or_build(name: str, identity: dict, build: Build,
                  folder: Path | None = None) -> tuple[dict[str, np.ndarray], dict, Path]:
    """The arrays and record cached under ``name`` for ``identity``, built if need be.

    ``build()`` returns ``(arrays, record)``; it runs only when the file is missing or
    unsound, and then under the lock, so processes that start together build once.
    Returns the mapped arrays, the record and the file's path.  Raises ``OSError`` when
    the cache folder cannot be written (the caller may then do without the cache).
    """
    folder = cache_dir() if folder is None else Path(folder)
    path = folder / name
    found = read_arrays(path, identity)
    if found is not None:
        return (*found, path)
    folder.mkdir(parents=True, exist_ok=True)
    with _build_lock(folder):
        found = read_arrays(path, identity)  # another process may have built it meanwhile
        if found is None:
            arrays, record = build()
            write_arrays(path, identity, arrays, record)
            del arrays
            found = read_arrays(path, identity)
    if found is None:
        raise OSError(f"the cache file {path} did not read back as written")
    return (*found, path)
