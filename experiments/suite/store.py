"""Where results live: ``results.json``, written atomically, and what identifies a run.

:class:`ResultStore` keeps ``results.json`` in memory and rewrites it whole after every
change (temp file, fsync, ``os.replace``), so the file is valid JSON at every instant and
an interrupted suite loses no finished run.  :func:`fingerprint` is the hash that decides
whether a stored run can be reused.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import tempfile
import threading
from pathlib import Path

from experiments.suite import schema
from xpnet.base.atomic import write_text_atomic
from xpnet.base.codec import to_jsonable
from xpnet.errors import OutputError


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def fingerprint(obj) -> str:
    """A short stable hash of a JSON-able object."""
    text = json.dumps(to_jsonable(obj), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def library_versions(device: str) -> dict:
    """Versions of the libraries that shape the numbers."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("xpnet", "numpy", "array-api-compat", "matplotlib", "tqdm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    if device == "cuda":
        try:
            import cupy

            out["cupy"] = cupy.__version__
        except Exception:  # reported as absent; get_backend has already vetted it
            out["cupy"] = "not importable"
    if device.startswith("torch"):
        try:
            out["torch"] = metadata.version("torch")
        except metadata.PackageNotFoundError:
            out["torch"] = "not installed"
    return out


# --------------------------------------------------------------------- storage
class ResultStore:
    """``results.json`` in memory, written atomically after every change.

    A file already there is read if it is the suite's (:func:`schema.problem` finds
    nothing wrong with it); any other file there is refused with an :class:`OutputError`
    and left as it is.

    The file is valid JSON at every instant: each save writes a temp file in the same
    folder, fsyncs it and ``os.replace``-s it over the old one.
    """

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / "results.json"
        self.lock = threading.RLock()  # runs finish on other threads
        self.data = {"format": schema.FORMAT, "meta": {}, "studies": {}}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise OutputError(
                    f"{self.path} exists but is not readable JSON ({type(exc).__name__}); "
                    "move it away or choose another --out.") from None
            # Another tool's file, or ours edited into another shape: never overwritten.
            what = schema.problem(loaded)
            if what is not None:
                raise OutputError(f"{self.path} is not a results file of this suite ({what}); "
                                  "move it away or choose another --out.")
            self.data = loaded
            self.data.setdefault("meta", {})

    def study(self, name: str) -> dict:
        return self.data["studies"].setdefault(name, {"runs": {}})

    def saved_runs(self, study: str) -> int:
        """How many runs of ``study`` ``results.json`` holds on disk now: what a resume
        finds (the memory may hold one more, whose save an interrupt cut short)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not written yet
            return 0
        return len(data.get("studies", {}).get(study, {}).get("runs", {}))

    def save(self) -> None:
        with self.lock:  # whole: two finishing runs must not interleave their writes
            text = json.dumps(to_jsonable(self.data), indent=1, allow_nan=False)
            try:
                write_text_atomic(self.path, text)
                _fsync_dir(self.path.parent)
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                hint = ("free some space" if exc.errno == errno.ENOSPC
                        else "check the folder's permissions")
                raise OutputError(
                    f"Could not write {self.path} ({reason}); {hint} and run again with the "
                    "same --out to resume from the last saved run.") from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` (and ``figures/``) and prove it writable with a probe file."""
    try:
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".probe-")
        os.write(fd, b"probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OutputError(
            f"The output folder {out_dir} is not writable ({reason}); pass --out with a "
            "folder you can write to.") from None
