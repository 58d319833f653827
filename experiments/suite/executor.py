"""Where the suite's runs execute: in this process, or on a Dask cluster.

A run is a pure function of its spec (see :mod:`experiments.suite.tasks`), so any worker of
any cluster can compute it.  Dask's ``distributed`` does all the scheduling, retrying
(a task whose worker dies is resubmitted, up to ``distributed.scheduler.allowed-failures``
times) and moving of results; this module only chooses the cluster:

- ``InProcess``: one run after another in this process, no Dask (``--workers 1``);
- a ``LocalCluster``-style cluster of worker processes, one thread and one BLAS thread
  each, one per usable core as far as the memory allows (see :mod:`.memory`; ``--workers
  N``) or one per visible GPU, pinned to it with ``CUDA_VISIBLE_DEVICES`` (``--device cuda``
  or ``torch:cuda``; ``torch:mps``, one device, trains in this process unless ``--workers``
  says otherwise), each with a Dask memory limit, over TLS with credentials only this
  process holds;
- an existing cluster at ``--scheduler tcp://HOST:PORT`` or ``tls://HOST:PORT`` (``dask
  scheduler`` and ``dask worker``, dask-jobqueue, Kubernetes, ...), over TLS with Dask's
  own settings (its configuration, or ``DASK_DISTRIBUTED__COMM__TLS__*`` variables).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import threading

from experiments.suite import checkpoints, interrupts, memory
from experiments.suite.cluster import (
    CONNECT_TIMEOUT_S,
    CUDA_DEVICES,
    DASK_CONFIG,
    GPU_DEVICES,
    ClusterError,
    client_security,
    cuda_device_count,
    local_security,
    visible_gpus,
    worker_plan,
)
from experiments.suite.progress import PROGRESS_TOPIC
from xpnet.errors import XpnetError

#: The first part of every run's Dask key: the runs form one task group, which Dask's
#: scheduler holds in its own queue and hands out in priority order as workers free up
#: (its "root-ish" tasks: a group with more tasks than twice the cluster's threads).
#: With a key of its own, each run would be a group of one, sent to a worker the moment
#: it is submitted and run there in that worker's order.
RUN_TASK_GROUP = "xpnet-run"
class Backlog:
    """How many parts a CPU cluster cuts a run of M lockstep models into.

    Lockstep costs less per model than M separate runs: each layer is one NumPy call for
    all M models, so Python's per-call cost is paid once, and each part is a task with
    its own evaluations and start-up (measured in one process: one model of the suite's
    9-layer BN run 5.5 s, all three in lockstep 14.6 s, not 16.4).  So a run is cut only
    to give work to workers that would otherwise have none: into as many parts as there
    are workers free of the tasks already submitted and of the runs starting after it in
    the same batch, at least one, at most M.  Thread-safe.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._outstanding = 0

    def parts(self, n_models: int, n_workers: int, upcoming: int) -> int:
        """The number of parts to cut a run into, with ``upcoming`` runs starting after it."""
        with self._lock:
            idle = n_workers - self._outstanding - upcoming
        return max(1, min(n_models, idle))

    def task_submitted(self) -> None:
        with self._lock:
            self._outstanding += 1

    def task_done(self, _future=None) -> None:
        with self._lock:
            self._outstanding -= 1


class InProcess:
    """Runs each submitted function at once, in this process (no Dask).

    ``publish`` is the progress handler in-process runs report to (see
    :meth:`subscribe_progress`); the suite passes it to each run.
    """

    description = "in-process"
    #: Runs start one at a time, each when the one before has finished.
    one_at_a_time = True
    notice = None  # a line for the user about the choice of executor, if any
    dashboard_link = None  # no cluster, no dashboard

    def __init__(self):
        self.publish = None

    def parts_for(self, n_models: int, upcoming: int, share: float = 0.0) -> int:
        return 1

    def probe(self, fn, *args) -> dict:
        """``{"this process": fn(*args)}``: the one process that computes."""
        return {"this process": fn(*args)}

    def submit(self, fn, *args, key: str, priority: float = 0) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # KeyboardInterrupt must reach the suite at once
            if not isinstance(exc, Exception):
                raise
            future.set_exception(exc)
        return future

    def warm_up(self, fn, *args) -> None:
        """Nothing to warm: runs share this process's data with the client."""

    def subscribe_progress(self, handler) -> None:
        """In-process runs report to ``handler`` directly: it becomes :attr:`publish`."""
        self.publish = handler

    def close(self) -> None:
        self.publish = None


