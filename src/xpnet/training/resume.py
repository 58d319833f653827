"""Run checkpoints: a :class:`~xpnet.training.loop.TrainingRun`'s whole state at a record
point, saved without pickle, and a run resumed from it to the same numbers, bit for bit.

``train(..., checkpoint=PATH)`` saves the run at its record points, at most every
``checkpoint_every`` seconds (:data:`EVERY_S` by default), atomically; run again with the
same ``PATH`` (a fresh network made as the first was), it goes on from the last save, and
once the run ends the file is removed.  A checkpoint is an ``.npz`` of host arrays:

- ``meta``: JSON: ``format``, ``signature`` (a hash of what makes the run this run: the
  network's config and initial weights, per-model values, the training options, the rate
  table, the population schedule, the data's sizes), ``t`` (steps done), ``ids`` (each
  model's history column), ``seeds`` (each model's batch-order and dropout seed),
  ``diverged_step`` (of models that left), ``own_rates`` and the ``history``
  (:meth:`History.to_dict <xpnet.training.history.History.to_dict>`);
- ``param/<name>``, ``buffer/<name>``: the network's arrays ``(M, ...)``, M the models
  still in the run (halving drops some);
- ``live`` ``(M,)`` bool and ``stamp`` ``(M,)``: which models still train
  (:mod:`xpnet.step.liveness`);
- ``lam``, ``option/<name>`` (the network's per-model options), ``rate_scale`` (if
  any): host float64 ``(M,)``; ``rates`` ``(T, M)`` when the models have rows of their own;
- ``opt/<name>``: the optimizer's state (:func:`xpnet.training.optim_state.state_dict`).

No random generator state is saved: batch orders and dropout masks are pure functions of
the seeds, the epoch and the dropout rates, so a resumed run draws them again from its
step ``t`` (its "RNG position"); a population schedule is stateless (its randomness comes
from its seed and the step).  Reading trusts nothing: :class:`xpnet.base.npz.NpzReader`,
every member's shape and dtype checked against the run, one
:class:`~xpnet.errors.CheckpointError` sentence for any problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time

import numpy as np

from xpnet.backend.devices import to_numpy
from xpnet.base.atomic import atomic_write
from xpnet.base.npz import NpzReader
from xpnet.errors import CheckpointError, OutputError, XpnetError
from xpnet.nn import options
from xpnet.training import optim_state
from xpnet.training.history import History
from xpnet.training.population import PopulationChange

#: Seconds between two saves of a run, by default: a stop loses at most this much work.
EVERY_S = 180.0
FORMAT = 1
KIND = "xpnet run checkpoint"
REMEDY = "delete it to start the run from step 0"
#: Largest ``meta`` member read, in characters (a long run's history of many models).
MAX_META = 64 << 20


# --------------------------------------------------------------------- the state
def signature(run) -> str:
    """A hash of what makes ``run`` (a :class:`TrainingRun` at step 0) the run it is."""
    net = run.net
    digest = hashlib.sha256()
    for name in sorted(net.params):
        digest.update(np.ascontiguousarray(to_numpy(net.params[name])).tobytes())
    digest.update(np.ascontiguousarray(run._rates).tobytes())
    population = run.population
    text = json.dumps({
        "config": net.config.to_dict(), "lam": net.lam_host.tolist(), "seeds": run.seeds,
        "per_model": {k: v.tolist() for k, v in net.per_model_host.items()},
        "train": dataclasses.asdict(run.config), "total": run.total,
        "population": None if population is None else [type(population).__name__,
                                                       dataclasses.asdict(population)],
        "data": [run.train_data.size, None if run.val_data is None else run.val_data.size],
        "dtype": str(net.dtype), "device": net.backend.flag}, sort_keys=True, default=str)
    digest.update(text.encode())
    return digest.hexdigest()[:24]


def capture(run, run_signature: str) -> dict[str, np.ndarray]:
    """``run``'s state at a record point as host arrays (see the module docstring); views of
    host arrays the next step changes: encode it (:func:`encode`) before stepping on."""
    net, opt = run.net, run.optimizer
    state = {f"param/{k}": to_numpy(v) for k, v in net.params.items()}
    state.update({f"buffer/{k}": to_numpy(v) for k, v in net.buffers.items()})
    state.update(live=to_numpy(run.liveness.live), stamp=to_numpy(run.liveness.stamp),
                 lam=net.lam_host)
    state.update({f"option/{k}": v for k, v in net.per_model_host.items()})
    if run.step_rates.scale is not None:
        state["rate_scale"] = run.step_rates.scale
    if run.step_rates.rates.ndim == 2:
        state["rates"] = run.step_rates.rates
    state.update({f"opt/{k}": v for k, v in opt.state_dict().items()})
    history = run.history.to_dict()
    meta = {"format": FORMAT, "kind": KIND, "signature": run_signature, "t": int(run.t),
            "ids": [int(i) for i in run.ids], "seeds": [int(s) for s in run.seeds],
            "diverged_step": run.diverged_step.tolist(), "own_rates": bool(run._own_rates),
            "history": history}
    state["meta"] = np.array(json.dumps(meta, allow_nan=False))
    return state


def encode(state: dict[str, np.ndarray]) -> bytes:
    """The ``.npz`` file of ``state`` as bytes (no pickle inside)."""
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    return buffer.getvalue()


# -------------------------------------------------------------------- restoring
def restore(run, source, run_signature: str, name: str = "the checkpoint") -> int:
    """Put ``run`` (a fresh :class:`TrainingRun`, at step 0) in the state a checkpoint
    holds; ``source`` is its path or its bytes (then ``name`` names it).  Returns the step
    it resumes at.  Raises :class:`CheckpointError` (one sentence), before changing
    ``run``, for a file that is not a checkpoint of this run or that is damaged."""
    data = source if isinstance(source, (bytes, bytearray)) else None
    label = name if data is not None else os.fspath(source)
    with NpzReader(label, REMEDY, KIND, data=None if data is None else bytes(data)) as f:
        meta = _meta(f)
        if meta.get("signature") != run_signature:
            raise CheckpointError(f"{label} is the checkpoint of another run (other options, "
                                  f"data or initial weights); {REMEDY}, or pass another path.")
        n_models = _check_meta(f, run, meta)
        arrays = {}
        for member, (shape, kinds) in _expected(run, n_models).items():
            if member not in f.names:
                if member.startswith(("rate_scale", "rates")):
                    continue
                raise f.error(member, "is missing")
            header = f.header(member)
            ok = header.shape == shape or (member.startswith("opt/") and header.shape == ()
                                            and len(shape) == 1)
            if not ok or header.dtype.kind not in kinds:
                raise f.error(member, f"has shape {header.shape} of {header.dtype}, not "
                              f"{shape} as this run needs")
            arrays[member] = f.read(member)
        extra = sorted(set(f.names) - set(arrays) - {"meta"})
        if extra:
            raise f.error(extra[0], "is not part of a run checkpoint")
    try:
        _apply(run, meta, arrays)
    except XpnetError as exc:
        raise CheckpointError(f"{label} cannot be resumed ({str(exc).rstrip('.')}); "
                              f"{REMEDY}.") from None
    return run.t


def _meta(f) -> dict:
    if "meta" not in f.names:
        raise f.error(None, "it has no 'meta' member")
    header = f.header("meta")
    if header.shape != () or header.dtype.kind != "U" or header.dtype.itemsize > 4 * MAX_META:
        raise f.error("meta", "is not a JSON text")
    try:
        meta = json.loads(str(f.read("meta")))
    except ValueError:
        raise f.error("meta", "is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND or meta.get("format") != FORMAT:
        raise f.error("meta", f"does not describe a format-{FORMAT} run checkpoint")
    return meta


def _check_meta(f, run, meta: dict) -> int:
    """The number of models the checkpoint holds, once its fields are known sound."""
    M0 = run.diverged_step.shape[0]
    ids, seeds = meta.get("ids"), meta.get("seeds")
    t, diverged = meta.get("t"), meta.get("diverged_step")
    sound = (_ints(ids) and _ints(seeds) and _ints(diverged) and isinstance(t, int)
             and 0 < len(ids) == len(seeds) and len(set(ids)) == len(ids)
             and all(0 <= i < M0 for i in ids) and len(diverged) == M0
             and 0 <= t < run.total and isinstance(meta.get("history"), dict))
    if not sound:
        raise f.error("meta", "holds fields that do not fit this run")
    return len(ids)


def _ints(v) -> bool:
    return isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)


def _expected(run, n_models: int) -> dict[str, tuple]:
    """``{member: (shape, dtype kinds)}`` of a checkpoint of ``run`` with ``n_models``."""
    net, M = run.net, n_models
    out = {f"param/{k}": ((M, *v.shape[1:]), "f") for k, v in net.params.items()}
    out.update({f"buffer/{k}": ((M, *v.shape[1:]), "f") for k, v in net.buffers.items()})
    out.update(live=((M,), "b"), stamp=((M,), "f"), lam=((M,), "f"), rate_scale=((M,), "f"))
    out.update({f"option/{k}": ((M,), "f") for k in net.per_model_host})
    if run.step_rates.rates.ndim == 2:
        out["rates"] = ((run.total, M), "f")
    out.update({f"opt/{k}": (shape, "iu" if k == "t" else "f")
                for k, shape in optim_state.expected(run.optimizer, M).items()})
    return out


def _apply(run, meta: dict, arrays: dict) -> None:
    """Give ``run`` the checkpoint's state: the model axis first (as a population change
    would), then every array."""
    net = run.net
    ids = np.asarray(meta["ids"], dtype=np.int64)
    history = _history(meta["history"])
    hyper = {"lam": arrays["lam"],
             **{k: arrays[f"option/{k}"] for k in net.per_model_host}}
    if "rate_scale" in arrays:
        hyper["rate_scale"] = arrays["rate_scale"]
    if not all(np.all(np.isfinite(v)) for v in hyper.values()) or np.any(hyper["lam"] < 0):
        raise XpnetError("its per-model values are not all finite and lam at least 0")
    fields = {f.name: f for f in dataclasses.fields(net.config)}
    for k in net.per_model_host:  # checked before anything changes
        options.check_field(fields[k], tuple(hyper[k].tolist()))
    run.apply(PopulationChange(ids, ids, hyper))
    backend, dtype = net.backend, net.dtype
    for store, prefix in ((net.params, "param/"), (net.buffers, "buffer/")):
        for k in store:
            store[k] = backend.asarray(arrays[prefix + k], dtype=dtype)
    net.lay_out_averages()
    net.lay_out_params()
    run.optimizer.load_state_dict({k[4:]: v for k, v in arrays.items() if k.startswith("opt/")})
    run.liveness.live = backend.asarray(arrays["live"])
    run.liveness.stamp = backend.asarray(arrays["stamp"], dtype=dtype)
    if "rates" in arrays:
        run.step_rates.rates = np.asarray(arrays["rates"], dtype=np.float64)
    run.t, run.ids, run.seeds = int(meta["t"]), ids, [int(s) for s in meta["seeds"]]
    run.diverged_step = np.asarray(meta["diverged_step"], dtype=np.int64)
    run.history, run._own_rates, run.stopped = history, bool(meta["own_rates"]), False
    run._inputs = None  # drawn again for the resumed step's epoch


def _history(d: dict) -> History:
    """:meth:`History.from_dict` of a history saved mid-run (no ``diverged_step`` yet)."""
    mid_run = d.get("diverged_step") is None
    try:
        history = History.from_dict({**d, "diverged_step": [] if mid_run else d["diverged_step"]})
    except (KeyError, TypeError, ValueError):
        raise XpnetError("its history is damaged") from None
    if mid_run:
        history.diverged_step = None
    return history


# ------------------------------------------------------------------ saving
class Saver:
    """Saves a run at its record points, at most every ``every`` seconds.

    ``write(data, step)`` receives each checkpoint as ``.npz`` bytes and the step it is
    at; ``run_signature`` is :func:`signature` of the run at step 0.
    """

    def __init__(self, write, every: float, run_signature: str, clock=time.monotonic):
        self.write, self.every, self.signature = write, float(every), run_signature
        self.clock = clock
        self.last = clock()
        #: Seconds spent saving (capturing, encoding, writing), for the cost of it.
        self.seconds = 0.0
        self.saves = 0

    def record_point(self, run) -> None:
        """Called by the run after each record point (and its population action)."""
        if self.every <= 0 or self.clock() - self.last < self.every:
            return
        start = time.perf_counter()
        self.write(encode(capture(run, self.signature)), run.t)
        self.seconds += time.perf_counter() - start
        self.saves += 1
        self.last = self.clock()


class CheckpointFile:
    """A checkpoint at a path: what :func:`run` reads, writes and removes."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise OutputError(f"{self.path} is a folder; pass a file path for the checkpoint, "
                              f"such as {os.path.join(self.path, 'run.npz')}.")

    def read(self):
        """The path, or None when no checkpoint is there."""
        return self.path if os.path.exists(self.path) else None

    def write(self, data: bytes, step: int) -> None:
        try:
            with atomic_write(self.path) as f:
                f.write(data)
        except OSError as exc:
            raise OutputError(f"The checkpoint {self.path} cannot be written "
                              f"({exc.strerror or exc}); free some space or pass a path "
                              "in a folder you can write to.") from None

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def run(training_run, checkpoint, every: float = EVERY_S, callbacks=()):
    """Run ``training_run`` (fresh, at step 0) to its end, resuming from ``checkpoint`` if
    it holds one, saving into it at record points at most every ``every`` seconds (0: never)
    and removing it once the run ends.

    ``checkpoint``: a path, or an object with ``read()`` (the checkpoint's path or bytes, or
    None), ``write(data, step)`` and ``remove()``, and optionally ``resumed(step)`` (told
    where the run goes on from) and ``refused(error)`` (then a checkpoint that cannot be
    used is not an error: the run starts from step 0).  The experiment suite passes such an
    object, which hands checkpoints to the output folder's one writer.  Returns the
    :class:`History`.
    """
    slot = checkpoint if hasattr(checkpoint, "write") else CheckpointFile(checkpoint)
    run_signature = signature(training_run)
    source = slot.read()
    if source is not None:
        try:
            step = restore(training_run, source, run_signature,
                           name=getattr(slot, "name", "the checkpoint"))
        except CheckpointError as exc:
            if not hasattr(slot, "refused"):
                raise
            slot.refused(exc)
        else:
            if hasattr(slot, "resumed"):
                slot.resumed(step)
    training_run.saver = Saver(slot.write, every, run_signature)
    history = training_run.run(callbacks)
    slot.remove()
    return history
