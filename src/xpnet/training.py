"""The training loop: mini-batch SGD over a schedule, for M models in lockstep.

Read top to bottom: move the data to the device once; per epoch send over the batch
order (drawn on the host, one epoch ahead, in a background thread); per step gather
the batch on the device, compute gradients, update.  Nothing in the step reads a value
back to the host: divergence is tracked on the device (a model whose batch loss is
non-finite, or absurdly large, stops updating and its step is kept), and metrics are
gathered only at a fixed number of record points per cycle.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses

import numpy as np

from xpnet import dropout, l2
from xpnet.backend import to_numpy
from xpnet.codec import to_float_array, to_jsonable
from xpnet.errors import XpnetError
from xpnet.network import Network, one_hot
from xpnet.optim import SGD
from xpnet.schedules import resolve as resolve_schedule

METRICS = ("loss", "cost", "accuracy")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How :func:`train` runs, besides the schedule.

    Attributes:
        batch_size: samples per step; an epoch is ``N // batch_size`` steps.
        momentum: SGD momentum in [0, 1) (``torch.optim.SGD`` semantics), one value or
            one per model.
        evals_per_cycle: record points per schedule cycle (plus one before training).
        train_eval_size: training metrics use the first this-many training samples
            (None: all); keeps recording cheap on 45,000 images.
        divergence_loss: a model whose batch loss is non-finite or above this is marked
            diverged at that step and stops updating.  A cross-entropy of 1e4 means the
            true class scores 1e4 below the best one: such a model is not training, even
            if float32 has not overflowed yet (say, weights drawn with sigma = 10).
    """

    batch_size: int = 100
    momentum: float | tuple[float, ...] = 0.0
    evals_per_cycle: int = 10
    train_eval_size: int | None = 10000
    divergence_loss: float = 1e4

    def __post_init__(self):
        mom = np.asarray(self.momentum, dtype=np.float64).reshape(-1)
        if mom.size == 0 or not np.all((mom >= 0) & (mom < 1)):
            raise XpnetError(f"momentum must be in [0, 1), got {self.momentum!r}.")
        object.__setattr__(self, "momentum",
                           float(mom[0]) if np.ndim(self.momentum) == 0 else tuple(mom.tolist()))
        for name in ("batch_size", "evals_per_cycle"):
            if int(getattr(self, name)) < 1:
                raise XpnetError(f"{name} must be at least 1, got {getattr(self, name)!r}.")
        if self.train_eval_size is not None and self.train_eval_size < 1:
            raise XpnetError("train_eval_size must be None or at least 1.")
        if not self.divergence_loss > 0:
            raise XpnetError("divergence_loss must be positive.")