class DaskExecutor:
    """Submits runs to a Dask cluster through a ``distributed.Client``."""

    one_at_a_time = False  # Dask's scheduler queues what is submitted
    publish = None  # workers publish progress on PROGRESS_TOPIC instead
    notice = None  # a line for the user about the choice of executor, if any
    dashboard_link = None  # the local cluster's dashboard, with --dashboard

    def __init__(self, client, cluster=None, description: str = "", device: str = "cpu"):
        self.client = client
        self.cluster = cluster
        self.description = description
        self.device = device
        self.backlog = Backlog()

    @property
    def n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def parts_for(self, n_models: int, upcoming: int, share: float = 0.0) -> int:
        """Parts to cut a run of ``n_models`` into, with ``upcoming`` runs starting after
        it and ``share`` of the suite's work left: on CPU workers, one per idle worker
        (see :class:`Backlog`), and as many as keep the run from outlasting the rest of the
        suite (a run with more than ``1 / workers`` of the work left is the critical path:
        cut in ``ceil(share * workers)``); on GPUs a run stays whole (lockstep is the win
        there)."""
        if self.device in GPU_DEVICES:
            return 1
        workers = self.n_workers
        critical = min(n_models, workers, math.ceil(share * workers - 1e-9))
        return max(self.backlog.parts(n_models, workers, upcoming), critical)

    def probe(self, fn, *args) -> dict:
        """``fn(*args)`` on every worker now, outside the task queue (``Client.run``).

        Returns ``{"name (address)": result}``; a worker where ``fn`` raised an
        :class:`~xpnet.errors.XpnetError` ends it all in one sentence that names it.
        """
        results = self.client.run(fn, *args, on_error="return")
        names = {address: info.get("name", address) for address, info in
                 self.client.scheduler_info().get("workers", {}).items()}
        out = {}
        for address, result in sorted(results.items()):
            who = f"{names.get(address, address)} ({address})"
            if isinstance(result, XpnetError):
                raise type(result)(f"Worker {who} cannot train: {result}")
            if isinstance(result, BaseException):
                raise ClusterError(f"Worker {who} failed to start ({type(result).__name__}: "
                                   f"{str(result)[:160]}); check its installation.")
            out[who] = result
        return out

    def submit(self, fn, *args, key: str, priority: float = 0):
        """Queue ``fn(*args)``; among queued tasks, higher ``priority`` starts first, then
        the first submitted.

        pure=False: a run is keyed by the suite, not by hashing its (large) arguments; the
        key, ``(RUN_TASK_GROUP, key)``, names the study and run in Dask's dashboard and
        logs, and puts every run in one task group (see RUN_TASK_GROUP).
        fifo_timeout=0: Dask gives every task submitted within 100 ms the same rank by
        default, and the whole first wave of the suite then ran last-submitted first (the
        lambda search's first run started last, and its chain ran alone at the end).  The
        suite sets ``priority`` so that chained studies go first, then the longest runs
        (see ``Context.priority``).
        """
        self.backlog.task_submitted()
        # A checkpoint to start from travels to the workers as data of its own, not inside
        # the task (Dask warns of large task arguments).
        args = [self.client.scatter(a, hash=False) if isinstance(a, bytes) else a
                for a in args]
        future = self.client.submit(fn, *args, key=(RUN_TASK_GROUP, key), pure=False,
                                    priority=priority, fifo_timeout=0)
        future.add_done_callback(self.backlog.task_done)
        return future

    def fetch(self, worker: str, key: str):
        """The checkpoint part ``key`` left in ``worker``'s outbox (bytes, or None), fetched
        outside the task queue (``Client.run``; see :mod:`experiments.suite.checkpoints`)."""
        value = self.client.run(checkpoints.take, key, workers=[worker],
                                on_error="return").get(worker)
        return value if isinstance(value, bytes) else None

    def warm_up(self, fn, *args) -> None:
        """Start ``fn(*args)`` (loading the data) on every worker now, as a task of its own.

        The workers then load while the client loads its copy, instead of after it.
        Failures are left to the real runs, which report them with their names.
        """
        for address in self.client.scheduler_info().get("workers", {}):
            future = self.client.submit(fn, *args, workers=[address], pure=False,
                                        allow_other_workers=False, key=f"warm-up-{address}")
            future.add_done_callback(lambda f: f.exception())  # retrieve, never raise

    def subscribe_progress(self, handler) -> None:
        self.client.subscribe_topic(PROGRESS_TOPIC, lambda event: handler(event[1]))
        self._subscribed = True

    def close(self) -> None:
        """Close the client (its runs still queued or running are dropped) and a local
        cluster.  The progress topic goes first: a worker's event sent after the client
        closed made the scheduler log a traceback (CRITICAL, "Closed comm")."""
        try:
            if getattr(self, "_subscribed", False):
                self._subscribed = False
                self.client.unsubscribe_topic(PROGRESS_TOPIC)
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def connect(address: str, device: str) -> DaskExecutor:
    """A client of the existing cluster at ``address``; one sentence if it cannot be reached.

    ``tls://`` addresses use Dask's TLS settings (see :func:`client_security`).
    """
    from distributed import Client

    security = client_security(address)
    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s", security=security)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        check = ("the address and that its CA signed your certificate"
                 if address.startswith("tls://") else "the address")
        raise ClusterError(
            f"Could not reach the Dask scheduler at {address} ({reason[:160]}); start it with "
            f"`dask scheduler` and check {check}, or drop --scheduler to run here."
        ) from None
    return DaskExecutor(client, None, f"scheduler {address}", device)


