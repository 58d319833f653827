"""Runs as pure functions of their specs, and what they see on whichever process runs them.

A run is a top-level function ``fn(env, spec, callbacks) -> record`` whose result
depends only on ``spec`` (a JSON-able dict: configs, per-model seeds and values) and on
the data, so it can execute in the client process or on any Dask worker.  ``env`` is a
:class:`RunEnv`, loaded once per process and cached: the CIFAR-10 data, its device
copies and the backend.  :func:`execute` is the task every executor runs.

Per-model values live under ``spec["models"]`` (lists of length M), so a run of M
lockstep models can be split into smaller groups (:func:`split_spec`) whose records merge
back into the record of the whole (:func:`merge_records`): each model's numbers depend
only on its own seed and values.  Besides ``seeds``, ``lam`` and ``sigma`` these may be
``eps`` (batch norm's epsilon), ``momentum``, and ``schedule``: a dict of the schedule's
per-model fields (say ``{"eta": [...]}``), which are then absent from ``spec["schedule"]``
(as per-model momentum is from ``spec["train"]``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from xpnet import Network, NetworkConfig, TrainConfig, to_numpy
from xpnet import schedules as _schedules
from xpnet.codec import to_jsonable
from xpnet.errors import DataError, XpnetError
from xpnet.training import Callback, DeviceSplit, record_steps, train

#: In-process runs report progress to this handler (set by the in-process executor).
LOCAL_PROGRESS_HANDLER = None
#: Progress events per training run (plus its start and end).
PROGRESS_EVENTS = 40


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Where a process finds the data and which device it trains on."""

    data_dir: str | None
    download: bool = False
    quick: bool = False
    device: str = "cpu"
    progress: bool = False  # download progress bars (in the client process only)


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
            from xpnet.backend import get_backend

            self._backend = get_backend(self.settings.device)
        return self._backend

    @property
    def data(self):
        """The host :class:`xpnet.data.Dataset` (smaller with --quick)."""
        if self._data is None:
            from xpnet.data import load_cifar10

            kwargs = dict(limit=1000, n_val=500) if self.settings.quick else dict(n_val=5000)
            self._data = load_cifar10(self.settings.data_dir, download=self.settings.download,
                                      progress=self.settings.progress, **kwargs)
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


