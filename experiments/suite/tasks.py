"""Runs as pure functions of their specs, and what they see on whichever process runs them.

A run is a top-level function ``fn(env, spec, callbacks) -> record`` whose result
depends only on ``spec`` (a JSON-able dict: see :mod:`experiments.suite.spec`) and on
the data, so it can execute in the client process or on any Dask worker.  ``env`` is a
:class:`RunEnv`, loaded once per process and cached: the CIFAR-10 data, its device
copies and the backend.  :func:`execute` is the task every executor runs;
:func:`train_and_test` is the run function of every training run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import platform
import time
import traceback
from pathlib import Path

import numpy as np

from experiments.suite.checkpoints import Slot
from experiments.suite.progress import PROGRESS_TOPIC, ProgressEvents, dask_worker
from experiments.suite.spec import (
    make_config,
    make_halving,
    make_pbt,
    make_schedule,
    make_train_config,
    network_per_model,
)
from xpnet import Network, to_numpy
from xpnet.base.codec import to_jsonable
from xpnet.errors import DataError, XpnetError
from xpnet.estimators.scoring import best_models
from xpnet.training import DeviceSplit, train


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Where a process finds the data and which device it trains on."""

    data_dir: str | None
    download: bool = False
    quick: bool = False
    device: str = "cpu"
    progress: bool = False  # download progress bars (in the client process only)


def data_options(quick: bool) -> dict:
    """The ``load_cifar10`` options of the suite's data (a slice of it with --quick)."""
    return dict(limit=1000, n_val=500) if quick else dict(n_val=5000)


def data_bytes(quick: bool) -> int:
    """Bytes of the standardised float32 splits (images x 3072 x 4): the shared data.

    The full splits are CIFAR-10's 60,000 images; --quick keeps at most 1,000 training,
    500 validation and 1,000 test images.
    """
    return (2500 if quick else 60000) * 3072 * 4


class RunEnv:
    """The data and backend of one process, loaded on first use."""

    def __init__(self, settings: DataSettings):
        self.settings = settings
        self._data = None
        self._splits = None
        self._backend = None

    @property
    def backend(self):
        if self._backend is None:
            from xpnet.backend.devices import get_backend

            self._backend = get_backend(self.settings.device)
        return self._backend

    @property
    def data(self):
        """The host :class:`xpnet.data.Dataset` (smaller with --quick).

        Its arrays are mapped read-only from this machine's cache file, shared by every
        process that maps it: a process holds no copy of its own, and pages it never
        reads (the client's, when workers train) cost it nothing.
        """
        if self._data is None:
            from xpnet.data import load_cifar10

            self._data = load_cifar10(self.settings.data_dir, download=self.settings.download,
                                      progress=self.settings.progress, cache=True,
                                      **data_options(self.settings.quick))
        return self._data

    def split(self, name: str) -> DeviceSplit:
        """``"train"``, ``"val"`` or ``"test"`` on the device (float32)."""
        if self._splits is None:
            d = self.data
            self._splits = {
                s: DeviceSplit.from_host(self.backend, getattr(d, f"X_{s}"),
                                         getattr(d, f"y_{s}"), d.n_classes, "float32")
                for s in ("train", "val", "test")}
        return self._splits[name]

    def data_sizes(self) -> dict:
        """Split sizes and a fingerprint of the training statistics.

        Part of every run's spec, so a folder resumed with other data (another
        --data-dir of the same size) retrains instead of reusing stale runs, and a
        worker with other data than the client refuses to compute.
        """
        d = self.data
        stats = hashlib.sha256(np.ascontiguousarray(d.mean, dtype=np.float64).tobytes()
                               + np.ascontiguousarray(d.std, dtype=np.float64).tobytes())
        return {"train": len(d.y_train), "val": len(d.y_val), "test": len(d.y_test),
                "train_stats": stats.hexdigest()[:16]}


_ENVS: dict[DataSettings, RunEnv] = {}


