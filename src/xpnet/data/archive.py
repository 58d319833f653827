"""Safe tar extraction: every member is checked (plain files and folders only, relative
paths inside the target, bounded sizes) before anything is written, and file bytes
are copied with a hard size cap.
"""

from __future__ import annotations

import gzip
import lzma
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from xpnet.errors import DataError, UnsafeFileError

_CHUNK = 1 << 20


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


def _extract_member(
    archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, limit: int
) -> None:
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
