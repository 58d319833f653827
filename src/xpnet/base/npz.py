"""Reading ``.npz`` files that may be damaged or hostile, without pickle and without bombs.

An ``.npz`` file is a zip of ``.npy`` members.  ``numpy.load`` trusts it: a member's
``.npy`` header may declare any shape, and NumPy allocates that much and inflates until the
data runs out; a bzip2 member inflates a whole chunk at once, whatever its zip entry says.
:class:`NpzReader` reads nothing it has not checked first:

1. the path is a regular file (not a folder, a FIFO or a device), opened without blocking;
2. the zip directory: every member a ``.npy`` of a unique name, stored or deflated (no
   bzip2, lzma or encryption), inside the file, its declared size one that its compressed
   size can hold (deflate shrinks by 1032 at most);
3. :meth:`NpzReader.header`: a member's ``.npy`` header, read in bounded pieces: a known
   version, a header of at most :data:`MAX_HEADER` bytes, a dtype without objects, a shape
   of non-negative sizes, and the zip entry's size exactly header + shape x itemsize;
4. :meth:`NpzReader.read`: after the caller has checked the header (the shape it expects),
   the data, in chunks of at most :data:`CHUNK` bytes into one array of the declared size;
   zipfile stops each member at its declared size and checks its CRC there.

Every failure is one :class:`~xpnet.errors.CheckpointError` sentence that names the file,
the member and the ``remedy`` the caller gives.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import stat
import struct
import tokenize
import zipfile
import zlib

import numpy as np

from xpnet.errors import CheckpointError

#: Largest ``.npy`` header read (NumPy's own ``max_header_size`` default).
MAX_HEADER = 10_000
#: Bytes inflated per read.
CHUNK = 1 << 20
#: Deflate cannot shrink data by more than this factor (a 258-byte match costs 2 bits at
#: best); a member whose declared size needs more is lying.
DEFLATE_RATIO = 1032
#: What a damaged zip or ``.npy`` raises inside zipfile, zlib and NumPy's header parser
#: (which falls back to ``tokenize`` for headers it cannot parse).
DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
           struct.error, zlib.error, NotImplementedError, RuntimeError, UnicodeError,
           OverflowError, RecursionError, SyntaxError, TypeError, tokenize.TokenError)
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}


@dataclasses.dataclass(frozen=True)
class Header:
    """A member's ``.npy`` header: ``shape``, ``dtype``, memory order, and ``offset``
    (the bytes before the data)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class NpzReader:
    """An open ``.npz`` file whose zip directory has been checked (see the module).

    Args:
        path: the file.
        remedy: what the user should do, the end of every error sentence (``"pass a file
            written by Network.save"``).
        what: what the file should be, for the sentences (``"xpnet checkpoint"``).

    ``data``: the file's bytes (received over a network, say), read instead of ``path``,
    which then only names them.  ``names`` lists the members without ``.npy``.  Use as a
    context manager.
    """

    def __init__(self, path, remedy: str, what: str = "xpnet checkpoint", *,
                 data: bytes | None = None):
        self.path, self.remedy, self.what = path, remedy, what
        self._file = None
        self._zip = None
        if data is not None:  # the file's bytes, received from elsewhere: path names them
            self._file = io.BytesIO(data)
        else:
            try:
                name = os.fspath(path)
            except TypeError:
                raise CheckpointError(f"{path!r} is not a path; {remedy}.") from None
            self._file = self._open(name)
        try:
            self.size = len(data) if data is not None else os.fstat(self._file.fileno()).st_size
            if self.size == 0:
                raise self.error(None, "it is empty")
            self._zip = zipfile.ZipFile(self._file)
            self._infos = self._members(self._zip.infolist())
        except DAMAGED as exc:
            self.close()
            raise self.error(None, f"it is not a readable zip file: {_reason(exc)}") from None
        except CheckpointError:
            self.close()
            raise
        self.names = list(self._infos)
        self._headers: dict[str, Header] = {}

    # ---------------------------------------------------------------- opening
    def _open(self, name: str):
        """The file, opened without blocking (a FIFO would wait for a writer) and only if
        it is a regular file."""
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise CheckpointError(f"{name} does not exist; {self.remedy}.") from None
        except PermissionError:
            raise CheckpointError(f"{name} cannot be read (permission denied); allow "
                                  f"reading it, or {self.remedy}.") from None
        except OSError as exc:
            raise CheckpointError(f"{name} cannot be opened ({exc.strerror or exc}); "
                                  f"{self.remedy}.") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise CheckpointError(f"{name} is {kind}, not an {self.what}; {self.remedy}.")
        return os.fdopen(fd, "rb")

    def _members(self, infos) -> dict[str, zipfile.ZipInfo]:
        """``{name: ZipInfo}`` of the ``.npy`` members, each checked as the module says."""
        members = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or info.is_dir():
                raise self.error(name, "is not a .npy array")
            key = name[:-4]
            if key in members:
                raise self.error(key, "appears twice")
            if info.flag_bits & 0x1:
                raise self.error(key, "is encrypted")
            if info.compress_type not in _METHODS:
                method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
                raise self.error(key, f"is compressed with {method}, which xpnet does not read "
                                 "(only stored or deflated members)")
            if info.header_offset + info.compress_size > self.size:
                raise self.error(key, "reaches past the end of the file (it is truncated)")
            stored = info.compress_type == zipfile.ZIP_STORED
            if stored and info.file_size != info.compress_size:
                raise self.error(key, f"is stored with {info.compress_size} bytes but "
                                 f"declares {info.file_size}")
            if not stored and info.file_size > DEFLATE_RATIO * info.compress_size + MAX_HEADER:
                raise self.error(key, f"declares {info.file_size} bytes, more than its "
                                 f"{info.compress_size} deflated bytes can hold")
            members[key] = info
        return members

    # ------------------------------------------------------------------ members
    def header(self, name: str) -> Header:
        """Member ``name``'s ``.npy`` header, checked against its zip entry (not its data)."""
        if name not in self._headers:
            with self._member(name) as f:
                self._headers[name] = self._read_header(name, f)
        return self._headers[name]

    def _read_header(self, name: str, f) -> Header:
        prefix = _read_exactly(f, 8)
        if len(prefix) < 8 or prefix[:6] != b"\x93NUMPY":
            raise self.error(name, "is not a .npy array")
        version = (prefix[6], prefix[7])
        if version not in ((1, 0), (2, 0)):
            raise self.error(name, f"has .npy format version {version[0]}.{version[1]}, "
                             "which xpnet does not read")
        size_format = "<H" if version == (1, 0) else "<I"
        length_bytes = _read_exactly(f, struct.calcsize(size_format))
        if len(length_bytes) < struct.calcsize(size_format):
            raise self.error(name, "is cut short in its header")
        length = struct.unpack(size_format, length_bytes)[0]
        if length > MAX_HEADER:
            raise self.error(name, f"has a header of {length} bytes, more than the "
                             f"{MAX_HEADER} an array needs")
        text = _read_exactly(f, length)
        if len(text) < length:
            raise self.error(name, "is cut short in its header")
        parse = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                 else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = parse(io.BytesIO(length_bytes + text),
                                            max_header_size=MAX_HEADER)
        if dtype.hasobject:
            raise self.error(name, "holds Python objects (pickled data), which xpnet never "
                             "loads")
        if any(n < 0 for n in shape):
            raise self.error(name, f"declares the impossible shape {shape}")
        header = Header(tuple(shape), dtype, fortran_order, 6 + 2 + len(length_bytes) + length)
        declared = self._infos[name].file_size
        if declared != header.offset + header.nbytes:
            raise self.error(name, f"declares shape {header.shape} of {dtype} "
                             f"({header.nbytes} bytes) but its zip entry holds "
                             f"{declared - header.offset}")
        return header

    def read(self, name: str) -> np.ndarray:
        """Member ``name``'s array (native byte order), once the caller has checked its
        :meth:`header`: at most the header's size is allocated and inflated."""
        header = self.header(name)
        shape = header.shape[::-1] if header.fortran_order else header.shape
        array = np.empty(shape, header.dtype)
        with self._member(name) as f:
            if len(_read_exactly(f, header.offset)) < header.offset:
                raise self.error(name, "is cut short")
            view = array.reshape(-1).view(np.uint8)
            done = 0
            while done < header.nbytes:
                n = f.readinto(view[done:done + CHUNK])
                if not n:
                    raise self.error(name, "is cut short")
                done += n
            if f.read(1):
                raise self.error(name, "holds more than its header declares")
        if header.fortran_order:
            array = array.T
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        return array

    def _member(self, name: str):
        """The open member; damage found while reading it is one sentence naming it."""
        return _Member(self, name)

    # --------------------------------------------------------------- errors, close
    def error(self, member: str | None, problem: str) -> CheckpointError:
        """The one sentence: the file, the member, the ``problem`` and the remedy."""
        return refusal(self.path, member, problem, self.remedy, self.what)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Member:
    """A context manager: member ``name`` open for reading; zipfile's and NumPy's errors
    become the reader's one sentence naming the member."""

    def __init__(self, reader: NpzReader, name: str):
        self.reader, self.name = reader, name
        self.file = None

    def __enter__(self):
        try:
            self.file = self.reader._zip.open(self.reader._infos[self.name])
        except DAMAGED as exc:
            raise self.reader.error(self.name, f"cannot be opened: {_reason(exc)}") from None
        return self.file

    def __exit__(self, kind, exc, tb) -> bool:
        if self.file is not None:
            self.file.close()
        if exc is not None and isinstance(exc, DAMAGED):
            raise self.reader.error(self.name, f"is damaged: {_reason(exc)}") from None
        return False


def refusal(path, member: str | None, problem: str, remedy: str,
            what: str = "xpnet checkpoint") -> CheckpointError:
    """``path is not a readable <what> (its member 'm' <problem>); <remedy>.``"""
    where = "" if member is None else f"its member {member!r} "
    return CheckpointError(f"{path} is not a readable {what} ({where}{problem}); {remedy}.")


def _read_exactly(f, n: int) -> bytes:
    """Up to ``n`` bytes of ``f``, fewer only at its end, read in bounded pieces."""
    parts, left = [], n
    while left > 0:
        part = f.read(min(left, CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _reason(exc: BaseException) -> str:
    """An exception's message as a clause inside one sentence (first line, no full stop)."""
    if isinstance(exc, EOFError):  # zipfile's word for data that stops early
        return "its data stops early"
    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.split(". ")[0].rstrip(". ")
    return text[:200] or type(exc).__name__
