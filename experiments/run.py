"""Run the DD2424 Assignment 3 studies: ``python -m experiments.run [options]``.

Writes ``OUT/results.json`` (every number, saved after every finished run),
``OUT/figures/*.png`` and ``OUT/report.md``.  Running again with the same ``--out``
resumes: finished studies and finished runs are not recomputed unless ``--force``.
Errors a user can fix end in one sentence on stderr and exit status 2; Ctrl-C (or
SIGTERM) keeps what has finished and exits with 130.

Runs execute on every usable core by default: a local Dask cluster of single-threaded
worker processes (``--workers N``; ``--workers 1`` trains in this process without
Dask), or an existing cluster (``--scheduler tcp://HOST:PORT`` or ``tls://HOST:PORT``).  Studies run
concurrently; a run that fails fails its study alone, and the suite exits non-zero.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as _dt
import os
import platform
import shlex
import signal
import sys
import time
from pathlib import Path

from experiments.suite import tasks as runs
from experiments.suite.context import (
    ABORT, STUDY_NAMES, Context, PlanOnly, RunFailed, Settings, load_study)
from experiments.suite.executor import make_executor
from experiments.suite.store import ResultStore, check_writable, library_versions, now
from experiments.suite.progress import Reporter
from experiments.suite.args import Parser, UsageError, positive_int
from xpnet.errors import DataError, XpnetError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m experiments.run",
               description="Reproduce the DD2424 Assignment 3 studies on CIFAR-10.")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="array backend: NumPy on the CPU or CuPy on an NVIDIA GPU")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder holding cifar-10-batches-py (default: $XPNET_DATA, then "
                        "~/.cache/xpnet)")
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 if it is absent")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/<timestamp>); reuse it to resume")
    p.add_argument("--only", metavar="A,B", help="comma-separated studies to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: small data and schedules (numbers not comparable)")
    p.add_argument("--seeds", type=positive_int, default=3, metavar="N",
                   help="seeds per setting, trained together on the model axis (default 3)")
    p.add_argument("--force", action="store_true", help="recompute finished studies and runs")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress display (recommended when logging to a file)")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="worker processes on this machine (default: $XPNET_WORKERS, else one "
                        "per usable core, or one per GPU with --device cuda); 1 trains in "
                        "this process, without Dask")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="run on the Dask cluster whose scheduler is at ADDR, e.g. "
                        "tcp://10.0.0.5:8786, or tls://... with Dask's TLS settings "
                        "(default: $XPNET_SCHEDULER)")
    return p


def select_studies(only: str | None) -> list[str]:
    """Study names from ``--only`` (all by default), in suite order."""
    if only is None:
        return list(STUDY_NAMES)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in STUDY_NAMES]
    if unknown or not wanted:
        what = f"Unknown study {unknown[0]!r}" if unknown else "No study named"
        raise UsageError(f"{what} in --only; choose from: {', '.join(STUDY_NAMES)}.")
    return [name for name in STUDY_NAMES if name in wanted]


def describe_device(backend) -> str:
    if backend.name == "cuda":
        try:
            import cupy

            name = cupy.cuda.runtime.getDeviceProperties(backend.device.id)["name"]
            return f"cuda ({name.decode() if isinstance(name, bytes) else name})"
        except Exception:
            return "cuda"
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def stopped_line(study: str, kept: int) -> str:
    """What the suite says of a study it stopped (Ctrl-C, SIGTERM) before it finished."""
    return f"{study}: stopped ({kept} finished run{'' if kept == 1 else 's'} kept)"


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class Suite:
    """Runs the chosen studies against one output folder, on one executor."""

    def __init__(self, args, names: list[str], out: Path, backend, executor, argv=()):
        self.names = names
        self.argv = list(argv)
        self.out = out
        self.backend = backend
        self.executor = executor
        self.settings = Settings(quick=args.quick, seeds=args.seeds, data_dir=args.data_dir,
                                 download=args.download, force=args.force,
                                 progress=not args.no_progress)
        # Workers may run elsewhere: they get the data folder as an absolute path.
        data_dir = str(Path(args.data_dir).expanduser().absolute()) if args.data_dir else None
        self.data_settings = runs.DataSettings(data_dir, args.download, args.quick,
                                               args.device, progress=not args.no_progress)
        self.store = ResultStore(out)
        ABORT.clear()
        self.reporter = Reporter(enabled=not args.no_progress)
        executor.subscribe_progress(self.reporter.handle)
        self.trained = 0
        self.failures: list[tuple[str, Exception]] = []
        #: The studies' contexts that :meth:`plan` started runs in, by study name.
        self.contexts: dict[str, Context] = {}

    def context(self, name: str, planning: bool = False) -> Context:
        return Context(self.settings, self.store, self.out, self.executor, name,
                       self.data_settings, self.reporter, planning,
                       chained=getattr(load_study(name), "CHAINED", False))

    def plan(self) -> None:
        """Find every run the studies will submit first, before any trains; on a cluster,
        start them, the first to start first.

        Each unfinished study runs with a planning context whose handles stop the study
        at its first ``result()``: studies submit their independent runs first, so this
        finds all of them (a chain such as the lambda search's shows its first link),
        and the progress total and ETA are right from the start.  A cluster gets them
        here, in one pass in the order of their priorities (chains, then the longest
        runs: see ``Context.priority``): left to the study threads, whichever thread came
        first would take the idle workers, and Dask hands a task to a worker as it
        arrives.  The studies' contexts then hand out these runs instead of starting them.
        """
        planned = []
        for name in self.names:
            if self.finished(name):
                continue
            ctx = self.context(name, planning=True)
            try:
                load_study(name).run(ctx)
            except PlanOnly:
                pass
            planned += [(name, run) for run in ctx.planned]
        if self.executor.concurrent_studies <= 1:
            return  # in this process, runs go one after another as the studies ask
        for name, run in sorted(planned, key=lambda item: -item[1].priority):
            if name not in self.contexts:
                self.contexts[name] = self.context(name)
            self.contexts[name].start_planned(run)

    def say(self, line: str) -> None:
        self.reporter.say(line)

    def prepare(self) -> None:
        """Record the invocation; refuse to mix scales or data in one folder unless --force
        (which drops the chosen studies' runs)."""
        meta = self.store.data["meta"]
        self._keep_comparable("scale", self.settings.scale(), self._scale_difference)
        self.executor.warm_up(runs.warm_up, self.data_settings)  # workers load meanwhile
        try:
            # Loads the data (or fails) in this process before anything trains.
            data = runs.env_for(self.data_settings).data_sizes()
        except OSError as exc:  # --data-dir names a file, a name too long, ... (not --out)
            where = exc.filename or self.settings.data_dir or "the default data location"
            raise DataError(
                f"Cannot use the data folder {where} ({exc.strerror or type(exc).__name__}); "
                "pass --data-dir an existing folder that holds cifar-10-batches-py, or one "
                "that --download can create.") from None
        self._keep_comparable("data", data, lambda old, new: (
            f"other CIFAR-10 data ({old['train']} / {old['val']} / {old['test']} images, "
            f"training statistics {old['train_stats']}) than you gave it "
            f"({new['train']} / {new['val']} / {new['test']}, {new['train_stats']} from "
            f"{self.settings.data_dir or 'the default data location'})"))
        if self.settings.force:  # every run of the chosen studies is recomputed
            for name in self.names:
                self.store.study(name)["runs"] = {}  # stale keys of an older layout go too
        meta.setdefault("created", now())
        for duplicate in ("quick", "seeds"):  # stored in meta["scale"]
            meta.pop(duplicate, None)
        meta.update(updated=now(), device=describe_device(self.backend),
                    executor=self.executor.description,
                    versions=library_versions(self.backend.name),
                    command=" ".join(["python -m experiments.run",
                                      *(shlex.quote(a) for a in self.argv)]))
        self.store.save()

    @staticmethod
    def _scale_difference(old: dict, new: dict) -> str:
        """``"--quick; you ran without it"``-style words for two ``Settings.scale()``."""
        parts = []
        if old.get("quick") != new["quick"]:
            parts.append("--quick; you ran without it" if old.get("quick")
                         else "the full data; you ran with --quick")
        if old.get("seeds") != new["seeds"]:
            parts.append(f"--seeds {old.get('seeds')}; you ran with --seeds {new['seeds']}")
        return " and ".join(parts)

    def _keep_comparable(self, key: str, value, difference) -> None:
        """Store ``meta[key] = value``, refusing stored results made with another value.

        ``difference(old, new)`` says in words how they differ.  With --force the old
        results are dropped instead.
        """
        meta = self.store.data["meta"]
        old = meta.get(key)
        if old is not None and old != value and self.store.data["studies"]:
            if not self.settings.force:
                raise UsageError(
                    f"The folder {self.out} was made with {difference(old, value)}; "
                    "choose another --out, or add --force to replace its results.")
            self.store.data["studies"] = {}
        meta[key] = value

    def finished(self, name: str) -> bool:
        entry = self.store.data["studies"].get(name)
        return bool(entry and entry.get("status") == "done" and not self.settings.force
                    and all((self.out / f).is_file() for f in entry.get("figures", [])))

    def run_study(self, name: str) -> None:
        """Run one study; a failed run marks the study failed and is kept for the end."""
        if self.finished(name):
            runs_done = len(self.store.data["studies"][name].get("runs", {}))
            self.say(f"{name}: skipped (already done, {runs_done} runs reused)")
            return
        module = load_study(name)
        ctx = self.contexts.get(name) or self.context(name)
        with self.store.lock:
            entry = self.store.study(name)
            entry.update(description=module.DESCRIPTION, status="running")
        start = time.perf_counter()
        try:
            result = module.run(ctx)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: runs were stopped, not failed
            self.say(stopped_line(name, self.store.saved_runs(name)))
            raise
        except RunFailed as exc:
            ctx.settle()  # its other runs finish and are saved: they fail alone
            with self.store.lock:
                entry.update(status="failed", error=str(exc))
                self.store.save()
            self.failures.append((name, exc))
            self.say(f"{name}: failed ({exc})")
            return
        finally:
            self.trained += ctx.trained
        wall = time.perf_counter() - start
        with self.store.lock:
            entry.update(result)
            entry.pop("error", None)
            # Runs reused from an earlier invocation count with the time they took then.
            entry.update(status="done", finished_at=now(), wall_s=round(wall + ctx.reused_s, 1))
            self.store.save()
        n = len(entry["runs"])
        self.say(f"{name}: {n} run{'' if n == 1 else 's'} ({ctx.trained} trained, "
                 f"{ctx.reused} reused), {entry['wall_s']:.0f} s, {result.get('summary', '')}")

    def run(self) -> int:
        from experiments.report.markdown import write_report

        self.prepare()
        self.plan()
        start = time.perf_counter()
        try:
            if self.executor.concurrent_studies <= 1:
                for name in self.names:
                    self.run_study(name)
            else:
                self._run_concurrently()
        finally:
            self.reporter.close()
        self.store.data["meta"]["wall_s_last_invocation"] = round(time.perf_counter() - start, 1)
        self.store.save()
        write_report(self.store.data, self.out / "report.md", order=STUDY_NAMES)
        self.say(f"Trained {self.trained} runs in {time.perf_counter() - start:.0f} s; "
                 f"report: {self.out / 'report.md'}")
        for name, exc in self.failures:
            print(f"error: {exc}", file=sys.stderr)
        if not self.failures:
            return 0
        user_errors = all(isinstance(exc.__cause__, XpnetError) for _, exc in self.failures)
        return 2 if user_errors else 1

    def _run_concurrently(self) -> None:
        """Each study on its own client thread; the cluster runs their runs in parallel."""
        pool = concurrent.futures.ThreadPoolExecutor(len(self.names), "study")
        try:
            futures = [pool.submit(self.run_study, name) for name in self.names]
            for future in futures:
                while True:  # short waits keep Ctrl-C responsive in the main thread
                    try:
                        future.result(timeout=0.2)
                        break
                    except concurrent.futures.TimeoutError:
                        continue
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def main(argv=None) -> int:
    out = None
    made = None  # the outermost folder this invocation creates for --out, if any
    executor = None
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _raise_interrupt)
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        if args.list:
            for name in STUDY_NAMES:
                print(f"{name:18s} {load_study(name).DESCRIPTION}")
            return 0
        names = select_studies(args.only)
        out = Path(args.out or Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
        from xpnet.backend import get_backend

        backend = get_backend(args.device)
        executor = make_executor(args.device, args.workers, args.scheduler)
        made = _first_missing(out)
        check_writable(out)
        return Suite(args, names, out, backend, executor, argv).run()
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
            _remove_if_empty(out, made)


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


def _remove_if_empty(out: Path, made: Path) -> None:
    """After a failed start, remove the folders this invocation made for ``out`` (up to
    ``made``) if they hold nothing."""
    try:
        if (out / "results.json").exists():
            return
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
