"""Run the DD2424 Assignment 3 studies: ``python -m experiments.run [options]``.

Writes ``OUT/results.json`` (every number, saved after every finished run),
``OUT/figures/*.png`` and ``OUT/report.md``.  Running again with the same ``--out``
resumes: finished studies and finished runs are not recomputed unless ``--force``.
One invocation at a time writes a folder: a second one on a folder in use exits at once
with status 2, having written nothing (see :mod:`experiments.suite.folder_lock`).
Errors a user can fix end in one sentence on stderr and exit status 2; Ctrl-C or SIGTERM,
at any moment, keeps what has finished, ends the workers and exits within seconds, with
status 130 (SIGINT) or 143 (SIGTERM) and one line (see :mod:`experiments.suite.interrupts`).

Runs execute on every usable core by default (as many as the memory allows): a local
Dask cluster of single-threaded worker processes (``--workers N``; ``--workers 1``
trains in this process without Dask), or an existing cluster (``--scheduler
tcp://HOST:PORT`` or ``tls://HOST:PORT``).  Studies run concurrently; a study that
fails (its code or one of its runs raised) fails alone, in one line that names its file
and line, with the traceback in ``OUT/errors/STUDY.txt``, and the suite exits 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Only the standard library and the signal handling load before main() starts: the rest
# (NumPy, Dask, ...) loads inside it, where a Ctrl-C or SIGTERM ends the suite cleanly.
from experiments.suite import interrupts


def build_parser():
    """The CLI's :class:`argparse.ArgumentParser` (one-sentence errors, see
    :mod:`experiments.suite.args`)."""
    from experiments.suite.args import Parser, positive_int, seconds
    from experiments.suite.checkpoints import EVERY_S
    from xpnet.backend.devices import USER_DEVICES

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
    p.add_argument("--checkpoint-every", type=seconds, default=EVERY_S, metavar="SECONDS",
                   help="save each training run's whole state at most this often (default "
                        f"{EVERY_S:.0f}), in OUT/checkpoints, so that a stop loses at most "
                        "that much of it; 0: no checkpoints"),
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
    p.add_argument("--dashboard", action="store_true",
                   help="serve Dask's dashboard of the local cluster on a free port of "
                        "127.0.0.1; it has no credentials: every user of this machine can "
                        "open it (default: no HTTP server at all)")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="run on the Dask cluster whose scheduler is at ADDR, e.g. "
                        "tcp://10.0.0.5:8786, or tls://... with Dask's TLS settings "
                        "(default: $XPNET_SCHEDULER)")
    return p


def select_studies(only: str | None, files=()) -> dict:
    """The studies to run, by name, in report order: the built-in ones ``--only`` names
    (all of them when neither ``--only`` nor ``--study`` is given), then the files'."""
    from experiments.studies import STUDY_NAMES, load_study, load_study_file
    from experiments.suite.args import UsageError

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


def main(argv=None) -> int:
    """Run the suite as the command line ``argv`` (default ``sys.argv[1:]``) says; the exit
    status: 0 done, 1 a study failed, 2 a user error (one sentence on stderr), 130 / 143
    stopped by SIGINT / SIGTERM (one line on stderr, see :mod:`experiments.suite.interrupts`)."""
    previous = interrupts.install()  # from here a signal cuts only the work itself
    invocation = Invocation(sys.argv[1:] if argv is None else list(argv))
    code = None
    try:
        try:
            with interrupts.cuttable():
                code = invocation.run()
        except KeyboardInterrupt:
            code = None
        except Exception as exc:
            code = invocation.failed(exc)
    finally:
        invocation.clean_up()  # never cut short: a second signal waits for it
        if not _entry_point():  # in a process that goes on (a test, a notebook)
            interrupts.restore(previous)
    if code is None or (interrupts.received() is not None and code in (0, 1)):
        print(invocation.interrupted_line(), file=sys.stderr)
        code = interrupts.exit_status()
    return code