def env_for(settings: DataSettings) -> RunEnv:
    """This process's :class:`RunEnv` for ``settings`` (one per process and settings)."""
    if settings not in _ENVS:
        _ENVS[settings] = RunEnv(settings)
    return _ENVS[settings]


def warm_up(settings: DataSettings) -> None:
    """Load this process's data now (a worker's first task, see ``DaskExecutor.warm_up``)."""
    try:
        env_for(settings).data_sizes()
    except Exception:  # the runs that need the data will say what is wrong
        pass


# ------------------------------------------------------------------- the task
def execute(fn, spec: dict, settings: DataSettings, run: str, publish=None,
            checkpoint: tuple | None = None, start_from: bytes | None = None) -> dict:
    """Compute one run (or one group of a split run) wherever this is called.

    Checks that this process sees the same data as the client, then returns
    ``fn(env, spec, callbacks)`` as JSON-able values.  Progress events go to the Dask
    event topic on a worker, else to ``publish(event)`` when given (in-process runs).
    ``checkpoint``: ``(part key, seconds)``: a training run (``fn`` is
    :func:`train_and_test`) saves its state at record points at most that often
    (:mod:`experiments.suite.checkpoints`), going on from ``start_from`` (a checkpoint's
    bytes) if given.
    """
    env = env_for(settings)
    worker = dask_worker()
    if worker is not None:
        publish = functools.partial(worker.log_event, PROGRESS_TOPIC)
    try:
        if "data" in spec and env.data_sizes() != spec["data"]:
            raise DataError(f"it holds other CIFAR-10 data than the client "
                            f"({settings.data_dir or 'default location'})")
    except (DataError, OSError) as exc:
        if worker is None:
            raise
        raise DataError(f"Worker {worker.name} ({worker.address}) cannot use the data at "
                        f"{settings.data_dir or 'its default location'}: {exc}; put "
                        "CIFAR-10 at that path on every worker machine, or pass --download."
                        ) from None
    start = time.perf_counter()
    error = None
    callbacks = [ProgressEvents(run, publish)]
    slot = None
    if checkpoint is not None and fn is train_and_test:
        slot = Slot(checkpoint[0], start_from, publish, run,
                    worker=None if worker is None else worker.address)
    try:
        with np.errstate(all="ignore"):  # a diverging model overflows by design
            if slot is None:
                record = fn(env, spec, callbacks)
            else:
                record = train_and_test(env, spec, callbacks, checkpoint=slot,
                                        checkpoint_every=checkpoint[1])
        env.backend.synchronize()
    except Exception as exc:
        if worker is None:
            raise
        error = _portable(exc, getattr(fn, "filename", None))
    finally:
        if slot is not None:
            slot.remove()  # a checkpoint the client has not fetched is of no use now
    if error is not None:  # raised here, it has no __context__ for Dask to send along
        raise error
    record = to_jsonable(record)
    record["compute_s"] = round(time.perf_counter() - start, 3)
    device = env.backend.describe()
    if "gpu" in device:  # which GPU of which machine: one worker per GPU shows here
        record["gpu"] = {**device, "host": platform.node()}
    return record


class ByValue:
    """A run function from a module that workers cannot import (a study file), carried
    as cloudpickle's bytes: Dask pickles a task's arguments by reference unless the
    task itself comes from such a module, so the function travels inside this.

    ``filename`` is the function's file: cloudpickle names it ``<dynamic-code>`` in the
    copy a worker runs (see ``_portable``).  In this process the function itself runs.
    """

    def __init__(self, fn):
        import cloudpickle

        self.name = getattr(fn, "__qualname__", repr(fn))
        self.filename = getattr(getattr(fn, "__code__", None), "co_filename", None)
        self.payload = cloudpickle.dumps(fn)
        self._fn = fn

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fn": None}  # the payload travels, not the function

    def __call__(self, *args):
        import cloudpickle

        return (self._fn or cloudpickle.loads(self.payload))(*args)


