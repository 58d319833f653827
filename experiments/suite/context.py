"""What every study shares: settings, the per-study context, and submitted runs.

A *run* is one lockstep training (one Network of M models) or one other unit of work
(a gradient check of one config).  Each run has a readable key inside its study and a
fingerprint of everything that determines its result (:mod:`experiments.suite.store`);
:meth:`Context.submit` reuses the stored record when key and fingerprint match and
otherwise hands the run to the executor, and the record is saved to ``results.json``
(atomically) the moment it finishes, so an interrupted suite resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import time
from pathlib import Path

import numpy as np

from experiments.suite import tasks as runs
from experiments.suite.store import ResultStore, fingerprint, now
from xpnet import CyclicalLR, NetworkConfig, TrainConfig
from xpnet.codec import to_float_array, to_jsonable  # noqa: F401  (to_jsonable: for studies)
from xpnet.errors import OutputError, XpnetError

#: Study modules in the order they run (and appear in the report).
STUDY_NAMES = ("gradcheck", "overfit", "depth_bn", "lambda_search", "init_sensitivity",
               "lr_bn", "lr_range", "bn_eps", "activations")

#: The reports' architectures.
ARCHS = {
    "2-layer": (50,),
    "3-layer": (50, 50),
    "4-layer": (50, 30, 20),
    "9-layer": (50, 30, 20, 20, 10, 10, 10, 10),
}

BATCH = 100
LAMBDA = 0.005
#: Priority step between links of a chain: more than any run's estimated seconds.
CHAIN_LEVEL = 1e9


def load_study(name: str):
    """The study module ``experiments.<name>`` (has NAME, DESCRIPTION, run(ctx))."""
    return importlib.import_module(f"experiments.studies.{name}")


# --------------------------------------------------------------------- context
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
    """A run raised; names its study and key."""


#: Set when the suite stops (Ctrl-C, SIGTERM): study threads waiting on runs give up.
ABORT = threading.Event()


class PlanOnly(Exception):
    """Raised by a planned run's ``result()``: the planning pass stops its study there."""


@dataclasses.dataclass
class PlannedRun:
    """A run the planning pass found: everything :meth:`Context.start` needs, and its
    Dask priority (see :meth:`Context.priority`)."""

    key: str
    spec: dict
    fn: object
    splittable: bool
    steps: int
    priority: float


class RunHandle:
    """A submitted run: its record once every part has finished (see :meth:`Context.submit`).

    The record is stored in ``results.json`` the moment the run finishes, on whichever
    thread learns of it, whether or not a study is waiting for it yet.
    """

    def __init__(self, ctx: "Context", key: str, spec: dict, futures: list, merge=None,
                 start: float | None = None):
        self.ctx, self.key, self.spec = ctx, key, spec
        self.name = f"{ctx.study_name}/{key}"
        self._merge = merge
        self._futures = futures
        self._pending = len(futures)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._record = self._error = None
        #: Cancelled (the suite is stopping): neither finished nor failed.
        self._stopped = False
        self._start = time.perf_counter() if start is None else start
        for future in futures:
            future.add_done_callback(self._part_done)

    @classmethod
    def planned(cls, ctx, key, spec) -> "RunHandle":
        handle = cls(ctx, key, spec, [])
        handle._error = PlanOnly(key)
        handle._done.set()
        return handle

    @classmethod
    def finished(cls, ctx, key, record) -> "RunHandle":
        handle = cls(ctx, key, record.get("spec"), [])
        handle._record = record
        handle._done.set()
        return handle

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
        self.wait()
        if self._stopped:  # cancelled because the suite is stopping (Ctrl-C, SIGTERM)
            raise KeyboardInterrupt
        if self._error is not None:
            if isinstance(self._error, (OutputError, PlanOnly)) or not isinstance(
                    self._error, Exception):
                raise self._error
            err = self._error
            what = str(err) if isinstance(err, XpnetError) else f"{type(err).__name__}: {err}"
            raise RunFailed(f"Run {self.name} failed: {what}") from err
        return self._record


