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
        """Whether the run has finished (or failed): :meth:`result` then returns at once.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())  # runs train as they are submitted
        >>> ctx.submit_train("2-layer", seeds=ctx.seeds, hidden=(8,),
        ...                  schedule=ctx.cyclical(1)).done
        True
        """
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
        """Return once the run has finished, failed or not (its record is then saved).

        Returns None; unlike :meth:`result`, a failed run raises nothing here.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> handle = ctx.submit_train("2-layer", seeds=ctx.seeds, hidden=(8,),
        ...                           schedule=ctx.cyclical(1))
        >>> handle.wait(); handle.done
        True
        """
        while not self._done.wait(0.2):  # short waits keep Ctrl-C responsive
            if ABORT.is_set():
                raise KeyboardInterrupt

    def result(self) -> dict:
        """The run's record, waiting for it to finish if it has not.

        Returns:
            The record as saved in ``results.json``: what the run function returned
            (a training run: ``test_accuracy``, ``test_loss``, ``diverged_step``,
            ``last_val_accuracy``, each ``(M,)`` with None for a diverged model;
            ``history`` with ``steps``, ``epochs``, ``eta`` and ``metrics``, each metric
            ``(n_points, M)``; ``n_models``), plus ``spec``, ``fingerprint``,
            ``wall_s``, ``compute_s`` and ``finished_at``.

        Raises:
            RunFailed: the run raised (the message names the study and run).

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> record = ctx.submit_train("2-layer", seeds=ctx.seeds, hidden=(8,),
        ...                           schedule=ctx.cyclical(1)).result()
        >>> record["n_models"], len(record["test_accuracy"]), sorted(record["history"])
        (2, 2, ['diverged_step', 'epochs', 'eta', 'metrics', 'steps', 'stopped_step'])
        """
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
        """Whether the suite runs with ``--quick`` (small data and schedules).

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> sandbox(tempfile.mkdtemp(), quick=True).quick
        True
        """
        return self.settings.quick

    @property
    def seeds(self) -> list[int]:
        """The seeds of every setting: ``[0, ..., N - 1]`` for ``--seeds N`` (default 3).

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> sandbox(tempfile.mkdtemp(), seeds=3).seeds
        [0, 1, 2]
        """
        return list(range(self.settings.seeds))

    @property
    def env(self):
        """This process's data and backend (:class:`experiments.suite.tasks.RunEnv`).

        ``env.data`` is the host data set, ``env.split("train")`` (``"val"``,
        ``"test"``) its split on the device, ``env.backend`` the array backend.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> env = sandbox(tempfile.mkdtemp()).env
        >>> env.split("val").X.shape, env.backend.name
        ((500, 3072), 'cpu')
        """
        return tasks.env_for(self.data_settings)

    @property
    def data(self):
        """The host :class:`xpnet.data.Dataset` (loaded once; smaller with --quick).

        ``X_train``, ``X_val``, ``X_test`` are standardised float32 ``(n, 3072)``;
        ``y_*`` int labels ``(n,)``; ``n_classes``; ``mean``, ``std`` the training
        statistics.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> data = sandbox(tempfile.mkdtemp()).data
        >>> data.X_train.shape, data.y_test.shape, data.n_classes
        ((500, 3072), (200,), 10)
        """
        return self.env.data

    def data_sizes(self) -> dict:
        """The data's split sizes and a fingerprint of its training statistics.

        Returns:
            ``{"train": int, "val": int, "test": int, "train_stats": str}``: part of
            every training spec, so other data means other runs.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> sizes = sandbox(tempfile.mkdtemp()).data_sizes()
        >>> sizes["train"], sizes["val"], sizes["test"], len(sizes["train_stats"])
        (500, 500, 200, 16)
        """
        return self.env.data_sizes()

    def train_config(self, **changes) -> TrainConfig:
        """The reports' training settings (batch 100), with ``changes`` applied.

        Training metrics are measured on 10,000 training images (all of them with --quick).

        Args:
            **changes: fields of :class:`xpnet.TrainConfig` (``batch_size``,
                ``momentum`` (a float, or a tuple of M), ``evals_per_cycle``,
                ``train_eval_size``, ``divergence_loss``).

        Returns:
            A :class:`xpnet.TrainConfig`, for ``submit_train(train=...)``.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> config = sandbox(tempfile.mkdtemp()).train_config(momentum=0.9)
        >>> config.batch_size, config.momentum
        (100, 0.9)
        """
        settings = dict(batch_size=BATCH, train_eval_size=None if self.quick else 10000)
        return TrainConfig(**{**settings, **changes})

    def cyclical(self, cycles: int, n_train: int | None = None) -> CyclicalLR:
        """The reports' schedule: eta 1e-5..1e-1, n_s = 5 epochs of batch 100.

        Args:
            cycles: the number of cycles (each ``2 * n_s`` update steps).
            n_train: the training images an epoch has; default all of :attr:`data`'s.

        Returns:
            A :class:`xpnet.CyclicalLR`, for ``submit_train(schedule=...)``.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())  # 500 training images: n_s = 25
        >>> ctx.cyclical(2)
        CyclicalLR(eta_min=1e-05, eta_max=0.1, n_s=25, cycles=2)
        >>> ctx.cyclical(1, n_train=100).total_steps
        10
        """
        n = n_train or len(self.data.y_train)
        return CyclicalLR(1e-5, 1e-1, n_s=max(1, 5 * n // BATCH), cycles=cycles)

    # --------------------------------------------------------------- figures
    def figure_path_and_link(self, name: str) -> tuple[Path, str]:
        """Where to save figure ``<study>_<name>.png``, and its link for the report.

        Args:
            name: the figure's name within the study (no extension).

        Returns:
            ``(path, link)``: the absolute :class:`~pathlib.Path` to save to (pass it to
            an ``xpnet.plots`` function) and the report-relative link (put it in the
            study's ``"figures"``).

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp(), study="demo")
        >>> path, link = ctx.figure_path_and_link("curves")
        >>> link, path == ctx.out_dir / link
        ('figures/demo_curves.png', True)
        """
        rel = f"figures/{self.study_name}_{name}.png"
        return self.out_dir / rel, rel

    def figure_path(self, name: str) -> tuple[Path, str]:
        """The older name of :meth:`figure_path_and_link`: returns the pair ``(path, link)``.

        Args:
            name: the figure's name within the study (no extension).

        Returns:
            ``(path, link)``: where to save the figure, and its link for the report.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> path, link = sandbox(tempfile.mkdtemp(), study="demo").figure_path("curves")
        >>> path.name, link
        ('demo_curves.png', 'figures/demo_curves.png')
        """
        return self.figure_path_and_link(name)

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

        Args:
            key: the run's name within the study (its key in ``results.json``).
            spec: a JSON-able dict of everything that determines the result.
            fn: ``fn(env, spec, callbacks) -> dict``, a top-level function; ``env`` is a
                :class:`~experiments.suite.tasks.RunEnv`, ``callbacks`` the training
                callbacks to pass on (progress).

        Returns:
            A :class:`RunHandle`; ``handle.result()`` is ``fn``'s dict with ``spec``,
            ``fingerprint`` and times added.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> def count(env, spec, callbacks):
        ...     return {"images": len(env.data.y_train) * spec["factor"]}
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> ctx.submit("count", {"factor": 2}, count).result()["images"]
        1000
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
        it names (``seeds``, ``lam``, ``sigma``, ``momentum`` and the network's per-model
        fields: ``bn_eps`` or ``eps``, ``dropout``...); ``settings`` are the rest of
        :meth:`train_spec`'s arguments (``norm="layer"``, ``optimizer=Adam(...)``, ...).
        ``fn`` replaces the run function (:func:`experiments.suite.tasks.train_and_test`)
        with one of the same form that also measures something (see
        ``tasks.fit_and_test``), and ``extra`` adds its own JSON-able fields to the spec;
        such a run is never cut into model groups, nor is one with ``halving`` (an
        :class:`xpnet.Halving`: its rungs rank all the models together).

        Args:
            key: the run's name within the study (its key in ``results.json``).
            grid: the models; without one, ``seeds=`` (and scalar or per-model ``lam``,
                ``sigma``, ``bn_eps``, ``dropout``...) give them.
            fn: ``fn(env, spec, callbacks) -> dict``, a top-level run function; default
                :func:`~experiments.suite.tasks.train_and_test`.
            extra: JSON-able fields added to the spec (for ``fn`` to read).
            **settings: :meth:`train_spec`'s arguments: ``hidden`` (required),
                ``norm``, ``activation``, ``dropout``, ``init``, ``optimizer``,
                ``schedule``, ``train``, ``n_train``, ``halving``...

        Returns:
            A :class:`RunHandle`; its ``result()`` is the record (see
            :meth:`RunHandle.result`).  A run stored with the same spec is reused.

        >>> import tempfile
        >>> from experiments.studies.kit import Grid
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> grid = Grid(ctx.seeds, lam=(0.0, 0.01))
        >>> handle = ctx.submit_train("2-layer", grid, hidden=(8,), schedule=ctx.cyclical(1))
        >>> record = handle.result()
        >>> record["spec"]["models"]["lam"], len(record["test_accuracy"])
        ([0.0, 0.0, 0.01, 0.01], 4)
        """
        spec = {**self.train_spec(grid=grid, **settings), **(extra or {})}
        steps = specs.make_schedule(spec["schedule"], spec["models"]).total_steps
        splittable = fn is None and "halving" not in spec
        return self.submit(key, spec, fn or tasks.train_and_test, splittable=splittable,
                           steps=steps, cost=specs.estimated_seconds(spec))

    def train_spec(self, *, grid=None, hidden, seeds=None, lam=0.005, sigma=None,
                   schedule=None, train: TrainConfig | None = None, n_train: int | None = None,
                   optimizer=None, halving=None, **network_fields) -> dict:
        """The spec of a training run on this study's data (see
        :func:`experiments.suite.spec.train_spec`); by default the reports' 2-cycle
        schedule and training settings, lambda 0.005, He init, batch norm, SGD.

        Args:
            grid: a :class:`~experiments.studies.kit.Grid` whose ``seeds``, ``lam``,
                ``sigma``, ``momentum`` and per-model network fields (``bn_eps`` or
                ``eps``, ``dropout``...) are per-model values (they win over the
                arguments of the same names).
            hidden: the hidden layers' widths, e.g. ``(50, 50)`` (a 3-layer net).
            seeds, lam, sigma: a scalar, or one value per model; ``sigma`` is the
                std of ``init="normal"`` weights.
            schedule: a schedule from :mod:`xpnet.schedules`; default ``cyclical(2)``.
            train: a :class:`xpnet.TrainConfig`; default :meth:`train_config`.
            n_train: train on the first ``n_train`` training images; default all.
            optimizer: an option object of :mod:`xpnet.optim` (``SGD(...)``,
                ``Adam(...)``, ``AdamW(...)``); it replaces ``train``'s.
            halving: an :class:`xpnet.Halving` schedule that drops the losing models at
                its rungs; the spec holds it only when given.
            **network_fields: :class:`xpnet.NetworkConfig` fields: ``norm="layer"``,
                ``activation="tanh"``, ``dropout=[0, 0.1, 0.3]``, ``bn_eps``, ``init``
                (``"he"``, ``"xavier"`` or ``"normal"`` with ``sigma``)...

        Returns:
            A JSON-able dict: ``config``, ``train``, ``schedule``, ``models`` (every
            per-model value as a list of M), ``n_train``, ``data``.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> spec = sandbox(tempfile.mkdtemp()).train_spec(hidden=(50,), seeds=[0, 1])
        >>> spec["models"], spec["config"]["hidden"], spec["schedule"]["type"]
        ({'seeds': [0, 1], 'lam': [0.005, 0.005], 'sigma': None}, (50,), 'CyclicalLR')
        """
        per_model = grid.per_model() if grid is not None else {}
        train = train or self.train_config()
        if "momentum" in per_model:
            train = dataclasses.replace(train, momentum=tuple(per_model.pop("momentum")))
        if optimizer is not None:
            train = dataclasses.replace(train, optimizer=optimizer)
        network_fields = {**specs.network_options(network_fields),
                          **specs.grid_options(per_model)}
        n_all = len(self.data.y_train)
        return specs.train_spec(
            data=self.data_sizes(), d_in=self.data.X_train.shape[1],
            n_classes=self.data.n_classes, hidden=hidden,
            seeds=per_model.get("seeds", seeds), lam=per_model.get("lam", lam),
            sigma=per_model.get("sigma", sigma), schedule=schedule or self.cyclical(2),
            train=train, n_train=n_all if n_train is None else min(n_train, n_all),
            halving=halving, **network_fields)

    def priority(self, cost: float) -> float:
        """The Dask priority of a run submitted now (higher starts first).

        A chained study's runs are on the suite's critical path (the lambda search's
        coarse → fine → final, a range test → its final run): they go ahead of runs that
        nothing waits on, and a later link (submitted after the study waited for a
        record) ahead of earlier ones.  Within a level, the longest run first: the
        shortest runs then fill the workers' last gaps, instead of one long run
        finishing alone while the other workers idle.

        Args:
            cost: the run's estimated seconds.

        Returns:
            The priority, a float.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> ctx.priority(60.0) > ctx.priority(1.0)  # before any wait: longest first
        True
        >>> first = ctx.priority(1.0)
        >>> _ = ctx.submit_train("2-layer", seeds=ctx.seeds, hidden=(8,),
        ...                      schedule=ctx.cyclical(1)).result()
        >>> ctx.priority(1.0) > first  # after a wait: a later link of a chain goes first
        True
        """
        return CHAIN_LEVEL * (self.waits + self.chained) + min(cost, CHAIN_LEVEL / 2)

    def settle(self) -> None:
        """Wait until every run this study handed on has finished (and is saved).

        Returns None (failed runs raise nothing here; their handles' ``result()`` does).

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> handle = ctx.submit_train("2-layer", seeds=ctx.seeds, hidden=(8,),
        ...                           schedule=ctx.cyclical(1))
        >>> ctx.settle(); handle.done
        True
        """
        with self.dispatcher.waiting():
            for handle in self._handles:
                handle.wait()

    def store_run(self, key: str, spec: dict, record: dict, wall_s: float) -> dict:
        """Save a finished run's record with its spec and times (thread-safe).

        Called by a :class:`RunHandle` when its run finishes; a study does not call it.

        Args:
            key: the run's key within the study.
            spec: the run's spec (its fingerprint is stored with it).
            record: what the run function returned.
            wall_s: the run's wall time in seconds.

        Returns:
            The stored record: ``record`` as JSON-able values, with ``spec``,
            ``fingerprint``, ``wall_s`` and ``finished_at``; ``results.json`` has it.

        >>> import json, tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp(), study="demo")
        >>> ctx.store_run("by-hand", {"n": 1}, {"value": float("nan")}, 0.5)["value"] is None
        True
        >>> saved = json.loads((ctx.out_dir / "results.json").read_text())
        >>> saved["studies"]["demo"]["runs"]["by-hand"]["wall_s"]
        0.5
        """
        record = dict(to_jsonable(record))
        record.update(spec=to_jsonable(spec), fingerprint=fingerprint(spec),
                      wall_s=round(wall_s, 3), finished_at=now())
        with self.store.lock:
            self.store.study(self.study_name)["runs"][key] = record
            self.store.save()
            self.trained += 1
        return record
