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
from pathlib import Path

from experiments.suite import spec as specs
from experiments.suite import tasks
from experiments.suite.handle import RunHandle
from experiments.suite.store import fingerprint, now
from experiments.suite.view import BATCH, Settings, StudyView  # noqa: F401 (BATCH: the kit's)
from xpnet import TrainConfig
from xpnet.base.codec import to_jsonable

#: Priority step between links of a chain: more than any run's estimated seconds.
CHAIN_LEVEL = 1e9


class Context(StudyView):
    """Handed to ``study.run(ctx)``: data, schedules, figure paths (:class:`StudyView`)
    and runs.

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
            self.dispatcher.run_ended(f"{self.study_name}/{key}")  # a checkpoint left behind
            return RunHandle.finished(self, key, old)
        handle = RunHandle(self, key, spec, fn, splittable=splittable, steps=steps,
                           priority=self.priority(cost, key), cost=cost)
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
        splittable = fn is None and not {"halving", "pbt", "ensemble"} & set(spec)
        return self.submit(key, spec, fn or tasks.train_and_test, splittable=splittable,
                           steps=steps, cost=specs.estimated_seconds(spec))

    def plan(self, key: str, grid=None, *, after: str | None = None, **settings) -> None:
        """Say that this study will submit the training run ``key`` later: a chain's next
        link, whose values wait on the record of run ``after`` (a key of this study).

        Its work then counts in the suite's estimate from the start, so the time left does
        not jump when the link comes, and in the priority of ``after`` (see
        :meth:`priority`), so the chain starts early.  Takes :meth:`submit_train`'s
        arguments, with stand-ins for the values the record will decide (a run's cost
        depends on its shape: its models, layers and steps, not on their values).  A run
        stored in the output folder already is left out (it will most likely be reused).

        Args:
            key: the run's name within the study, as it will be submitted.
            grid: a :class:`~experiments.studies.kit.Grid` of its models, as for
                :meth:`submit_train`.
            after: the key of the run whose record it waits on (None: none of this
                study's).
            **settings: :meth:`train_spec`'s arguments (``hidden``, ``seeds``,
                ``schedule``...).

        Returns:
            None.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> ctx.plan("final", hidden=(50, 50), seeds=ctx.seeds, schedule=ctx.cyclical(3))
        >>> ctx.reporter.state["my_study/final"]
        'planned'
        """
        if key in self.store.study(self.study_name)["runs"] and not self.settings.force:
            self.dispatcher.plan(f"{self.study_name}/{key}", 0.0, None)
            return
        spec = self.train_spec(grid=grid, **settings)
        steps = specs.make_schedule(spec["schedule"], spec["models"]).total_steps
        work = specs.estimated_seconds(spec)
        self.dispatcher.plan(f"{self.study_name}/{key}", work,
                             None if after is None else f"{self.study_name}/{after}")
        self.reporter.run_planned(f"{self.study_name}/{key}", steps, work, spec)

    def train_spec(self, *, grid=None, hidden, seeds=None, lam=0.005, sigma=None,
                   schedule=None, train: TrainConfig | None = None, n_train: int | None = None,
                   optimizer=None, halving=None, pbt=None, ensemble=None,
                   **network_fields) -> dict:
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
            schedule: a schedule from :mod:`xpnet.training.schedules`; default ``cyclical(2)``.
            train: a :class:`xpnet.TrainConfig`; default :meth:`train_config`.
            n_train: train on the first ``n_train`` training images; default all.
            optimizer: an option object of :mod:`xpnet.training.optim` (``SGD(...)``,
                ``Adam(...)``, ``AdamW(...)``); it replaces ``train``'s.
            halving: an :class:`xpnet.Halving` schedule that drops the losing models at
                its rungs; the spec holds it only when given.
            pbt: an :class:`xpnet.PBT` schedule (population-based training), likewise.
            ensemble: k: the record gets ``ensemble_test_accuracy``, the test accuracy of
                the mean probabilities of the k models with the best last validation
                accuracy (diverged ones never); likewise.
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
            halving=halving, pbt=pbt, ensemble=ensemble, **network_fields)

    def priority(self, cost: float, key: str | None = None) -> float:
        """The Dask priority of run ``key`` submitted now (higher starts first).

        The longest path of work that starts with the run: its own estimated seconds and
        those of the later links that wait on it (declared by :meth:`plan` with
        ``after=``: the lambda search's coarse → fine → final, a range test → its final
        run), the longest of them.  The run that would otherwise end last starts first: a
        long run, or the head of a long chain; the shortest runs then fill the workers'
        last gaps, instead of one long run finishing alone while the other workers idle
        (list scheduling by critical path).  A study that says it is ``CHAINED`` but plans
        none of its later links has its runs go ahead of those that nothing waits on, and
        a later link (submitted after the study waited for a record) ahead of earlier ones.

        Args:
            cost: the run's estimated seconds.
            key: the run's key within the study.

        Returns:
            The priority, a float.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())
        >>> ctx.priority(60.0) > ctx.priority(1.0)  # longest first
        True
        >>> ctx.plan("final", after="search", hidden=(50, 50), seeds=ctx.seeds,
        ...          schedule=ctx.cyclical(3))
        >>> ctx.priority(1.0, "search") > ctx.priority(1.0, "other")  # a chain's head
        True
        """
        tail = self.dispatcher.tail(f"{self.study_name}/{key}")
        level = (self.waits + 1) if self.chained and not self.dispatcher.planned(
            self.study_name) else 0
        return CHAIN_LEVEL * level + min(cost + tail, CHAIN_LEVEL / 2)

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