class Context:
    """Handed to ``study.run(ctx)``: data, schedules, figure paths and cached runs.

    One per study.  Runs go to the executor (this process or a Dask cluster): submit
    the runs that do not depend on each other first (:meth:`submit_train`), then ask
    for their records, so they can run concurrently.
    """

    def __init__(self, settings: Settings, store: ResultStore, out_dir: Path, executor,
                 study_name: str, data_settings, reporter, planning: bool = False,
                 chained: bool = False):
        self.settings = settings
        self.store = store
        self.out_dir = Path(out_dir)
        self.executor = executor
        self.study_name = study_name
        self.data_settings = data_settings
        self.reporter = reporter
        self.planning = planning  # only collect what would run (see Suite.plan)
        self.trained = 0
        self.reused = 0
        self.reused_s = 0.0
        #: Records this study has asked for so far: runs submitted after such a wait
        #: depend on earlier ones (a chain), and go ahead of the queue (see :meth:`priority`).
        self.waits = 0
        #: A study whose later runs wait on its earlier ones declares ``CHAINED = True``.
        self.chained = chained
        #: Planning: the runs found (see ``Suite.plan``).  Running: runs the suite has
        #: already started, by key, which :meth:`submit` hands out instead of starting.
        self.planned: list[PlannedRun] = []
        self.started: dict[str, RunHandle] = {}
        self._handles: list[RunHandle] = []  # every run this context started

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
        return runs.env_for(self.data_settings)

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
        """Start run ``key`` = ``fn(env, spec, callbacks)`` unless it is stored with this spec.

        ``fn`` is a top-level function (it may run on another machine).  A stored record
        whose fingerprint matches is reused without running anything.  With
        ``splittable`` (a spec with per-model ``spec["models"]``), a CPU cluster with idle
        workers trains the models in groups on several of them and merges the records
        (see :class:`experiments.suite.executor.Backlog`).  ``steps`` is the
        training length, for the progress display; ``cost`` its estimated seconds
        (:func:`experiments.suite.tasks.estimated_seconds`), for the order runs start in.
        """
        fp = fingerprint(spec)
        started = self.started.pop(key, None)
        if started is not None and fingerprint(started.spec) == fp:
            return started  # started by the suite's planning pass (it may be done)
        runs_dict = self.store.study(self.study_name)["runs"]
        old = runs_dict.get(key)
        name = f"{self.study_name}/{key}"
        if old is not None and old.get("fingerprint") == fp and not self.settings.force:
            self.reused += 1
            self.reused_s += float(old.get("wall_s") or 0.0)
            if not self.planning:
                self.reporter.run_reused(name)
            return RunHandle.finished(self, key, old)
        if self.planning:
            self.reporter.run_planned(name, steps)
            self.executor.expect(name)
            self.planned.append(PlannedRun(key, spec, fn, splittable, steps,
                                           self.priority(cost)))
            return RunHandle.planned(self, key, spec)
        return self.start(key, spec, fn, splittable=splittable, steps=steps,
                          priority=self.priority(cost))

    def start(self, key: str, spec: dict, fn, *, splittable: bool, steps: int,
              priority: float) -> RunHandle:
        """Hand run ``key`` to the executor now (see :meth:`submit`)."""
        name = f"{self.study_name}/{key}"
        fp = fingerprint(spec)
        parts = [spec]
        if splittable:
            parts = runs.split_spec(spec, self.executor.parts_for(name, runs.n_models(spec)))
        self.reporter.run_submitted(name, steps, n_parts=len(parts))
        start = time.perf_counter()  # the in-process executor computes inside submit()
        futures = [self.executor.submit(runs.execute, fn, part, self.data_settings,
                                        name if len(parts) == 1 else f"{name}#{i}",
                                        key=f"{name}#{i}-{fp}", priority=priority)
                   for i, part in enumerate(parts)]
        handle = RunHandle(self, key, spec, futures,
                           runs.merge_records if len(parts) > 1 else None, start)
        self._handles.append(handle)
        return handle

    def settle(self) -> None:
        """Wait until every run this study started has finished (and is saved)."""
        for handle in self._handles:
            handle.wait()

    def start_planned(self, run: PlannedRun) -> None:
        """Start a run the planning pass found; :meth:`submit` hands it out later."""
        self.started[run.key] = self.start(run.key, run.spec, run.fn,
                                           splittable=run.splittable, steps=run.steps,
                                           priority=run.priority)

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

    def train_spec(self, *, hidden, seeds, lam=LAMBDA, sigma=None, eps=None,
                   batch_norm: bool = True, init: str = "he", schedule=None,
                   train: TrainConfig | None = None, n_train: int | None = None) -> dict:
        """The spec of a training run (see :func:`experiments.suite.tasks.train_and_test`).

        Everything that determines the result; the dataclasses give every field, so a
        setting added to one of them later cannot be left out of the fingerprint.
        ``seeds``, ``lam``, ``sigma`` and ``eps`` (batch norm's epsilon) are scalars or
        one value per model, as are the schedule's per-model fields and
        ``train.momentum``; every per-model value goes under ``spec["models"]``, where
        :func:`experiments.suite.tasks.split_spec` can cut it into model groups.
        """
        config = NetworkConfig(d_in=self.data.X_train.shape[1], hidden=tuple(hidden),
                               n_classes=self.data.n_classes, batch_norm=batch_norm, init=init)
        schedule = schedule or self.cyclical(2)
        train = train or self.train_config()
        n = len(self.data.y_train) if n_train is None else min(n_train, len(self.data.y_train))
        sched = {"type": type(schedule).__name__, **dataclasses.asdict(schedule)}
        train_fields = dataclasses.asdict(train)
        per_model = {"seeds": seeds, "lam": lam, "sigma": sigma}
        if eps is not None:  # absent unless used: older runs keep their fingerprints
            per_model["eps"] = eps
        if isinstance(train.momentum, tuple):
            per_model["momentum"] = train_fields.pop("momentum")
        sizes = [np.size(v) for v in per_model.values() if v is not None]
        M = max(sizes + [schedule.n_models or 1])
        if any(size not in (1, M) for size in sizes):
            raise XpnetError(f"Per-model values of one run must all have {M} entries.")
        models = {k: None if v is None else np.broadcast_to(np.asarray(v), (M,)).tolist()
                  for k, v in per_model.items()}
        if schedule.n_models is not None:
            if schedule.n_models != M:
                raise XpnetError(f"The schedule has values for {schedule.n_models} models; "
                                 f"the run has {M}.")
            models["schedule"] = {k: list(sched.pop(k)) for k in schedule.per_model_fields()}
        return {"config": dataclasses.asdict(config), "train": train_fields,
                "schedule": sched, "models": models, "n_train": n, "data": self.data_sizes()}

    def submit_train(self, key: str, **kwargs) -> RunHandle:
        """Submit a training run of M lockstep models (arguments of :meth:`train_spec`)."""
        spec = self.train_spec(**kwargs)
        steps = runs.make_schedule(spec["schedule"], spec["models"]).total_steps
        return self.submit(key, spec, runs.train_and_test, splittable=True, steps=steps,
                           cost=runs.estimated_seconds(spec))

    def train_run(self, key: str, **kwargs) -> dict:
        """Train and test one run now (see :meth:`submit_train`) and return its record."""
        return self.submit_train(key, **kwargs).result()


