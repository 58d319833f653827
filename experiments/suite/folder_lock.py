"""One writer per output folder: the lock an invocation holds on ``OUT`` while it runs.

Every file of an output folder (``results.json``, ``figures/``, ``report.md``,
``errors/``) is written by the one process that holds the folder's lock: an exclusive
``fcntl.flock`` on the folder itself, which the OS releases when the process ends,
however it ends (a SIGKILL leaves no stale lock behind).  A lock on the folder cannot be
sidestepped by deleting or replacing a file in it.  The holder also locks ``OUT/.lock``
(as suites before this one did, and where a filesystem cannot lock a folder: some
network filesystems) and writes its pid and command line there, so a second invocation
refused the folder can say who holds it; on Linux the kernel's table of locks
(``/proc/locks``) names the holder first, whatever the file says.  Where ``fcntl`` is
missing (Windows) the lock is a no-op, as the data cache's is.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from xpnet.errors import OutputError

if sys.platform != "win32":
    import fcntl
else:  # Windows: no advisory locks
    fcntl = None

#: The lock file, inside the output folder.
LOCK_NAME = ".lock"
#: A holder's command line longer than this is cut in the refusal.
MAX_COMMAND = 300


class FolderInUse(OutputError):
    """Another process holds the output folder's lock."""


class FolderLock:
    """The exclusive lock on one output folder, held from :meth:`acquire` to :meth:`release`.

    ``command`` is the holder's command line, written into the lock file for the message
    a refused invocation prints.
    """

    def __init__(self, folder: Path, command: str = ""):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self._fd: int | None = None
        self._folder_fd: int | None = None

    def acquire(self) -> FolderLock:
        """Take the lock at once or raise :class:`FolderInUse`; the folder must exist.

        The folder first, then the file :attr:`path`.  Opening either writes nothing, so
        a refused invocation leaves the folder as it was.  The file a lock is taken on
        must still be the one at :attr:`path` (a holder that ends removes it): otherwise
        the lock is taken again on the new one.
        """
        self._folder_fd = self._lock_folder()
        try:
            self._lock_file()
        except BaseException:
            self.release()
            raise
        return self

    def _lock_folder(self) -> int | None:
        """The folder open and locked, or None where it cannot be locked (no fcntl, or a
        filesystem without locks on folders: the file's lock then stands alone)."""
        if fcntl is None:
            return None
        try:
            fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as exc:
            raise self._not_writable(exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = self._refusal(fd)
            os.close(fd)
            raise FolderInUse(message) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                return None
            raise self._not_writable(exc) from None
        return fd

    def _lock_file(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise self._not_writable(exc) from None
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise FolderInUse(self._refusal(fd)) from None
                if _same_file(fd, self.path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # removed or replaced meanwhile: lock the file there now
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()}\ncommand {self.command}\n".encode())
        except OSError as exc:  # a full disk, say
            self.release()
            raise self._not_writable(exc) from None

    def release(self) -> None:
        """Remove the lock file and let go (closing a file releases its lock)."""
        if self._fd is not None:
            try:
                self.path.unlink()  # while still held: a waiter then locks a new file
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        if self._folder_fd is not None:
            os.close(self._folder_fd)
            self._folder_fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _not_writable(self, exc: OSError) -> OutputError:
        return OutputError(f"The output folder {self.folder} is not writable "
                           f"({exc.strerror or type(exc).__name__}); pass --out with a "
                           "folder you can write to.")

    def _refusal(self, fd: int) -> str:
        pid, command = holder(fd, self.path)
        who = "another process"
        if len(command) > MAX_COMMAND:
            command = command[:MAX_COMMAND] + "..."
        if pid is not None:
            who = f"process {pid}" + (f" ({command})" if command else "")
        return (f"The output folder {self.folder} is in use by {who}; wait until it "
                "finishes, or pass another --out.")


def holder(fd: int, info: Path | None = None) -> tuple[int | None, str]:
    """The pid and command line of the process that holds a lock on the file or folder
    open as ``fd``; the command as ``/proc/PID/cmdline`` gives it where that is readable.

    The kernel's table of locks (``/proc/locks``, Linux) names the holder where it
    exists; elsewhere the pid and command written in ``info`` (default: the file ``fd``
    itself) do: a holder that has just taken the lock may not have written them yet.
    """
    fields = {}
    try:
        if info is None:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        else:
            text = Path(info).read_text(encoding="utf-8", errors="replace")[:4096]
        fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    except OSError:  # removed, or not a file
        pass
    pid = _flock_holder(fd)
    written = fields.get("pid", "").strip()
    if pid is None:
        if not written.isdigit():
            return None, ""
        pid = int(written)
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        command = " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)
    except OSError:
        command = ""
    if not command and written == str(pid):
        command = fields.get("command", "").strip()
    return pid, command


def _flock_holder(fd: int) -> int | None:
    """The pid that ``/proc/locks`` says holds a ``flock`` on the file open as ``fd``, or
    None (not Linux, or not found)."""
    try:
        st = os.fstat(fd)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        parts = line.split()  # "1: FLOCK ADVISORY WRITE 1234 08:01:5678 0 EOF"
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[0].endswith("->"):
            continue
        try:
            major, minor, inode = parts[5].split(":")
            where = (int(major, 16), int(minor, 16), int(inode))
            if where == wanted:
                return int(parts[4])
        except ValueError:
            continue
    return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
