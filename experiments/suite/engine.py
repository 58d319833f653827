"""The suite: one invocation's studies, against one output folder, on one executor.

:class:`Suite` records the invocation in ``results.json`` (refusing to mix scales or data
in one folder), runs every chosen study once on a thread of its own while the main
thread starts their runs (:mod:`experiments.suite.dispatch`), keeps each study's
outcome (a study that fails says where, see :mod:`experiments.suite.failures`), and
writes the report.  It knows no study by name: the CLI hands it the modules, and the
output folder, whose lock it holds (:mod:`experiments.suite.folder_lock`).
"""

from __future__ import annotations

import concurrent.futures
import os
import shlex
import sys
import time
from pathlib import Path

from experiments.suite import checkpoints, estimate, failures, interrupts
from experiments.suite import tasks as runs
from experiments.suite.args import UsageError
from experiments.suite.context import Context, Settings
from experiments.suite.dispatch import Dispatcher
from experiments.suite.handle import ABORT
from experiments.suite.progress import Reporter
from experiments.suite.store import ResultStore, library_versions, now
from xpnet.errors import DataError, OutputError


def describe_device(device: str, probed: dict) -> str:
    """``"cuda (NVIDIA H200 x2)"``, ``"cpu (16 cores, x86_64)"``: what the processes that
    train (``probed``, from :func:`experiments.suite.tasks.probe_device`) compute on."""
    infos = list(probed.values())
    gpus = [info["gpu"] for info in infos if "gpu" in info]
    if gpus:
        return f"{device} (" + ", ".join(
            name if gpus.count(name) == 1 else f"{name} x{gpus.count(name)}"
            for name in dict.fromkeys(gpus)) + ")"
    cpus = list(dict.fromkeys(info["cpu"] for info in infos))
    return f"{device} ({'; '.join(cpus) if cpus else 'no workers yet'})"


def command_line(argv) -> str:
    """The invocation as a user would type it again."""
    return " ".join(["python -m experiments.run", *(shlex.quote(a) for a in argv)])


#: Seconds an interrupted suite gives its studies to say what they kept.
STOP_WAIT_S = 5.0


def stopped_line(study: str, kept: int) -> str:
    """What the suite says of a study it stopped (Ctrl-C, SIGTERM) before it finished."""
    return f"{study}: stopped ({kept} finished run{'' if kept == 1 else 's'} kept)"