# ------------------------------------------------------------ record helpers
def column(record: dict, field: str, columns=None) -> np.ndarray:
    """A per-model field of a run record as floats ``(M,)`` or its ``columns``."""
    values = to_float_array(record[field])
    return values if columns is None else values[list(columns)]


def test_cell(record: dict, columns=None) -> str:
    """Test accuracy over the chosen models, naming divergence (see ``accuracy_cell``)."""
    from experiments.report.markdown import accuracy_cell

    return accuracy_cell(column(record, "test_accuracy", columns),
                         column(record, "diverged_step", columns),
                         column(record, "last_val_accuracy", columns))


def seeds_split(record: dict, columns=None) -> bool:
    """Whether the chosen models' test accuracies split (see ``report.split_outcome``)."""
    from experiments.report.markdown import split_outcome

    return split_outcome(column(record, "test_accuracy", columns)) is not None


def mean_test(record: dict, columns=None) -> float:
    """Mean test accuracy of the chosen models (NaN when all diverged)."""
    from experiments.report.markdown import mean_or_nan

    return mean_or_nan(column(record, "test_accuracy", columns))


def metric(record: dict, key: str) -> np.ndarray:
    """A history metric ``(n_points, M)`` with NaN for missing values."""
    return to_float_array(record["history"]["metrics"][key])
