"""Run the DD2424 Assignment 3 studies: ``python -m experiments.run [options]``.

Writes ``OUT/results.json`` (every number, saved after every finished run),
``OUT/figures/*.png`` and ``OUT/report.md``.  Running again with the same ``--out``
resumes: finished studies and finished runs are not recomputed unless ``--force``.
One invocation at a time writes a folder: a second one on a folder in use exits at once
with status 2, having written nothing (see :mod:`experiments.suite.folder_lock`).
Errors a user can fix end in one sentence on stderr and exit status 2; Ctrl-C (or
SIGTERM) keeps what has finished and exits with 130.

Runs execute on every usable core by default (as many as the memory allows): a local
Dask cluster of single-threaded worker processes (``--workers N``; ``--workers 1``
trains in this process without Dask), or an existing cluster (``--scheduler
tcp://HOST:PORT`` or ``tls://HOST:PORT``).  Studies run concurrently; a study that
fails (its code or one of its runs raised) fails alone, in one line that names its file
and line, with the traceback in ``OUT/errors/STUDY.txt``, and the suite exits 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import os
import signal
import sys
from pathlib import Path

from experiments.report.markdown import write_report
from experiments.studies import STUDY_NAMES, load_study, load_study_file
from experiments.suite import tasks
from experiments.suite.args import Parser, UsageError, positive_int
from experiments.suite.context import ABORT
from experiments.suite.engine import Suite, command_line
from experiments.suite.executor import make_executor
from experiments.suite.folder_lock import FolderLock
from experiments.suite.store import ResultStore, check_writable
from xpnet.backend import USER_DEVICES, get_backend
from xpnet.errors import XpnetError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m experiments.run",
               description="Reproduce the DD2424 Assignment 3 studies on CIFAR-10.")
    p.add_argument("--device", choices=USER_DEVICES, default="cpu",
                   help="array backend: cpu (NumPy), cuda (CuPy on an NVIDIA GPU), torch "
                        "(PyTorch on the CPU), torch:cuda or torch:mps (PyTorch on a GPU); "
                        "with --scheduler only the workers need it")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding cifar-10-batches-py (default: $XPNET_DATA, then "
                        "~/.cache/xpnet)")
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 if it is absent")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/<timestamp>); reuse it to resume")
    p.add_argument("--only", metavar="A,B", help="comma-separated studies to run (see --list)")
    p.add_argument("--study", metavar="FILE", action="append", default=[],
                   help="also run the study in this Python file (repeatable; without --only, "
                        "only the files' studies run); see README, 'Write a study'")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: small data and schedules (numbers not comparable)")
    p.add_argument("--seeds", type=positive_int, default=3, metavar="N",
                   help="seeds per setting, trained together on the model axis (default 3)")
    p.add_argument("--force", action="store_true", help="recompute finished studies and runs")
    p.add_argument("--traceback", action="store_true",
                   help="when a study fails, print its full traceback too (also "
                        "XPNET_TRACEBACK=1); it is always saved in OUT/errors/STUDY.txt")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress display (recommended when logging to a file)")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="worker processes on this machine (default: $XPNET_WORKERS, else one "
                        "per usable core as far as the memory allows, or one per GPU with "
                        "--device cuda or torch:cuda); 1 trains in this process, without "
                        "Dask")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="run on the Dask cluster whose scheduler is at ADDR, e.g. "
                        "tcp://10.0.0.5:8786, or tls://... with Dask's TLS settings "
                        "(default: $XPNET_SCHEDULER)")
    return p


def select_studies(only: str | None, files=()) -> dict:
    """The studies to run, by name, in report order: the built-in ones ``--only`` names
    (all of them when neither ``--only`` nor ``--study`` is given), then the files'."""
    own = {}
    for path in files:
        module = load_study_file(path, taken=own)
        own[module.NAME] = module
    if only is None:
        wanted = [] if own else list(STUDY_NAMES)
    else:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in STUDY_NAMES and w not in own]
        if unknown or not wanted:
            what = f"Unknown study {unknown[0]!r}" if unknown else "No study named"
            raise UsageError(f"{what} in --only; choose from: {', '.join(STUDY_NAMES)}.")
    chosen = {name: load_study(name) for name in STUDY_NAMES if name in wanted}
    return {**chosen, **own}


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    out = None
    made = None  # the outermost folder this invocation creates for --out, if any
    executor = lock = None
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _raise_interrupt)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        if args.list:
            for name in STUDY_NAMES:
                print(f"{name:18s} {load_study(name).DESCRIPTION}")
            return 0
        studies = select_studies(args.only, args.study)
        out = Path(args.out or Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
        if not (args.scheduler or os.environ.get("XPNET_SCHEDULER")):
            # This machine trains: vet its device before starting workers on it.  With
            # --scheduler the device is the workers' business (probed on them below).
            get_backend(args.device)
        made = _first_missing(out)
        # One writer per folder: held from before anything is written until the end.
        lock = FolderLock(out, command_line(argv)).acquire() if _make_folder(out) else None
        # A results.json that is not the suite's is refused before anything is written.
        store = ResultStore(out) if out.is_dir() else None
        check_writable(out)
        executor = make_executor(args.device, args.workers, args.scheduler,
                                 data_bytes=tasks.data_bytes(args.quick))
        probed = executor.probe(tasks.probe_device, args.device)
        return Suite(args, studies, out, probed, executor,
                     functools.partial(write_report, order=[*STUDY_NAMES, *studies]),
                     argv, store=store).run()
    except XpnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a figure or the report could not be written (disk full, ...)
        reason = exc.strerror or type(exc).__name__
        print(f"error: Could not write to {out} ({reason}); free some space or fix the "
              "folder and run again with the same --out to resume.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" in {out / 'results.json'}" if out is not None else ""
        print(f"Interrupted: finished runs are saved{where}; run again with the same --out "
              "to resume.", file=sys.stderr)
        return 130
    finally:
        ABORT.set()  # study threads still waiting on runs give up
        if executor is not None:
            executor.close()
        if made is not None:
            _remove_if_empty(out, made, lock)
        if lock is not None:
            lock.release()


def _first_missing(out: Path) -> Path | None:
    """The outermost folder of ``out`` that does not exist yet (``out`` itself, or the
    ``runs/`` of a default ``runs/<timestamp>``), or None if ``out`` exists."""
    missing = None
    try:
        for folder in [out, *out.parents]:
            if folder.exists():
                break
            missing = folder
    except OSError:  # a name too long, a file in the path: check_writable says so
        return None
    return missing


def _make_folder(out: Path) -> bool:
    """Create ``out`` (and its parents); False where that fails (then
    :func:`check_writable` says why)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return out.is_dir()


def _remove_if_empty(out: Path, made: Path, lock: FolderLock | None) -> None:
    """After a failed start, remove the folders this invocation made for ``out`` (up to
    ``made``) if they hold nothing but the lock (released then)."""
    try:
        if (out / "results.json").exists():
            return
        if lock is not None:
            lock.release()
        figures = out / "figures"
        if figures.is_dir() and not any(figures.iterdir()):
            figures.rmdir()
        for folder in [out, *out.parents]:
            if not folder.is_dir() or any(folder.iterdir()):
                return
            folder.rmdir()
            if folder == made:
                return
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