@dataclasses.dataclass
class History:
    """Metrics recorded during training.

    ``steps`` and ``epochs`` have one entry per record point, ``eta`` the rate there (a
    float, or a list of M floats for per-model rates); ``metrics[key]`` is a host array
    ``(n_points, M)`` for keys like ``"train_loss"`` or ``"val_accuracy"`` (NaN once a
    model has diverged).  ``diverged_step`` is ``(M,)``, -1 for models that never
    diverged; ``stopped_step`` is where training ended (early once every model diverged).
    """

    steps: list = dataclasses.field(default_factory=list)
    epochs: list = dataclasses.field(default_factory=list)
    eta: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)
    diverged_step: np.ndarray | None = None
    stopped_step: int | None = None

    def record(self, step, epoch, eta, values: dict) -> None:
        self.steps.append(int(step))
        self.epochs.append(float(epoch))
        self.eta.append(np.asarray(eta, dtype=np.float64).tolist())
        for key, value in values.items():
            row = np.asarray(value, dtype=np.float64)[None, :]
            old = self.metrics.get(key)
            self.metrics[key] = row if old is None else np.concatenate([old, row])

    def last_finite(self, key: str) -> np.ndarray:
        """Per model, the last finite recorded value of ``key`` ``(M,)`` (NaN if none)."""
        values = self.metrics[key]
        out = np.full(values.shape[1], np.nan)
        for m in range(values.shape[1]):
            finite = values[np.isfinite(values[:, m]), m]
            if finite.size:
                out[m] = finite[-1]
        return out

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_step >= 0

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN written as None)."""
        return to_jsonable({"steps": self.steps, "epochs": self.epochs, "eta": self.eta,
                            "metrics": self.metrics, "diverged_step": self.diverged_step,
                            "stopped_step": self.stopped_step})

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(list(d["steps"]), list(d["epochs"]), list(d["eta"]),
                   {k: to_float_array(v) for k, v in d["metrics"].items()},
                   np.asarray(d["diverged_step"], dtype=np.int64), d.get("stopped_step"))


class Callback:
    """Hooks into :func:`train`; override any of them.

    None of them is handed a device array, so none can make the step wait for the
    device: ``on_step_begin``/``on_step_end`` bracket each step, ``on_record`` follows
    each record point (host metrics in ``history``).
    """

    def on_train_begin(self, total_steps: int, n_models: int) -> None: ...

    def on_step_begin(self, step: int) -> None: ...

    def on_step_end(self, step: int) -> None: ...

    def on_record(self, step: int, history: History) -> None: ...

    def on_train_end(self, history: History) -> None: ...


class ProgressBar(Callback):
    """A tqdm bar over the steps of one training run."""

    def __init__(self, desc: str = "train"):
        self.desc = desc
        self.bar = None

    def on_train_begin(self, total_steps, n_models):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_steps, desc=self.desc, leave=False, unit="step",
                        dynamic_ncols=True)

    def on_step_end(self, step):
        self.bar.update(1)

    def on_train_end(self, history):
        self.bar.close()


@dataclasses.dataclass
class DeviceSplit:
    """One data split on the device: ``X`` ``(N, d)``, labels ``y`` ``(N,)``, one-hot ``Y``."""

    X: object
    y: object
    Y: object

    @classmethod
    def from_host(cls, backend, X, y, n_classes, dtype) -> DeviceSplit:
        """Upload host inputs ``(N, d)`` and integer labels ``(N,)`` to ``backend``."""
        X = np.asarray(X)
        y = np.asarray(y, dtype=np.int64)
        split = cls(backend.asarray(X, dtype=dtype), backend.asarray(y),
                    backend.asarray(one_hot(y, n_classes), dtype=dtype))
        backend.release_staging()
        return split

    @property
    def size(self) -> int:
        return int(self.X.shape[0])

    def head(self, n: int) -> DeviceSplit:
        n = min(n, self.size)
        return DeviceSplit(self.X[:n, ...], self.y[:n], self.Y[:n, ...])


def batch_orders(seeds, n_samples: int, epoch: int) -> np.ndarray:
    """Host batch orders for one epoch: ``(n_samples,)`` if all seeds agree, else ``(M, n)``.

    Model m's order depends only on its seed and the epoch.  int32 when it fits (half
    the bytes to upload), else int64.
    """
    seeds = [int(s) for s in seeds]
    dtype = np.int32 if n_samples < 2**31 else np.int64
    if len(set(seeds)) == 1:
        return np.random.default_rng([seeds[0], epoch, 7]).permutation(n_samples).astype(dtype)
    return np.stack([np.random.default_rng([s, epoch, 7]).permutation(n_samples)
                     for s in seeds]).astype(dtype)


def gather(xp, data, idx, n_models: int):
    """Rows ``idx`` of ``data`` ``(N, k)``: ``(B, k)`` for ``idx`` ``(B,)``, else ``(M, B, k)``."""
    if idx.ndim == 1:
        return xp.take(data, idx, axis=0)
    flat = xp.take(data, xp.reshape(idx, (-1,)), axis=0)
    return xp.reshape(flat, (n_models, idx.shape[-1], data.shape[-1]))


def per_model_rates(schedule, n_models: int) -> np.ndarray:
    """The schedule's rates as ``(T,)`` (shared) or ``(T, M)`` (one column per model)."""
    rates = np.asarray(schedule.rates(), dtype=np.float64)
    if rates.ndim == 2 and rates.shape[1] == 1:
        rates = rates[:, 0]
    if rates.ndim == 2 and rates.shape[1] != n_models:
        raise XpnetError(f"The schedule has rates for {rates.shape[1]} models but the "
                         f"network has {n_models}; give one value per model or one for all.")
    return rates