# -------------------------------------------------------------------- progress
def _dask_worker():
    """The Dask worker running this code, or None (in-process)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


def emit_progress(message: dict) -> None:
    """Send one progress event to the client: directly, or on the Dask event topic."""
    worker = _dask_worker()
    if worker is not None:
        from experiments.suite.executor import PROGRESS_TOPIC

        worker.log_event(PROGRESS_TOPIC, message)
    elif LOCAL_PROGRESS_HANDLER is not None:
        LOCAL_PROGRESS_HANDLER(message)


class ProgressEvents(Callback):
    """Publishes a run's step count a few dozen times per training (never per step)."""

    def __init__(self, run: str):
        self.run = run
        self.every = 1

    def on_train_begin(self, total_steps, n_models):
        self.every = max(1, total_steps // PROGRESS_EVENTS)
        emit_progress({"run": self.run, "event": "start", "total": total_steps})

    def on_step_end(self, step):
        if (step + 1) % self.every == 0:
            emit_progress({"run": self.run, "event": "step", "step": step + 1})

    def on_train_end(self, history):
        emit_progress({"run": self.run, "event": "step", "step": history.stopped_step})


# ------------------------------------------------------------------- the task
def execute(fn, spec: dict, settings: DataSettings, run: str) -> dict:
    """Compute one run (or one group of a split run) wherever this is called.

    Checks that this process sees the same data as the client, then returns
    ``fn(env, spec, callbacks)`` as JSON-able values.
    """
    env = env_for(settings)
    worker = _dask_worker()
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
    try:
        with np.errstate(all="ignore"):  # a diverging model overflows by design
            record = fn(env, spec, [ProgressEvents(run)])
        env.backend.synchronize()
    except Exception as exc:
        if worker is None:
            raise
        raise _portable(exc) from None
    record = to_jsonable(record)
    record["compute_s"] = round(time.perf_counter() - start, 3)
    device = env.backend.describe()
    if "gpu" in device:  # which GPU of which machine: one worker per GPU shows here
        record["gpu"] = {**device, "host": platform.node()}
    return record


def probe_device(device: str) -> dict:
    """What this process computes ``--device`` on, run by every process that trains.

    Returns :meth:`xpnet.backend.Backend.describe` (the device flag; on a GPU its name
    and index), the CPU and the versions of the libraries that shape the numbers.
    Raises :class:`~xpnet.errors.BackendError` when this process cannot compute there.
    """
    from experiments.suite.store import library_versions
    from xpnet.backend import get_backend

    info = get_backend(device).describe()
    return {**info, "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
            "versions": library_versions(device)}


class RunError(Exception):
    """A run raised on a worker; carries the original type, message and failing line."""


def _portable(exc: Exception) -> Exception:
    """``exc`` as an exception that crosses to the client with a one-frame traceback.

    A worker sends a task's traceback to the client; a deep one (a recursion, say) may
    not serialise, and the client would then never learn that the task failed.
    """
    if isinstance(exc, XpnetError):
        try:
            return type(exc)(str(exc))
        except TypeError:
            pass
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" \
        if frames else ""
    return RunError(f"{type(exc).__name__}: {exc}{where}")


def _tuples(fields: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def make_schedule(spec: dict, models: dict | None = None):
    """The schedule a spec's ``{"type": name, **fields}`` describes.

    ``models`` is the run's ``spec["models"]``: its ``"schedule"`` entry, if any, holds
    the per-model fields.
    """
    fields = {**spec, **((models or {}).get("schedule") or {})}
    cls = getattr(_schedules, fields.pop("type"))
    return cls(**_tuples(fields))


def make_train_config(spec: dict) -> TrainConfig:
    """The run's :class:`TrainConfig`, per-model momentum included."""
    fields = dict(spec["train"])
    if spec["models"].get("momentum") is not None:
        fields["momentum"] = spec["models"]["momentum"]
    return TrainConfig(**_tuples(fields))


#: Seconds per unit of :func:`estimated_seconds`' three terms, fitted to the suite's 22
#: training runs timed in one process on a 2-core x86-64 machine (the 21 that took half
#: a minute or more are estimated within 0.75-1.4x of their times): a sample through one
#: weight in training (forward and backward), a layer's Python and NumPy calls per step
#: (shared by the M models), and a sample through one weight when the history is measured.
COST_PER_TRAIN_MAC = 1.4e-10
COST_PER_LAYER_STEP = 6e-5
COST_PER_EVAL_MAC = 1.9e-11


def estimated_seconds(spec: dict) -> float:
    """Rough one-core CPU seconds of a training run, to start the longest runs first.

    Counts what the run does: ``M * steps * batch`` samples through the network's
    weights, ``steps * layers`` rounds of per-layer calls, and at each record point
    ``M * (training-eval + validation images)`` through the weights.  Only the order
    of the estimates matters (see ``Context.priority``), not their scale.
    """
    config, train_fields = spec["config"], spec["train"]
    dims = [config["d_in"], *config["hidden"], config["n_classes"]]
    macs = sum(a * b for a, b in zip(dims, dims[1:]))
    schedule = make_schedule(spec["schedule"], spec["models"])
    steps = schedule.total_steps
    records = len(record_steps(steps, schedule.cycle_length,
                               train_fields["evals_per_cycle"])) + 1  # and step 0
    eval_rows = (min(train_fields["train_eval_size"] or spec["n_train"], spec["n_train"])
                 + spec["data"]["val"])
    M = n_models(spec)
    return (COST_PER_TRAIN_MAC * M * steps * train_fields["batch_size"] * macs
            + COST_PER_LAYER_STEP * steps * (len(dims) - 1)
            + COST_PER_EVAL_MAC * M * records * eval_rows * macs)


def make_net(env: RunEnv, spec: dict) -> Network:
    """The run's freshly initialised Network of M models (float32, on ``env``'s backend)."""
    models = spec["models"]
    return Network.create(NetworkConfig(**spec["config"]), seeds=models["seeds"],
                          lam=models["lam"], sigma=models.get("sigma"),
                          bn_eps=models.get("eps"), device=env.backend)


def train_and_test(env: RunEnv, spec: dict, callbacks) -> dict:
    """Train one Network of M models as ``spec`` says and evaluate it on the test split.

    Returns ``history`` (metrics ``(n_points, M)``), ``test_accuracy``/``test_loss``
    ``(M,)`` (NaN for diverged models), ``diverged_step`` ``(M,)``,
    ``last_val_accuracy`` ``(M,)`` (the last finite value) and ``n_models``.
    """
    return fit_and_test(env, spec, make_net(env, spec), callbacks)


def fit_and_test(env: RunEnv, spec: dict, net: Network, callbacks) -> dict:
    """:func:`train_and_test` for a net already made by :func:`make_net` (callbacks may
    hold it, say to probe its activations at the record points)."""
    train_data = env.split("train").head(spec["n_train"])
    history = train(net, make_schedule(spec["schedule"], spec["models"]), train_data,
                    env.split("val"), make_train_config(spec), progress=False,
                    callbacks=callbacks)
    test = env.split("test")
    result = net.evaluate(test.X, test.y, test.Y)
    dead = history.diverged
    acc = to_numpy(result["accuracy"]).astype(np.float64)
    loss = to_numpy(result["loss"]).astype(np.float64)
    acc[dead] = np.nan
    loss[dead] = np.nan
    record = history.to_dict()
    if spec["models"].get("schedule"):  # per-model rates: a list per point, even for M = 1
        record["eta"] = [e if isinstance(e, list) else [e] for e in record["eta"]]
    return {"history": record, "test_accuracy": acc, "test_loss": loss,
            "diverged_step": history.diverged_step,
            "last_val_accuracy": history.last_finite("val_accuracy"),
            "n_models": net.n_models}


# ------------------------------------------------------------ split and merge
def n_models(spec: dict) -> int:
    return len(spec["models"]["seeds"])


def split_spec(spec: dict, groups: int) -> list[dict]:
    """``spec`` cut into at most ``groups`` specs of consecutive models (sizes differ by <= 1).

    Every list under ``spec["models"]`` is sliced, those in nested dicts (the per-model
    schedule fields) too.
    """
    M = n_models(spec)
    bounds = np.linspace(0, M, min(groups, M) + 1).round().astype(int)

    def cut(value, lo, hi):
        if isinstance(value, dict):
            return {k: cut(v, lo, hi) for k, v in value.items()}
        return None if value is None else list(value)[lo:hi]

    return [{**spec, "models": cut(spec["models"], lo, hi)}
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def merge_records(parts: list[dict]) -> dict:
    """One run's record from the records of its model groups, in model order.

    A group that stopped early (all its models diverged) has fewer record points; its
    missing points are NaN, as they would be in the unsplit run.
    """
    longest = max(parts, key=lambda p: len(p["history"]["steps"]))
    n_points = len(longest["history"]["steps"])

    def padded(rows, width):
        rows = list(rows)
        return rows + [[None] * width for _ in range(n_points - len(rows))]

    metrics = {}
    for key in longest["history"]["metrics"]:
        blocks = [padded(p["history"]["metrics"][key], p["n_models"]) for p in parts]
        metrics[key] = [sum((b[i] for b in blocks), []) for i in range(n_points)]
    history = dict(longest["history"], metrics=metrics,
                   diverged_step=sum((p["history"]["diverged_step"] for p in parts), []),
                   stopped_step=max(p["history"].get("stopped_step") or 0 for p in parts))
    if any(isinstance(e, list) for p in parts for e in p["history"]["eta"]):  # per-model
        etas = [padded([e if isinstance(e, list) else [e] * p["n_models"]
                        for e in p["history"]["eta"]], p["n_models"]) for p in parts]
        history["eta"] = [sum((e[i] for e in etas), []) for i in range(n_points)]
    merged = {"history": history, "n_models": sum(p["n_models"] for p in parts),
              "compute_s": round(sum(p.get("compute_s", 0.0) for p in parts), 3)}
    gpus = [p["gpu"] for p in parts if "gpu" in p]
    if gpus:  # runs on GPUs are not split, but a record says where each part ran
        merged["gpu"] = gpus[0] if len(gpus) == 1 else gpus
    for key in ("test_accuracy", "test_loss", "diverged_step", "last_val_accuracy"):
        merged[key] = sum((list(p[key]) for p in parts), [])
    return merged
