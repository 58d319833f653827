"""The training loop: mini-batch SGD or Adam over a schedule, for M models in lockstep.

Read top to bottom: move the data to the device once; per epoch send over the batch
order (drawn on the host, one epoch ahead, in a background thread); per step gather
the batch on the device, compute gradients, update.  Nothing in the step reads a value
back to the host: divergence is tracked on the device (a model whose batch loss is
non-finite, or absurdly large, stops updating and its step is kept), and metrics are
gathered only at a fixed number of record points per cycle.  What a run records
(:class:`~xpnet.history.History`) and its hooks (:class:`~xpnet.history.Callback`)
live in :mod:`xpnet.history`, re-exported here.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses

import numpy as np

from xpnet import dropout, l2
from xpnet.backend import to_numpy
from xpnet.errors import XpnetError
from xpnet.halving import Halving
from xpnet.history import Callback, History, ProgressBar  # noqa: F401  (re-exported)
from xpnet.liveness import Liveness
from xpnet.network import Network, one_hot
from xpnet.optim import OPTIMIZERS, SGD, Adam, AdamW
from xpnet.schedules import resolve as resolve_schedule
from xpnet.step_rates import StepRates

METRICS = ("loss", "cost", "accuracy")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How :func:`train` runs, besides the schedule.

    Attributes:
        batch_size: samples per step; an epoch is ``N // batch_size`` steps.
        momentum: SGD momentum in [0, 1) (``torch.optim.SGD`` semantics), one value or
            one per model: shorthand for ``optimizer=SGD(momentum)``.
        evals_per_cycle: record points per schedule cycle (plus one before training).
        train_eval_size: training metrics use the first this-many training samples
            (None: all); keeps recording cheap on 45,000 images.
        divergence_loss: a model whose batch loss is non-finite or above this is marked
            diverged at that step and stops updating.  A cross-entropy of 1e4 means the
            true class scores 1e4 below the best one: such a model is not training, even
            if float32 has not overflowed yet (say, weights drawn with sigma = 10).
        optimizer: the options of :mod:`xpnet.optim` (``Adam(...)``, ``AdamW(...)``);
            None is SGD with ``momentum``.  ``SGD(momentum=m)`` is stored as
            ``momentum=m`` with None here, so both spellings are one config.
    """

    batch_size: int = 100
    momentum: float | tuple[float, ...] = 0.0
    evals_per_cycle: int = 10
    train_eval_size: int | None = 10000
    divergence_loss: float = 1e4
    optimizer: SGD | Adam | AdamW | None = None

    def __post_init__(self):
        opt = self.optimizer
        if opt is not None and type(opt) not in OPTIMIZERS.values():
            raise XpnetError(f"optimizer must be one of xpnet.optim's {', '.join(OPTIMIZERS)} "
                             f"(say Adam()), got {type(opt).__name__}.")
        momentum = SGD(self.momentum).momentum  # checked: a float or one per model
        if type(opt) is SGD:
            if momentum != 0.0 and momentum != opt.momentum:
                raise XpnetError("Give SGD's momentum once, as momentum= or as "
                                 "optimizer=SGD(momentum=...).")
            momentum, opt = opt.momentum, None
        elif opt is not None and momentum != 0.0:
            raise XpnetError(f"momentum is SGD's option; {type(opt).__name__} takes beta1 "
                             "instead, so leave momentum at 0.")
        object.__setattr__(self, "momentum", momentum)
        object.__setattr__(self, "optimizer", opt)
        for name in ("batch_size", "evals_per_cycle"):
            if int(getattr(self, name)) < 1:
                raise XpnetError(f"{name} must be at least 1, got {getattr(self, name)!r}.")
        if self.train_eval_size is not None and self.train_eval_size < 1:
            raise XpnetError("train_eval_size must be None or at least 1.")
        if not self.divergence_loss > 0:
            raise XpnetError("divergence_loss must be positive.")

    @property
    def resolved_optimizer(self) -> SGD | Adam | AdamW:
        """The optimizer's options: ``optimizer``, or ``SGD(momentum)`` when it is None."""
        return SGD(self.momentum) if self.optimizer is None else self.optimizer


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
          progress: bool = True, desc: str = "train", halving: Halving | None = None
          ) -> History:
    """Train ``net`` (all its M models) in place and return its :class:`History`.

    Args:
        schedule: a schedule from :mod:`xpnet.schedules` (``rates()`` ``(T,)`` or
            ``(T, M)``, ``cycle_length``); lengths in epochs are resolved here, an epoch
            being ``train_data.size // batch_size`` steps.
        train_data, val_data: :class:`DeviceSplit` on the net's backend.
        config: a :class:`TrainConfig` (batch size, momentum, record points, ...).
        shuffle_seeds: per-model seeds for batch orders; default ``net.seeds``.
        callbacks: :class:`Callback` objects; ``progress=True`` adds a :class:`ProgressBar`.
        halving: a :class:`~xpnet.halving.Halving` schedule: at its rungs the losing
            models leave ``net`` (which ends with ``len(history.survivors)`` models).
    """
    config = config or TrainConfig()
    xp = net.xp
    M = M0 = net.n_models
    N = train_data.size
    B = config.batch_size
    steps_per_epoch = N // B
    if steps_per_epoch < 1:
        raise XpnetError(f"batch_size {B} is larger than the {N} training samples.")
    schedule = resolve_schedule(schedule, steps_per_epoch)
    rates = per_model_rates(schedule, M)
    total = rates.shape[0]
    record_at = record_steps(total, schedule.cycle_length, config.evals_per_cycle)
    rungs = [] if halving is None else halving.rung_steps(record_at, steps_per_epoch)
    if halving is not None:
        halving.check_models(M)
        if halving.metric.startswith("val_") and val_data is None:
            raise XpnetError(f"Halving by {halving.metric} needs validation data; pass "
                             "val_data or rank by a train_ metric.")
    seeds = list(shuffle_seeds if shuffle_seeds is not None else (net.seeds or [0]))
    train_eval = train_data if config.train_eval_size is None else train_data.head(
        config.train_eval_size)
    callbacks = [*callbacks, *([ProgressBar(desc)] if progress else [])]
    drop_rates = dropout.rates(net)  # None when no model drops units: no masks at all

    def epoch_inputs(seeds, drop_rates, epoch):
        """Host batch orders, ``(steps * B,)`` shared or ``(steps, M, B)`` (each step's
        indices contiguous: no copy to gather them), and dropout keep-masks
        ``(steps, M, B, D)`` (or None)."""
        kept = None if drop_rates is None else dropout.keep_masks(
            seeds, drop_rates, (steps_per_epoch, B, sum(net.config.hidden)), epoch)
        order = batch_orders(seeds, N, epoch)[..., :steps_per_epoch * B]
        if order.ndim == 2:
            order = np.ascontiguousarray(
                order.reshape(order.shape[0], steps_per_epoch, B).transpose(1, 0, 2))
        return order, kept

    optimizer = config.resolved_optimizer.build(net)
    liveness = Liveness(net)
    step_rates = StepRates(rates, batch_size=B, prescaled=optimizer.prescaled,
                           decay=None if optimizer.decay is None
                           else l2.gradient_factor(net.lam_host),
                           backend=net.backend, dtype=net.dtype)
    history = History()
    ids = np.arange(M0)  # the original index of each model still in the net
    diverged_all = np.full(M0, -1, dtype=np.int64)
    if halving is not None:
        history.dropped_step = np.full(M0, -1, dtype=np.int64)
        history.dropped_reason = [""] * M0
    diverged_now = np.full(M0, -1, dtype=np.int64)  # host copy, from the last record

    def record(step) -> bool:
        """Record metrics; True when every model has diverged (nothing left to train)."""
        nonlocal diverged_now
        values = _measure(net, train_eval, val_data)
        diverged_now = to_numpy(liveness.diverged_step())
        dead = diverged_now >= 0
        full = {}
        for key, v in values.items():
            v[dead] = np.nan
            full[key] = np.full(M0, np.nan)
            full[key][ids] = v
        history.record(step, step / steps_per_epoch, rates[min(step, total - 1)], full)
        for cb in callbacks:
            cb.on_record(step, history)
        return bool(dead.all())

    for cb in callbacks:
        cb.on_train_begin(total, M)
    record(0)
    history.stopped_step = total
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ahead:
        next_inputs = ahead.submit(epoch_inputs, seeds, drop_rates, 0)
        for t in range(total):
            epoch, j = divmod(t, steps_per_epoch)
            if j == 0:
                order, kept = next_inputs.result()
                order = net.backend.asarray(order)
                if kept is not None:  # one upload per epoch, as booleans
                    kept = net.backend.asarray(kept)
                next_inputs = ahead.submit(epoch_inputs, seeds, drop_rates, epoch + 1)
                step_rates.start_epoch(t, steps_per_epoch)  # small uploads, once per epoch
                liveness.start_epoch(t, steps_per_epoch)
            for cb in callbacks:
                cb.on_step_begin(t)
            idx = order[j, ...] if order.ndim == 3 else order[j * B:(j + 1) * B]
            Xb = gather(xp, train_data.X, idx, M)
            Yb = gather(xp, train_data.Y, idx, M)
            # Zero for stopped models: eta, or for SGD without momentum -eta / B (the
            # backward pass then yields ready-made updates) and the decay factor.
            rate, shrink = step_rates.at(j, liveness.live)
            masks = None if kept is None else dropout.device_masks(net, kept[j, ...])
            if not optimizer.prescaled:
                loss, grads = net.loss_and_data_gradients(Xb, Yb, masks=masks)
                optimizer.step(net.params, grads, rate, flat=net.flat_params)
            else:
                loss, updates = net.loss_and_data_gradients(Xb, Yb, score_factor=rate,
                                                            masks=masks)
                optimizer.step_prescaled(net.params, updates, shrink=shrink,
                                         flat=net.flat_params)

            # A non-finite loss is a non-finite cost (the L2 term is finite while W is).
            # The failing step's update may leave non-finite weights: they are no longer
            # meaningful, and the model's recorded figures stop at its last finite ones.
            liveness.observe(loss, config.divergence_loss, j)
            for cb in callbacks:
                cb.on_step_end(t)
            if t + 1 in record_at and record(t + 1):
                history.stopped_step = t + 1  # every model diverged: stop paying for it
                break
            if t + 1 not in rungs:
                continue
            # A halving rung, at a record point: the metric is already on the host.
            scores = history.metrics[halving.metric][-1, ids]
            keep = halving.select(scores)
            if keep.size == M:
                continue
            rung = rungs.index(t + 1) + 1
            for pos in np.setdiff1d(np.arange(M), keep):
                history.dropped_step[ids[pos]] = t + 1
                history.dropped_reason[ids[pos]] = halving.reason(scores, int(pos), rung, t + 1)
                diverged_all[ids[pos]] = diverged_now[pos]
            index = net.backend.asarray(keep)
            net.take_models(keep)
            optimizer.take_models(keep)
            liveness.take(index)
            step_rates.take(keep, index)
            if order.ndim == 3:
                order = xp.take(order, index, axis=1)
            if kept is not None:  # this epoch's masks of the kept models
                kept = xp.take(kept, index, axis=1)
            renew = drop_rates is not None
            drop_rates = dropout.rates(net)  # the kept models' rates
            if drop_rates is None:
                kept = None
            if len(seeds) == M:  # per-model batch orders and masks: the kept ones'
                seeds = [seeds[i] for i in keep]
                renew = True
            if renew:  # the next epoch's orders and masks, for the kept models
                next_inputs.cancel()
                next_inputs = ahead.submit(epoch_inputs, seeds, drop_rates, epoch + 1)
            ids, M = ids[keep], int(keep.size)
            for cb in callbacks:
                cb.on_models_dropped(t + 1, ids.copy())
        next_inputs.cancel()
    diverged_all[ids] = to_numpy(liveness.diverged_step()).astype(np.int64)
    history.diverged_step = diverged_all
    if halving is not None:
        history.survivors = ids.copy()
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
