"""What the suite says of a study that failed: one line that points at the study's code.

When a study's ``run(ctx)`` raises, or one of its runs raises (in this process or on a
Dask worker), the suite prints one line (shown here on two)::

    study NAME failed: ExcType: message (FILE:LINE in FUNCTION); full traceback in
    OUT/errors/NAME.txt

FILE:LINE is the innermost frame inside the study's own file (a built-in study's module
or a ``--study`` file), else the innermost frame of all.  The whole traceback (a worker's
too) goes to ``OUT/errors/NAME.txt``.  A ``run(ctx)`` that returns no dict with a
``"summary"`` fails its study the same way, in a line that says what it returned.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import traceback
from pathlib import Path

from experiments.suite.handle import RunFailed
from experiments.suite.store import now
from experiments.suite.tasks import RunError
from xpnet.base.atomic import write_text_atomic
from xpnet.errors import XpnetError

#: A message longer than this is cut in the line (the file holds all of it).
MAX_MESSAGE = 300


@dataclasses.dataclass
class StudyFailure:
    """Why one study failed: ``line`` for the screen, ``results.json`` and the report;
    ``traceback`` for its error file ('' when there is none); ``user_error`` for a run
    that failed on something the user can fix (the data, say), which ends the suite with
    status 2 and its own sentence instead."""

    study: str
    line: str
    traceback: str = ""
    user_error: bool = False


def errors_file(out: Path, study: str) -> Path:
    """Where a failed study's traceback is kept: ``OUT/errors/<study>.txt``."""
    return Path(out) / "errors" / f"{study}.txt"


def from_exception(study: str, module, exc: Exception, out: Path) -> StudyFailure:
    """The failure of ``study`` (its module ``module``) that raised ``exc``: its own code,
    or a run (:class:`RunFailed`, the run's error as its ``__cause__``)."""
    cause = exc.__cause__ if isinstance(exc, RunFailed) else None
    if isinstance(cause, XpnetError):  # the data on a worker, say: the user can fix it
        return StudyFailure(study, str(exc), user_error=True)
    run = f", run {exc.run}" if cause is not None and exc.run else ""
    text = _format(exc)
    if isinstance(cause, RunError):  # on a worker: its traceback came as text
        kind, detail, frames = cause.kind, cause.detail, cause.frames
        text = f"The run's traceback, on the worker:\n\n{cause.text}\n" \
               f"Where the study waited for it:\n\n{text}"
    else:
        root = cause if cause is not None else exc
        kind, detail = type(root).__name__, str(root)
        frames = [(f.filename, f.lineno or 0, f.name)
                  for f in traceback.extract_tb(root.__traceback__)]
    frame = _innermost(frames, getattr(module, "__file__", None))
    where = f" ({_shown(frame[0])}:{frame[1]} in {frame[2]}{run})" if frame else \
        (f" ({run[2:]})" if run else "")
    message = (detail.strip().splitlines() or [""])[0]
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    what = f"{kind}: {message}" if message else kind
    line = (f"study {study} failed: {what}{where}; full traceback in "
            f"{errors_file(out, study)}")
    return StudyFailure(study, line, text)


#: Errors of a disk, not of a study's code.
DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_output_problem(exc: Exception, out: Path) -> bool:
    """Whether ``exc``, raised by a study, is the output folder's fault (a full disk while
    it saved a figure, say), which ends the suite as such, not the study's."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in DISK_ERRNOS:
        return True
    try:
        return Path(exc.filename).resolve().is_relative_to(Path(out).resolve())
    except (TypeError, OSError, ValueError):  # no filename
        return False


def bad_result(study: str, module, result) -> StudyFailure | None:
    """None if ``result`` (what ``run(ctx)`` returned) is a dict with a ``"summary"``;
    else the failure that says what it was."""
    if isinstance(result, dict) and "summary" in result:
        return None
    code = getattr(getattr(module, "run", None), "__code__", None)
    where = f" ({_shown(code.co_filename)}:{code.co_firstlineno} in run)" if code else ""
    if isinstance(result, dict):
        what = "a dict without a \"summary\" entry"
    else:
        what = ("None" if result is None else f"a {type(result).__name__}") + ", not a dict"
    return StudyFailure(study, f"study {study} failed: its run(ctx) returned {what}{where}; "
                               "return a dict with at least a \"summary\" entry (one line "
                               "on what the study found).")


def save(failure: StudyFailure, out: Path) -> None:
    """Write the failure's traceback to :func:`errors_file` (atomically); raises OSError."""
    if not failure.traceback:
        return
    path = errors_file(out, failure.study)
    path.parent.mkdir(exist_ok=True)
    text = f"{failure.line}\n({now()})\n\n{failure.traceback}"
    write_text_atomic(path, text if text.endswith("\n") else text + "\n")


def forget(out: Path, study: str) -> None:
    """Remove an earlier invocation's error file of ``study``, which has now finished."""
    path = errors_file(out, study)
    try:
        path.unlink()
        path.parent.rmdir()  # only if no other study's file is left
    except OSError:
        pass


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _innermost(frames, study_file: str | None):
    """The last of ``frames`` (``(file, line, function)``) inside ``study_file``, else
    the last of all; None for no frames."""
    if study_file:
        target = os.path.abspath(study_file)
        mine = [f for f in frames if f[0] == study_file or os.path.abspath(f[0]) == target]
        if mine:
            return mine[-1]
    return frames[-1] if frames else None


def _shown(path: str) -> str:
    """``path`` relative to the working folder when inside it, else as it is."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith("..") else rel