def _entry_point() -> bool:
    """Whether :func:`main` is this process's entry point (``python -m experiments.run``,
    ``python -m experiments``, ``xpnet-run``): then the process ends when it returns, and
    a signal in that moment must find the suite's handler, not print a traceback."""
    return getattr(sys.modules.get("__main__"), "main", None) is main


class Invocation:
    """One run of the command: what it has made so far, for :meth:`clean_up`."""

    def __init__(self, argv: list):
        self.argv = argv
        self.out: Path | None = None
        self.made: Path | None = None  # the outermost folder it creates for --out, if any
        self.executor = self.lock = None

    def run(self) -> int:
        import datetime as _dt
        import functools

        from experiments.report.markdown import write_report
        from experiments.studies import STUDY_NAMES, load_study
        from experiments.suite import tasks
        from experiments.suite.engine import Suite, command_line
        from experiments.suite.executor import make_executor
        from experiments.suite.folder_lock import FolderLock
        from experiments.suite.store import ResultStore, check_writable
        from xpnet.backend.devices import get_backend

        args = build_parser().parse_args(self.argv)
        if args.list:
            for name in STUDY_NAMES:
                print(f"{name:18s} {load_study(name).DESCRIPTION}")
            return 0
        studies = select_studies(args.only, args.study)
        out = self.out = Path(args.out or Path("runs") /
                              _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
        if not (args.scheduler or os.environ.get("XPNET_SCHEDULER")):
            # This machine trains: vet its device before starting workers on it.  With
            # --scheduler the device is the workers' business (probed on them below).
            get_backend(args.device)
        self.made = _first_missing(out)
        # One writer per folder: held from before anything is written until the end.
        store = None
        if _make_folder(out):
            self.lock = FolderLock(out, command_line(self.argv)).acquire()
            # A results.json that is not the suite's is refused before anything is written.
            store = ResultStore(out)
        check_writable(out)
        with interrupts.deferred():  # a cluster cut mid-start is left half made
            self.executor = make_executor(args.device, args.workers, args.scheduler,
                                          data_bytes=tasks.data_bytes(args.quick),
                                          dashboard=args.dashboard)
        probed = self.executor.probe(tasks.probe_device, args.device)
        return Suite(args, studies, out, probed, self.executor,
                     functools.partial(write_report, order=[*STUDY_NAMES, *studies]),
                     self.argv, store=store).run()

    def failed(self, exc: Exception) -> int:
        """Say a user's error in one sentence (exit status 2); re-raise any other."""
        from xpnet.errors import XpnetError  # loaded already if ``exc`` is one

        if isinstance(exc, XpnetError):
            print(f"error: {exc}", file=sys.stderr)
        elif isinstance(exc, OSError):  # a figure or the report could not be written
            reason = exc.strerror or type(exc).__name__
            print(f"error: Could not write to {self.out} ({reason}); free some space or fix "
                  "the folder and run again with the same --out to resume.", file=sys.stderr)
        else:
            raise exc
        return 2

    def clean_up(self) -> None:
        """Stop the studies' threads, close the executor (and its local cluster), remove
        the folders a failed start made, and release the folder's lock."""
        if "experiments.suite.context" in sys.modules:
            from experiments.suite.handle import ABORT

            ABORT.set()  # study threads still waiting on runs give up
        try:
            if self.executor is not None:
                self.executor.close()
        finally:
            if self.made is not None:
                _remove_if_empty(self.out, self.made, self.lock)
            if self.lock is not None:
                self.lock.release()

    def interrupted_line(self) -> str:
        """The one line a stopped suite prints, naming only files that exist."""
        results = self.out / "results.json" if self.out is not None else None
        if results is not None and results.is_file():
            report = self.out / "report.md"
            shown = f" (report so far: {report})" if report.is_file() else ""
            return (f"Interrupted: finished runs are saved in {results}{shown}, runs in "
                    "progress at their last checkpoint, if any; run again with the same "
                    "--out to resume.")
        return "Interrupted before any run was saved; run the command again to start."


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


def _remove_if_empty(out: Path, made: Path, lock) -> None:
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