def record_steps(total: int, cycle_length: int, evals_per_cycle: int) -> set[int]:
    """The steps (1..``total``) after which :func:`train` records the history: every
    ``cycle_length // evals_per_cycle`` steps and the last (step 0 is recorded too)."""
    every = max(1, cycle_length // evals_per_cycle)
    return set(range(every, total + 1, every)) | {total}


def train(net: Network, schedule, train_data: DeviceSplit, val_data: DeviceSplit | None = None,
          config: TrainConfig | None = None, *, shuffle_seeds=None, callbacks=(),
          progress: bool = True, desc: str = "train") -> History:
    """Train ``net`` (all its M models) in place and return its :class:`History`.

    Args:
        schedule: a schedule from :mod:`xpnet.schedules` (``rates()`` ``(T,)`` or
            ``(T, M)``, ``cycle_length``); lengths in epochs are resolved here, an epoch
            being ``train_data.size // batch_size`` steps.
        train_data, val_data: :class:`DeviceSplit` on the net's backend.
        config: a :class:`TrainConfig` (batch size, momentum, record points, ...).
        shuffle_seeds: per-model seeds for batch orders; default ``net.seeds``.
        callbacks: :class:`Callback` objects; ``progress=True`` adds a :class:`ProgressBar`.
    """
    config = config or TrainConfig()
    xp = net.xp
    M = net.n_models
    N = train_data.size
    B = config.batch_size
    steps_per_epoch = N // B
    if steps_per_epoch < 1:
        raise XpnetError(f"batch_size {B} is larger than the {N} training samples.")
    schedule = resolve_schedule(schedule, steps_per_epoch)
    rates = per_model_rates(schedule, M)
    total = rates.shape[0]
    record_at = record_steps(total, schedule.cycle_length, config.evals_per_cycle)
    seeds = shuffle_seeds if shuffle_seeds is not None else (net.seeds or [0])
    train_eval = train_data if config.train_eval_size is None else train_data.head(
        config.train_eval_size)
    callbacks = [*callbacks, *([ProgressBar(desc)] if progress else [])]
    drop_rates = dropout.rates(net)  # None when no model drops units: no masks at all

    def epoch_inputs(epoch):
        """Host batch order and dropout keep-masks ``(steps, M, B, D)`` (or None)."""
        keep = None if drop_rates is None else dropout.keep_masks(
            seeds, drop_rates, (steps_per_epoch, B, sum(net.config.hidden)), epoch)
        return batch_orders(seeds, N, epoch), keep

    # A writable copy: a read-only broadcast view would become a read-only device array
    # where the library shares host memory (PyTorch on the CPU warns about it).
    momentum = np.broadcast_to(np.asarray(config.momentum, dtype=np.float64), (M,)).copy()
    if np.all(momentum == momentum[0]):
        momentum = float(momentum[0])
    else:
        momentum = net.backend.asarray(momentum[:, None, None], dtype=net.dtype)
    optimizer = SGD(net.params, momentum, decay=net.decay,
                    decay_names=[name for name in net.params if l2.is_penalised(name)])
    alive = xp.ones((M,), dtype=xp.bool, device=net.backend.device)
    diverged_step = xp.full((M,), -1, dtype=xp.int64, device=net.backend.device)
    history = History()

    def record(step) -> bool:
        """Record metrics; True when every model has diverged (nothing left to train)."""
        values = _measure(net, train_eval, val_data)
        dead = to_numpy(diverged_step) >= 0
        for v in values.values():
            v[dead] = np.nan
        history.record(step, step / steps_per_epoch, rates[min(step, total - 1)], values)
        for cb in callbacks:
            cb.on_record(step, history)
        return bool(dead.all())

    for cb in callbacks:
        cb.on_train_begin(total, M)
    record(0)
    history.stopped_step = total
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ahead:
        next_inputs = ahead.submit(epoch_inputs, 0)
        for t in range(total):
            epoch, j = divmod(t, steps_per_epoch)
            if j == 0:
                order, keep = next_inputs.result()
                order = net.backend.asarray(order)
                if keep is not None:  # one upload per epoch, as booleans
                    keep = net.backend.asarray(keep)
                next_inputs = ahead.submit(epoch_inputs, epoch + 1)
                if rates.ndim == 2:  # one small upload per epoch: this epoch's (steps, M)
                    eta_table = net.backend.asarray(
                        rates[t:t + steps_per_epoch, :, None, None], dtype=net.dtype)
            for cb in callbacks:
                cb.on_step_begin(t)
            idx = order[..., j * B:(j + 1) * B]
            Xb = gather(xp, train_data.X, idx, M)
            Yb = gather(xp, train_data.Y, idx, M)
            # eta is zero for stopped models; without momentum it is folded into the
            # backward pass (see xpnet.backprop.loss_and_data_gradients).
            live = xp.astype(alive, net.dtype)[:, None, None]
            eta = (eta_table[j, ...] if rates.ndim == 2 else float(rates[t])) * live
            masks = None if keep is None else dropout.device_masks(net, keep[j, ...])
            if optimizer.velocity is not None:
                loss, grads = net.loss_and_data_gradients(Xb, Yb, masks=masks)
                optimizer.step(net.params, grads, eta)
            else:
                loss, updates = net.loss_and_data_gradients(Xb, Yb, scale=-eta, masks=masks)
                optimizer.step_prescaled(net.params, updates, eta)

            # A non-finite loss is a non-finite cost (the L2 term is finite while W is).
            # The failing step's update may leave non-finite weights: they are no longer
            # meaningful, and the model's recorded figures stop at its last finite ones.
            finite = loss <= config.divergence_loss  # False for NaN and inf too
            diverged_step = xp.where(alive & ~finite, t, diverged_step)
            alive = alive & finite
            for cb in callbacks:
                cb.on_step_end(t)
            if t + 1 in record_at and record(t + 1):
                history.stopped_step = t + 1  # every model diverged: stop paying for it
                break
        next_inputs.cancel()
    history.diverged_step = to_numpy(diverged_step).astype(np.int64)
    for cb in callbacks:
        cb.on_train_end(history)
    return history


def _measure(net: Network, train_eval: DeviceSplit, val_data: DeviceSplit | None) -> dict:
    """Eval-mode loss, cost and accuracy per model on each split, as host arrays ``(M,)``."""
    out = {}
    for split, data in (("train", train_eval), ("val", val_data)):
        if data is None:
            continue
        result = net.evaluate(data.X, data.y, data.Y)
        for key in METRICS:
            out[f"{split}_{key}"] = to_numpy(result[key]).astype(np.float64)
    return out
