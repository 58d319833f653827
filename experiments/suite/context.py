"""What a study sees: settings, data, figure paths, and the runs it submits.

A *run* is one lockstep training (one Network of M models) or one other unit of work
(a gradient check of one config).  Each run has a readable key inside its study and a
fingerprint of everything that determines its result (:mod:`experiments.suite.store`);
:meth:`Context.submit` reuses the stored record when key and fingerprint match and
otherwise hands the run to the suite's :class:`~experiments.suite.dispatch.Dispatcher`,
and the record is saved to ``results.json`` (atomically) the moment it finishes, so an
interrupted suite resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

from experiments.suite import spec as specs
from experiments.suite import tasks
from experiments.suite.store import fingerprint, now
from xpnet import CyclicalLR, TrainConfig
from xpnet.codec import to_jsonable
from xpnet.errors import OutputError, XpnetError

#: The reports' batch size.
BATCH = 100
#: Priority step between links of a chain: more than any run's estimated seconds.
CHAIN_LEVEL = 1e9

#: Set when the suite stops (Ctrl-C, SIGTERM): study threads waiting on runs give up.
ABORT = threading.Event()


@dataclasses.dataclass
class Settings:
    """The CLI choices that every study sees."""

    quick: bool = False
    seeds: int = 3
    data_dir: str | None = None
    download: bool = False
    force: bool = False
    progress: bool = True

    def scale(self) -> dict:
        """What makes results of one invocation comparable with another's."""
        return {"quick": self.quick, "seeds": self.seeds}


class RunFailed(XpnetError):
    """A run raised; names its study and key (``run``: ``"study/key"``); the run's error
    is its ``__cause__``."""

    def __init__(self, message: str, run: str = ""):
        super().__init__(message)
        self.run = run


class RunHandle:
    """A submitted run: its record once every part has finished (see :meth:`Context.submit`).

    Made by :meth:`Context.submit`, started by the dispatcher (:meth:`started`), and
    stored in ``results.json`` the moment it finishes, on whichever thread learns of it,
    whether or not a study is waiting for it yet.
    """

    def __init__(self, ctx: Context, key: str, spec: dict, fn=None, *,
                 splittable: bool = False, steps: int = 0, priority: float = 0.0):
        self.ctx, self.key, self.spec, self.fn = ctx, key, spec, fn
        self.name = f"{ctx.study_name}/{key}"
        self.splittable, self.steps, self.priority = splittable, steps, priority
        self._merge = None
        self._futures: list = []
        self._pending = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._record = self._error = None
        #: Cancelled (the suite is stopping): neither finished nor failed.
        self._stopped = False
        self._start = 0.0

    @classmethod
    def finished(cls, ctx, key, record) -> RunHandle:
        handle = cls(ctx, key, record.get("spec"))
        handle._record = record
        handle._done.set()
        return handle

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def started(self, futures: list, merge, start: float) -> None:
        """The dispatcher has handed the run's parts to the executor as ``futures`` at
        ``start`` (``time.perf_counter()``); ``merge(records)`` joins the parts' records
        (None: one part)."""
        self._merge, self._futures, self._pending = merge, futures, len(futures)
        self._start = start
        for future in futures:
            future.add_done_callback(self._part_done)

    def _part_done(self, _future) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending:
                return
        try:
            # Done futures answer at once; the timeout guards Dask's callback thread (which
            # the interpreter joins at exit) against a future that can never answer.
            parts = [f.result(timeout=60) for f in self._futures]
            record = self._merge(parts) if self._merge else parts[0]
            self._record = self.ctx.store_run(self.key, self.spec, record,
                                              time.perf_counter() - self._start)
        except Exception as exc:  # a run's error, a cancelled future, a full disk
            self._error = exc
            self._stopped = any(f.cancelled() for f in self._futures)
        except BaseException as exc:  # Ctrl-C during an in-process run's save: stop now
            self._error = exc
            raise
        finally:
            self._done.set()
            self.ctx.reporter.run_finished(self.name, failed=self._error is not None,
                                           stopped=self._stopped)

    def wait(self) -> None:
        """Return once the run has finished, failed or not (its record is then saved)."""
        while not self._done.wait(0.2):  # short waits keep Ctrl-C responsive
            if ABORT.is_set():
                raise KeyboardInterrupt

    def result(self) -> dict:
        """The run's record; raises :class:`RunFailed` (or the store's error) if it failed."""
        self.ctx.waits += 1
        if not self.done:
            with self.ctx.dispatcher.waiting():
                self.wait()
        if self._stopped:  # cancelled because the suite is stopping (Ctrl-C, SIGTERM)
            raise KeyboardInterrupt
        if self._error is not None:
            if isinstance(self._error, OutputError) or not isinstance(self._error, Exception):
                raise self._error
            err = self._error
            what = str(err) if isinstance(err, XpnetError) else f"{type(err).__name__}: {err}"
            raise RunFailed(f"Run {self.name} failed: {what}", run=self.name) from err
        return self._record