def portable(fn):
    """``fn``, wrapped in :class:`ByValue` when its module is registered to be pickled by
    value (see :func:`experiments.studies.load_study_file`)."""
    try:
        import cloudpickle
    except ImportError:  # no Dask: runs stay in this process
        return fn
    by_value = cloudpickle.list_registry_pickle_by_value()
    return ByValue(fn) if getattr(fn, "__module__", None) in by_value else fn


def probe_device(device: str) -> dict:
    """What this process computes ``--device`` on, run by every process that trains.

    Returns :meth:`xpnet.backend.devices.Backend.describe` (the device flag; on a GPU its name
    and index), the CPU and the versions of the libraries that shape the numbers.
    Raises :class:`~xpnet.errors.BackendError` when this process cannot compute there.
    """
    from experiments.suite.store import library_versions
    from xpnet.backend.devices import get_backend

    info = get_backend(device).describe()
    return {**info, "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
            "versions": library_versions(device)}


class RunError(Exception):
    """A run raised on a worker: ``str()`` gives the original type, message and failing
    line; ``kind`` and ``detail`` are the type's name and the message, ``frames`` the
    worker's ``(file, line, function)`` (outermost first) and ``text`` its traceback.

    Everything is in ``args``, so any pickler that rebuilds an exception from its
    ``args`` (Dask's tblib does) rebuilds this one whole.
    """

    def __init__(self, kind: str, detail: str, frames=(), text: str = ""):
        super().__init__(kind, detail, [tuple(f) for f in frames], text)

    kind = property(lambda self: self.args[0])
    detail = property(lambda self: self.args[1])
    frames = property(lambda self: self.args[2])
    text = property(lambda self: self.args[3])

    def __str__(self) -> str:
        where = (f" (at {Path(self.frames[-1][0]).name}:{self.frames[-1][1]} in "
                 f"{self.frames[-1][2]})" if self.frames else "")
        return f"{self.kind}: {self.detail}{where}"


#: The file name cloudpickle gives the code of a function it pickled by value.
DYNAMIC_CODE = "<dynamic-code>"
#: At most this many frames, and characters of a worker's message and traceback, reach
#: the client (Dask sends an exception whose ``str()`` is longer than 10,000 as text).
MAX_FRAMES, MAX_DETAIL_CHARS, MAX_TRACEBACK_CHARS = 200, 2_000, 100_000


def _portable(exc: Exception, source: str | None = None) -> Exception:
    """``exc`` as an exception that crosses to the client with a one-frame traceback.

    A worker sends a task's traceback to the client; a deep one (a recursion, say) may
    not serialise, and the client would then never learn that the task failed.  The
    frames (a recursion's repeats once) and the text travel as plain data instead;
    ``source`` names the file of the run function's frames that cloudpickle made
    ``<dynamic-code>`` (a :class:`ByValue`'s).
    """
    if isinstance(exc, XpnetError):
        try:
            return type(exc)(str(exc))
        except TypeError:
            pass
    frames = []
    for f in traceback.extract_tb(exc.__traceback__):
        filename = source if source and f.filename == DYNAMIC_CODE else f.filename
        frame = (filename, f.lineno or 0, f.name)
        if not frames or frames[-1] != frame:
            frames.append(frame)
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if source:
        text = text.replace(f'File "{DYNAMIC_CODE}"', f'File "{source}"')
    return RunError(type(exc).__name__, str(exc)[:MAX_DETAIL_CHARS], frames[-MAX_FRAMES:],
                    text[-MAX_TRACEBACK_CHARS:])


def make_net(env: RunEnv, spec: dict) -> Network:
    """The run's freshly initialised Network of M models (float32, on ``env``'s backend)."""
    models = spec["models"]
    return Network.create(make_config(spec), seeds=models["seeds"], lam=models["lam"],
                          sigma=models.get("sigma"), device=env.backend,
                          **network_per_model(spec))