class Suite:
    """Runs the chosen studies against one output folder, on one executor.

    ``studies`` maps each chosen study's name to its module (``NAME``, ``DESCRIPTION``,
    ``run(ctx)``, optional ``CHAINED``), in the order they are reported; ``report(data,
    path)`` writes the report from ``results.json``'s data.
    """

    def __init__(self, args, studies: dict, out: Path, probed: dict, executor, report,
                 argv=(), store: ResultStore | None = None):
        """``probed``: per process that trains, :func:`tasks.probe_device`'s answer;
        ``store``: ``out``'s results, read already (default: read now)."""
        self.studies = studies
        self.names = list(studies)
        self.write_report = report
        self.argv = list(argv)
        self.out = out
        self.device = args.device
        self.probed = probed
        self.executor = executor
        self.settings = Settings(quick=args.quick, seeds=args.seeds, data_dir=args.data_dir,
                                 download=args.download, force=args.force,
                                 progress=not args.no_progress)
        # Workers may run elsewhere: they get the data folder as an absolute path.
        data_dir = str(Path(args.data_dir).expanduser().absolute()) if args.data_dir else None
        self.data_settings = runs.DataSettings(data_dir, args.download, args.quick,
                                               args.device, progress=not args.no_progress)
        self.store = store if store is not None else ResultStore(out)
        ABORT.clear()
        self.reporter = Reporter(enabled=not args.no_progress)
        every = getattr(args, "checkpoint_every", checkpoints.EVERY_S)
        self.checkpoints = checkpoints.CheckpointStore(out, every, warn=self.reporter.warn)
        fetch = getattr(executor, "fetch", None)  # a Dask cluster's: workers keep them
        self.courier = (checkpoints.Courier(fetch, self.checkpoints)
                        if fetch is not None and every > 0 else None)
        executor.subscribe_progress(self.on_event)
        self.trained = 0
        self.failures: list[failures.StudyFailure] = []
        self.show_traceback = bool(args.traceback) or os.environ.get("XPNET_TRACEBACK") == "1"
        self.dashboard = bool(getattr(args, "dashboard", False))
        self.dispatcher = Dispatcher(executor, self.reporter, self.data_settings,
                                     n_studies=len(self.names), checkpoints=self.checkpoints)

    def on_event(self, event: dict) -> None:
        """A run's event (on any thread): a checkpoint to the store, the rest to the display."""
        kind = event.get("event")
        if kind == "checkpoint":
            if "data" in event:  # an in-process run's
                self.checkpoints.write(event["key"], event["data"])
            elif self.courier is not None:  # a worker's, to be fetched from it
                self.courier.announce(event)
            return
        if kind == "refused":
            self.checkpoints.set_aside(event["key"])
        self.reporter.handle(event)

    def context(self, name: str) -> Context:
        return Context(self.settings, self.store, self.out, self.dispatcher, name,
                       self.data_settings, self.reporter,
                       chained=getattr(self.studies[name], "CHAINED", False))

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
                self.checkpoints.forget(name)  # from step 0
        meta.setdefault("created", now())
        for duplicate in ("quick", "seeds"):  # stored in meta["scale"]
            meta.pop(duplicate, None)
        # The workers' versions: they shape the numbers (the client only plans and stores).
        versions = next(iter(self.probed.values()), {}).get("versions")
        meta.update(updated=now(), device=describe_device(self.device, self.probed),
                    executor=self.executor.description,
                    versions=versions or library_versions(self.device),
                    command=command_line(self.argv))
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
        """Run one study; if it fails (its code or a run raised, or it returned no
        ``summary``) it is marked failed, in one line (:mod:`experiments.suite.failures`),
        and its saved runs are kept."""
        if self.finished(name):
            runs_done = len(self.store.data["studies"][name].get("runs", {}))
            self.say(f"{name}: skipped (already done, {runs_done} runs reused)")
            return
        module = self.studies[name]
        ctx = self.context(name)
        with self.store.lock:
            entry = self.store.study(name)
            entry.update(description=module.DESCRIPTION, status="running")
        start = time.perf_counter()
        try:
            try:
                result = module.run(ctx)
                failure = failures.bad_result(name, module, result)
            except KeyboardInterrupt:  # Ctrl-C, SIGTERM: runs were stopped, not failed
                self.say(stopped_line(name, self.store.saved_runs(name)))
                raise
            except OutputError:  # the folder cannot be written: the suite stops
                raise
            except Exception as exc:  # the study's code or one of its runs
                if failures.is_output_problem(exc, self.out):  # a full disk: the suite stops
                    raise
                failure = failures.from_exception(name, module, exc, self.out)
            if failure is not None:
                ctx.settle()  # its other runs finish and are saved: they fail alone
        finally:
            self.trained += ctx.trained
        if failure is not None:
            self._fail(entry, failure)
            return
        wall = time.perf_counter() - start
        with self.store.lock:
            entry.update(result)
            entry.pop("error", None)
            # Runs reused from an earlier invocation count with the time they took then.
            entry.update(status="done", finished_at=now(), wall_s=round(wall + ctx.reused_s, 1))
            self.store.save()
        failures.forget(self.out, name)
        n = len(entry["runs"])
        self.say(f"{name}: {n} run{'' if n == 1 else 's'} ({ctx.trained} trained, "
                 f"{ctx.reused} reused), {entry['wall_s']:.0f} s, {result.get('summary', '')}")

    def _fail(self, entry: dict, failure: failures.StudyFailure) -> None:
        """Record ``failure`` in ``entry`` (its study's) and say it in one line."""
        failures.save(failure, self.out)  # before the line that says where it is
        with self.store.lock:
            entry.update(status="failed", error=failure.line)
            self.store.save()
        self.failures.append(failure)
        if failure.user_error:  # said again, as the error, at the end
            self.say(f"{failure.study}: failed ({failure.line})")
            return
        self.reporter.warn(failure.line)
        if self.show_traceback and failure.traceback:
            self.reporter.warn(failure.traceback.rstrip())

    def run(self) -> int:
        if self.executor.notice:  # the memory capped the worker count: say so first
            self.say(self.executor.notice)
        if self.dashboard:
            link = self.executor.dashboard_link
            self.say(f"Dask dashboard: {link} (no credentials: every user of this machine "
                     "can open it)" if link else
                     "Dask dashboard: none (no local cluster: --workers 1 or --scheduler)")
        self.prepare()
        rate = estimate.calibrate(runs.env_for(self.data_settings))
        self.reporter.configure(f"Output folder {self.out}; {self.executor.description}",
                                rate, getattr(self.executor, "n_workers", 1))
        start = time.perf_counter()
        try:
            self._run_studies()
        except KeyboardInterrupt:
            self.report_stopped()
            raise
        finally:
            if self.courier is not None:
                self.courier.close()
            self.reporter.close()
        self.checkpoints.tidy()
        self.store.data["meta"]["wall_s_last_invocation"] = round(time.perf_counter() - start, 1)
        self.store.save()
        self.write_report(self.store.data, self.out / "report.md")
        elapsed = self.reporter.figures()["elapsed"]
        self.say(f"Trained {self.trained} runs in {time.perf_counter() - start:.0f} s "
                 f"({estimate.clock(elapsed)} elapsed, ended {now()[11:19]}); "
                 f"report: {self.out / 'report.md'}")
        for failure in self.failures:  # the others were said when their study failed
            if failure.user_error:
                print(f"error: {failure.line}", file=sys.stderr)
        if not self.failures:
            return 0
        return 2 if all(f.user_error for f in self.failures) else 1

    def report_stopped(self) -> None:
        """The report of what finished, when the suite stops (Ctrl-C, SIGTERM): studies it
        stopped are marked so there, not in ``results.json``; never cut by a second
        signal, and never an error of its own."""
        with interrupts.deferred(act_after=False), self.store.lock:
            data = {**self.store.data, "studies": {
                name: {**entry, "status": "stopped (run again with the same --out to "
                                          "finish it)"} if entry.get("status") == "running"
                else entry for name, entry in self.store.data["studies"].items()}}
            try:
                self.write_report(data, self.out / "report.md")
            except Exception:  # noqa: BLE001 (the finished runs are saved: that is what counts)
                pass

    def _run_studies(self) -> None:
        """Each study once, on a thread of its own; this thread starts their runs (see
        :mod:`experiments.suite.dispatch`) until every study has returned."""
        pool = concurrent.futures.ThreadPoolExecutor(len(self.names), "study")
        try:
            futures = [pool.submit(self._study_thread, name) for name in self.names]
            try:
                self.dispatcher.serve(lambda: all(f.done() for f in futures))
            except KeyboardInterrupt:
                # Studies waiting on runs stop now, each saying how many runs it kept.
                ABORT.set()
                concurrent.futures.wait(futures, timeout=STOP_WAIT_S)
                raise
            for future in futures:
                future.result()  # an error other than a failed run (a full disk, ...)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _study_thread(self, name: str) -> None:
        try:
            self.run_study(name)
        finally:
            self.dispatcher.finished()