class Context:
    """Handed to ``study.run(ctx)``: data, schedules, figure paths and runs.

    One per study.  Submit the runs that do not depend on each other first
    (:meth:`submit_train`, :meth:`submit`), then ask for their records: the suite starts
    runs once every study is waiting, so they run concurrently and in the best order.
    """

    def __init__(self, settings: Settings, store, out_dir: Path, dispatcher, study_name: str,
                 data_settings, reporter, chained: bool = False):
        self.settings = settings
        self.store = store
        self.out_dir = Path(out_dir)
        self.dispatcher = dispatcher
        self.study_name = study_name
        self.data_settings = data_settings
        self.reporter = reporter
        self.trained = 0
        self.reused = 0
        self.reused_s = 0.0
        #: Records this study has asked for so far: runs submitted after such a wait
        #: depend on earlier ones (a chain), and go ahead of the queue (see :meth:`priority`).
        self.waits = 0
        #: A study whose later runs wait on its earlier ones declares ``CHAINED = True``.
        self.chained = chained
        self._handles: list[RunHandle] = []  # every run this context handed on

    # ------------------------------------------------------------------ data
    @property
    def quick(self) -> bool:
        return self.settings.quick

    @property
    def seeds(self) -> list[int]:
        return list(range(self.settings.seeds))

    @property
    def env(self):
        """This process's data and backend (:class:`experiments.suite.tasks.RunEnv`)."""
        return tasks.env_for(self.data_settings)

    @property
    def data(self):
        """The host :class:`xpnet.data.Dataset` (loaded once; smaller with --quick)."""
        return self.env.data

    def data_sizes(self) -> dict:
        return self.env.data_sizes()

    def train_config(self, **changes) -> TrainConfig:
        """The reports' training settings (batch 100), with ``changes`` applied.

        Training metrics are measured on 10,000 training images (all of them with --quick).
        """
        settings = dict(batch_size=BATCH, train_eval_size=None if self.quick else 10000)
        return TrainConfig(**{**settings, **changes})

    def cyclical(self, cycles: int, n_train: int | None = None) -> CyclicalLR:
        """The reports' schedule: eta 1e-5..1e-1, n_s = 5 epochs of batch 100."""
        n = n_train or len(self.data.y_train)
        return CyclicalLR(1e-5, 1e-1, n_s=max(1, 5 * n // BATCH), cycles=cycles)

    # --------------------------------------------------------------- figures
    def figure_path(self, name: str) -> tuple[Path, str]:
        """Absolute path and report-relative link of figure ``<study>_<name>.png``."""
        rel = f"figures/{self.study_name}_{name}.png"
        return self.out_dir / rel, rel

    # ------------------------------------------------------------------ runs
    def submit(self, key: str, spec: dict, fn, *, splittable: bool = False,
               steps: int = 0, cost: float = 0.0) -> RunHandle:
        """Run ``key`` = ``fn(env, spec, callbacks)`` unless it is stored with this spec.

        ``fn`` is a top-level function (it may run on another machine).  A stored record
        whose fingerprint matches is reused without running anything.  With
        ``splittable`` (a spec with per-model ``spec["models"]``), a CPU cluster with idle
        workers trains the models in groups on several of them and merges the records
        (see :class:`experiments.suite.executor.Backlog`).  ``steps`` is the training
        length, for the progress display; ``cost`` its estimated seconds
        (:func:`experiments.suite.spec.estimated_seconds`), for the order runs start in.
        """
        old = self.store.study(self.study_name)["runs"].get(key)
        if (old is not None and old.get("fingerprint") == fingerprint(spec)
                and not self.settings.force):
            self.reused += 1
            self.reused_s += float(old.get("wall_s") or 0.0)
            self.reporter.run_reused(f"{self.study_name}/{key}")
            return RunHandle.finished(self, key, old)
        handle = RunHandle(self, key, spec, fn, splittable=splittable, steps=steps,
                           priority=self.priority(cost))
        self._handles.append(handle)
        self.dispatcher.add(handle)
        return handle

    def submit_train(self, key: str, grid=None, *, fn=None, extra: dict | None = None,
                     **settings) -> RunHandle:
        """Submit a training run of M lockstep models.

        ``grid`` (a :class:`experiments.studies.kit.Grid`) gives the per-model values
        it names (``seeds``, ``lam``, ``sigma``, ``eps``, ``momentum``); ``settings`` are
        the rest of :meth:`train_spec`'s arguments.  ``fn`` replaces the run function
        (:func:`experiments.suite.tasks.train_and_test`) with one of the same form that
        also measures something (see ``tasks.fit_and_test``), and ``extra`` adds its own
        JSON-able fields to the spec; such a run is never cut into model groups.
        """
        spec = {**self.train_spec(grid=grid, **settings), **(extra or {})}
        steps = specs.make_schedule(spec["schedule"], spec["models"]).total_steps
        return self.submit(key, spec, fn or tasks.train_and_test, splittable=fn is None,
                           steps=steps, cost=specs.estimated_seconds(spec))

    def train_spec(self, *, grid=None, hidden, seeds=None, lam=0.005, sigma=None, eps=None,
                   batch_norm: bool = True, init: str = "he", schedule=None,
                   train: TrainConfig | None = None, n_train: int | None = None) -> dict:
        """The spec of a training run on this study's data (see
        :func:`experiments.suite.spec.train_spec`); by default the reports' 2-cycle
        schedule and training settings, lambda 0.005, He init, batch norm."""
        per_model = grid.per_model() if grid is not None else {}
        if grid is not None and "momentum" in per_model:
            train = dataclasses.replace(train or self.train_config(),
                                        momentum=tuple(per_model.pop("momentum")))
        n_all = len(self.data.y_train)
        return specs.train_spec(
            data=self.data_sizes(), d_in=self.data.X_train.shape[1],
            n_classes=self.data.n_classes, hidden=hidden,
            seeds=per_model.get("seeds", seeds), lam=per_model.get("lam", lam),
            sigma=per_model.get("sigma", sigma), eps=per_model.get("eps", eps),
            batch_norm=batch_norm, init=init, schedule=schedule or self.cyclical(2),
            train=train or self.train_config(),
            n_train=n_all if n_train is None else min(n_train, n_all))

    def priority(self, cost: float) -> float:
        """The Dask priority of a run submitted now (higher starts first).

        A chained study's runs are on the suite's critical path (the lambda search's
        coarse → fine → final, a range test → its final run): they go ahead of runs that
        nothing waits on, and a later link (submitted after the study waited for a
        record) ahead of earlier ones.  Within a level, the longest run first: the
        shortest runs then fill the workers' last gaps, instead of one long run
        finishing alone while the other workers idle.
        """
        return CHAIN_LEVEL * (self.waits + self.chained) + min(cost, CHAIN_LEVEL / 2)

    def settle(self) -> None:
        """Wait until every run this study handed on has finished (and is saved)."""
        with self.dispatcher.waiting():
            for handle in self._handles:
                handle.wait()

    def store_run(self, key: str, spec: dict, record: dict, wall_s: float) -> dict:
        """Save a finished run's record with its spec and times (thread-safe)."""
        record = dict(to_jsonable(record))
        record.update(spec=to_jsonable(spec), fingerprint=fingerprint(spec),
                      wall_s=round(wall_s, 3), finished_at=now())
        with self.store.lock:
            self.store.study(self.study_name)["runs"][key] = record
            self.store.save()
            self.trained += 1
        return record