#: Log level of local workers: a run's error reaches the suite through its future, so the
#: workers' own logs would only add Dask's shutdown noise (a heartbeat that races the
#: scheduler's closing was seen printed as an ERROR with a traceback after a clean run).
WORKER_LOG_LEVEL = logging.CRITICAL


def start_local_cluster(plan: list[dict], device: str, memory_limit: int = 0,
                        dashboard: bool = False) -> DaskExecutor:
    """A cluster of ``len(plan)`` single-threaded worker processes on this machine.

    Each worker runs in its own process under a nanny (which restarts it if it dies or
    passes 95 % of ``memory_limit`` bytes; 0: no limit) with the environment of its plan
    entry.  Scheduler, workers and nannies listen on the loopback address only, over TLS
    with credentials only this process holds (:func:`local_security`).  No HTTP server
    listens (:mod:`experiments.suite.no_http`), unless ``dashboard``: then the
    scheduler's dashboard is on a free loopback port, open to every local user
    (``executor.dashboard_link``).
    """
    import dask
    from distributed import Client, Nanny, Scheduler, SpecCluster

    from experiments.suite import no_http

    security = local_security()
    scheduler = {"cls": Scheduler, "options": {
        "dashboard": dashboard, "host": "127.0.0.1", "protocol": "tls", "security": security,
        # A free port: the default, 8787, would be taken by a second suite, with a warning.
        "dashboard_address": "127.0.0.1:0"}}
    workers = {f"worker-{i}": {"cls": Nanny, "options": {
        "nthreads": 1, "env": env, "host": "127.0.0.1", "protocol": "tls",
        "security": security, "silence_logs": WORKER_LOG_LEVEL, "memory_limit": memory_limit,
        "dashboard": False}} for i, env in enumerate(plan)}
    closed = {"distributed.worker.http.routes": []}
    if not dashboard:
        closed["distributed.scheduler.http.routes"] = []
    try:
        # Dask's loop thread, and through it every worker process, never takes SIGINT:
        # a terminal's Ctrl-C reaches the whole process group, and the suite ends them.
        with interrupts.main_thread_only(), dask.config.set({**DASK_CONFIG, **closed}):
            cluster = SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40,
                                  security=security)
            client = Client(cluster, security=security)
        client.register_plugin(no_http.WorkerWithoutHTTP())
        if not dashboard:
            client.register_plugin(no_http.SchedulerWithoutHTTP())
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"Could not start {len(plan)} local Dask workers ({exc}); run "
                           "with --workers 1 to train in this process.") from None
    what = "GPU" if device in GPU_DEVICES else "CPU"
    executor = DaskExecutor(client, cluster, f"local cluster, {len(plan)} {what} workers",
                            device)
    if dashboard:
        executor.dashboard_link = cluster.dashboard_link
    return executor


def make_executor(device: str, workers: int | None, scheduler: str | None, *,
                  gpu_count=None, data_bytes: int = 0, available: int | None = None,
                  dashboard: bool = False):
    """The executor the CLI's flags ask for.

    ``--scheduler`` (or ``$XPNET_SCHEDULER``) wins; otherwise a local cluster of
    ``--workers`` workers (default: ``$XPNET_WORKERS``, else every usable core as far as
    ``available`` bytes of memory (default: what is available now) hold ``data_bytes``
    of shared data, the client and the workers, or every visible GPU), and a single
    worker means in-process, without Dask.  When the memory caps the count, the
    executor's ``notice`` says so.  ``dashboard``: a local cluster serves Dask's
    dashboard (see :func:`start_local_cluster`).
    """
    if workers is None and os.environ.get("XPNET_WORKERS", "").strip():
        from experiments.suite.args import UsageError

        try:
            workers = int(os.environ["XPNET_WORKERS"])
        except ValueError:
            workers = 0
        if workers < 1:
            raise UsageError(f"XPNET_WORKERS must be a whole number of at least 1, not "
                             f"{os.environ['XPNET_WORKERS']!r}; fix or unset it.")
    scheduler = scheduler or os.environ.get("XPNET_SCHEDULER") or None
    if scheduler:
        return connect(scheduler, device)
    gpu_ids = None
    if device in CUDA_DEVICES:
        count = gpu_count() if gpu_count else cuda_device_count(device)
        gpu_ids = visible_gpus(count, os.environ.get("CUDA_VISIBLE_DEVICES"))
    plan = worker_plan(device, workers, gpu_ids=gpu_ids)
    available = memory.available_memory() if available is None else available
    notice = None
    fit = memory.workers_that_fit(available, data_bytes)
    if device == "cpu" and workers is None and fit < len(plan):
        notice = memory.cap_notice(fit, len(plan), available, data_bytes)
        plan = plan[:fit]
    if len(plan) <= 1:
        executor = InProcess()
    else:
        limit = memory.worker_memory_limit(available, data_bytes, len(plan))
        executor = start_local_cluster(plan, device, memory_limit=limit, dashboard=dashboard)
    executor.notice = notice
    return executor