def train_and_test(env: RunEnv, spec: dict, callbacks, **checkpoint) -> dict:
    """Train one Network of M models as ``spec`` says and evaluate it on the test split.

    Returns ``history`` (metrics ``(n_points, M)``), ``test_accuracy``/``test_loss``
    ``(M,)`` (NaN for diverged models), ``diverged_step`` ``(M,)``,
    ``last_val_accuracy`` ``(M,)`` (the last finite value) and ``n_models``.

    With ``spec["halving"]`` the record still has one entry per model the run started
    with: the test figures of the models a rung dropped are NaN (only the survivors
    reach the test set), their ``last_val_accuracy`` is the one at their rung, and the
    history holds ``dropped_step``, ``dropped_reason`` and ``survivors``;
    ``model_steps`` counts the steps all models took together (M x steps without).
    ``checkpoint`` (``checkpoint=``, ``checkpoint_every=``): :func:`xpnet.training.train`'s.
    """
    return fit_and_test(env, spec, make_net(env, spec), callbacks, **checkpoint)


def fit_and_test(env: RunEnv, spec: dict, net: Network, callbacks, **checkpoint) -> dict:
    """:func:`train_and_test` for a net already made by :func:`make_net` (callbacks may
    hold it, say to probe its activations at the record points)."""
    train_data = env.split("train").head(spec["n_train"])
    M = net.n_models
    history = train(net, make_schedule(spec["schedule"], spec["models"]), train_data,
                    env.split("val"), make_train_config(spec), progress=False,
                    callbacks=callbacks, halving=make_halving(spec), pbt=make_pbt(spec),
                    **checkpoint)
    test = env.split("test")
    result = net.evaluate(test.X, test.y, test.Y)
    survivors = np.arange(M) if history.survivors is None else history.survivors
    acc, loss = np.full(M, np.nan), np.full(M, np.nan)
    acc[survivors] = to_numpy(result["accuracy"]).astype(np.float64)
    loss[survivors] = to_numpy(result["loss"]).astype(np.float64)
    dead = history.diverged
    acc[dead] = np.nan
    loss[dead] = np.nan
    record = history.to_dict()
    if spec["models"].get("schedule"):  # per-model rates: a list per point, even for M = 1
        record["eta"] = [e if isinstance(e, list) else [e] for e in record["eta"]]
    ensemble = {} if not spec.get("ensemble") else {"ensemble_test_accuracy": ensemble_accuracy(
        net, test, history, survivors, spec["ensemble"])}
    return {"history": record, "test_accuracy": acc, "test_loss": loss, **ensemble,
            "diverged_step": history.diverged_step,
            "last_val_accuracy": history.last_finite("val_accuracy"),
            "n_models": M, **({} if history.survivors is None
                              else {"model_steps": model_steps(history)})}


def ensemble_accuracy(net: Network, test: DeviceSplit, history, survivors, k: int) -> float:
    """Test accuracy of the mean probabilities of the ``k`` models still in ``net`` with the
    best last validation accuracy (diverged ones never; NaN if every one diverged)."""
    val = history.last_finite("val_accuracy")
    val[history.diverged] = np.nan
    best = best_models(val, survivors, k)
    if best.size == 0:
        return float("nan")
    xp = net.xp
    rows = net.backend.asarray(np.searchsorted(np.asarray(survivors), best))
    scores, _ = net.forward(test.X, train=False)
    exp = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
    proba = xp.mean(xp.take(exp / xp.sum(exp, axis=-1, keepdims=True), rows, axis=0), axis=0)
    return float(np.mean(to_numpy(xp.argmax(proba, axis=-1)) == to_numpy(test.y)))


def model_steps(history) -> int:
    """Training steps summed over the models: each model's steps up to where it was
    dropped (or the run stopped)."""
    stop = history.stopped_step
    dropped = history.dropped_step if history.dropped_step is not None else np.full(
        history.diverged_step.shape, -1)
    return int(np.where(dropped >= 0, dropped, stop).sum())
