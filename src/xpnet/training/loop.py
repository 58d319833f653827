"""The training loop: mini-batch SGD or Adam over a schedule, for M models in lockstep.

Read top to bottom: move the data to the device once; per epoch send over the batch
order (drawn on the host, one epoch ahead, in a background thread); per step gather
the batch on the device, compute gradients, update.  Nothing in the step reads a value
back to the host: divergence is tracked on the device (a model whose batch loss is
non-finite, or absurdly large, stops updating and its step is kept), and metrics are
gathered only at a fixed number of record points per cycle.  What a run records
(:class:`~xpnet.training.history.History`) and its hooks
(:class:`~xpnet.training.history.Callback`) live in :mod:`xpnet.training.history`; the
options in :mod:`xpnet.training.config`, the batches in :mod:`xpnet.training.batches`.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np

from xpnet.backend.devices import to_numpy
from xpnet.errors import XpnetError
from xpnet.network.network import Network
from xpnet.nn import dropout, l2
from xpnet.step.liveness import Liveness
from xpnet.step.rates import StepRates
from xpnet.training import resume
from xpnet.training.batches import DeviceSplit, batch_orders, gather
from xpnet.training.config import TrainConfig
from xpnet.training.history import Callback, History, ProgressBar  # noqa: F401  (re-exported)
from xpnet.training.population import PopulationChange, PopulationSchedule, PopulationView
from xpnet.training.schedules import resolve as resolve_schedule

METRICS = ("loss", "cost", "accuracy")


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
          progress: bool = True, desc: str = "train", halving: PopulationSchedule | None = None,
          pbt: PopulationSchedule | None = None, checkpoint=None,
          checkpoint_every: float = resume.EVERY_S) -> History:
    """Train ``net`` (all its M models) in place and return its :class:`History`.

    Args:
        schedule: a schedule from :mod:`xpnet.training.schedules` (``rates()`` ``(T,)`` or
            ``(T, M)``, ``cycle_length``); lengths in epochs are resolved here, an epoch
            being ``train_data.size // batch_size`` steps.
        train_data, val_data: :class:`DeviceSplit` on the net's backend.
        config: a :class:`TrainConfig` (batch size, momentum, record points, ...).
        shuffle_seeds: per-model seeds for batch orders (one, or one per model);
            default ``net.seeds``.
        callbacks: :class:`Callback` objects; ``progress=True`` adds a :class:`ProgressBar`.
        halving: a :class:`~xpnet.search.halving.Halving` schedule: at its rungs the losing
            models leave ``net`` (which ends with ``len(history.survivors)`` models).
        pbt: a :class:`~xpnet.search.pbt.PBT` schedule: at its action points the worst
            models take the best ones' state and explore their hyper-parameters (the
            history records each exploit).  One population schedule at a time: ``halving``
            or ``pbt``.
        checkpoint: a file path: the run saves its whole state there at record points, at
            most every ``checkpoint_every`` seconds (0: never), resumes from it when called
            again with a network made as this one was, and removes it once it ends (see
            :mod:`xpnet.training.resume`).
    """
    if halving is not None and pbt is not None:
        raise XpnetError("train takes one population schedule at a time; pass halving or "
                         "pbt, not both.")
    callbacks = [*callbacks, *([ProgressBar(desc)] if progress else [])]
    run = TrainingRun(net, schedule, train_data, val_data, config,
                      shuffle_seeds=shuffle_seeds, population=halving or pbt)
    if checkpoint is not None:
        return resume.run(run, checkpoint, checkpoint_every, callbacks)
    return run.run(callbacks)


class TrainingRun:
    """One :func:`train` call: what is fixed for the run, and what a step changes.

    Fixed: the network's architecture, the data, the :class:`TrainConfig`, the rate
    table, the record points and the population schedule's action points.  Changed by
    the steps, and all there is to a run's state at a record point (besides the
    network's arrays and the optimizer's): :attr:`t` (steps done), :attr:`ids` (each
    model's history column), :attr:`seeds` (each model's batch-order and dropout seed),
    :attr:`liveness`, :attr:`step_rates` (the models' rows of the rate table, their rate
    scale and decay), :attr:`history` and :attr:`diverged_step` (the divergence step of
    models that left).  Batch orders and dropout masks are pure functions of the seeds,
    the epoch and the dropout rates, drawn again where needed.
    """

    def __init__(self, net: Network, schedule, train_data: DeviceSplit,
                 val_data: DeviceSplit | None = None, config: TrainConfig | None = None, *,
                 shuffle_seeds=None, population: PopulationSchedule | None = None):
        config = config or TrainConfig()
        self.net, self.config, self.population = net, config, population
        self.train_data, self.val_data = train_data, val_data
        N, B = train_data.size, config.batch_size
        self.steps_per_epoch = N // B
        if self.steps_per_epoch < 1:
            raise XpnetError(f"batch_size {B} is larger than the {N} training samples.")
        self.schedule = resolve_schedule(schedule, self.steps_per_epoch)
        M = net.n_models
        rates = per_model_rates(self.schedule, M)
        self.total = rates.shape[0]
        self.record_at = record_steps(self.total, self.schedule.cycle_length,
                                      config.evals_per_cycle)
        self.action_at = ([] if population is None
                          else population.action_steps(self.record_at, self.steps_per_epoch))
        if population is not None:
            population.check(M, val_data is not None)
        seeds = list(shuffle_seeds if shuffle_seeds is not None else (net.seeds or [0]))
        if len(seeds) not in (1, M):
            raise XpnetError(f"shuffle_seeds needs one seed or one per model ({M}), "
                             f"got {len(seeds)}.")
        self.seeds = [int(s) for s in (seeds * M if len(seeds) == 1 else seeds)]
        self.train_eval = train_data if config.train_eval_size is None else train_data.head(
            config.train_eval_size)
        self.optimizer = config.resolved_optimizer.build(net)
        self.liveness = Liveness(net)
        self.step_rates = StepRates(rates, batch_size=B, prescaled=self.optimizer.prescaled,
                                    decay=self._decay_host(), backend=net.backend,
                                    dtype=net.dtype)
        self.history = History()
        if population is not None:
            population.begin(self.history, M)
        self.t = 0
        self.ids = np.arange(M)  # the history column of each model in the net
        self.diverged_step = np.full(M, -1, dtype=np.int64)  # of models that left
        self.stopped = False  # every model diverged
        self._rates = rates  # the schedule's table, as the history records it
        self._own_rates = False  # whether a population change moved a model's rates
        self._inputs = None  # this epoch's (epoch, order, kept) on the device
        self._ahead = None  # (epoch, future): the next epoch's host inputs, drawn ahead
        self._pool = None  # the thread that draws them, while run() runs
        self.saver = None  # saves the run after record points (xpnet.training.resume.Saver)

    # ------------------------------------------------------------------ the loop
    def run(self, callbacks=(), *, until: int | None = None) -> History:
        """Train from step :attr:`t` to the end (or until every model diverged).

        With ``until`` (a step), stop once :attr:`t` reaches it, the record and the
        population's action there done: :meth:`run` again goes on from there, to the
        same numbers as a run that never stopped.
        """
        history, end = self.history, self.total if until is None else min(until, self.total)
        for cb in callbacks:
            cb.on_train_begin(self.total, self.net.n_models)
        if self.t == 0 and not history.steps:
            self.record(callbacks)
        if history.stopped_step is None:
            history.stopped_step = self.total
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ahead:
            self._pool = ahead
            while self.t < end and not self.stopped:
                self.step(callbacks)
                if self.t in self.record_at and self.record(callbacks):
                    history.stopped_step = self.t  # every model diverged: stop paying for it
                    self.stopped = True
                elif self.t in self.action_at:
                    self.act(callbacks)
                if (self.saver is not None and self.t in self.record_at and not self.stopped
                        and self.t < self.total):
                    self.saver.record_point(self)
            if self._ahead is not None:
                self._ahead[1].cancel()
                self._ahead = None
            self._pool = None
        if self.t < self.total and not self.stopped:
            return history
        self.finish()
        for cb in callbacks:
            cb.on_train_end(history)
        return history

    def step(self, callbacks=()) -> None:
        """Step :attr:`t`: gather the batch, compute the gradients, update."""
        net, xp, t = self.net, self.net.xp, self.t
        epoch, j = divmod(t, self.steps_per_epoch)
        if self._inputs is None or self._inputs[0] != epoch:
            self.start_epoch(epoch)
        _, order, kept = self._inputs
        for cb in callbacks:
            cb.on_step_begin(t)
        B = self.config.batch_size
        idx = order[j, ...] if order.ndim == 3 else order[j * B:(j + 1) * B]
        Xb = gather(xp, self.train_data.X, idx, net.n_models)
        Yb = gather(xp, self.train_data.Y, idx, net.n_models)
        # Zero for stopped models: eta, or for SGD without momentum -eta / B (the
        # backward pass then yields ready-made updates) and the decay factor.
        rate, shrink = self.step_rates.at(j, self.liveness.live)
        masks = None if kept is None else dropout.device_masks(net, kept[j, ...])
        optimizer = self.optimizer
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
        self.liveness.observe(loss, self.config.divergence_loss, j)
        self.t = t + 1
        for cb in callbacks:
            cb.on_step_end(t)

    def start_epoch(self, epoch: int) -> None:
        """Put epoch ``epoch``'s batch orders, dropout masks and factors on the device."""
        spe = self.steps_per_epoch
        ahead = self._ahead
        if ahead is not None and ahead[0] == epoch:
            order, kept = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            order, kept = self.epoch_inputs(epoch)
        backend = self.net.backend
        kept = None if kept is None else backend.asarray(kept)  # one upload, as booleans
        self._inputs = (epoch, backend.asarray(order), kept)
        self._ahead = None
        if self._pool is not None and (epoch + 1) * spe < self.total:
            self._ahead = (epoch + 1, self._pool.submit(self.epoch_inputs, epoch + 1))
        self.step_rates.start_epoch(epoch * spe, spe)  # small uploads, once per epoch
        self.liveness.start_epoch(epoch * spe, spe)

    def epoch_inputs(self, epoch: int):
        """Host batch orders, ``(steps * B,)`` shared or ``(steps, M, B)`` (each step's
        indices contiguous: no copy to gather them), and dropout keep-masks
        ``(steps, M, B, D)`` (or None) of ``epoch`` for the models now in the net."""
        spe, B = self.steps_per_epoch, self.config.batch_size
        seeds, drop_rates = list(self.seeds), dropout.rates(self.net)
        kept = None if drop_rates is None else dropout.keep_masks(
            seeds, drop_rates, (spe, B, sum(self.net.config.hidden)), epoch)
        order = batch_orders(seeds, self.train_data.size, epoch)[..., :spe * B]
        if order.ndim == 2:
            order = np.ascontiguousarray(order.reshape(order.shape[0], spe, B).transpose(1, 0, 2))
        return order, kept

    def record(self, callbacks=()) -> bool:
        """Record metrics at step :attr:`t`; True when every model has diverged."""
        net, M0 = self.net, self.diverged_step.shape[0]
        values = _measure(net, self.train_eval, self.val_data)
        dead = to_numpy(self.liveness.diverged_step()) >= 0
        full = {}
        for key, v in values.items():
            v[dead] = np.nan
            full[key] = np.full(M0, np.nan)
            full[key][self.ids] = v
        t = self.t
        self.history.record(t, t / self.steps_per_epoch, self._eta(t), full)
        for cb in callbacks:
            cb.on_record(t, self.history)
        return bool(dead.all())

    def _eta(self, t: int):
        """The rate at step ``t`` as the history records it: the schedule's (a float, or
        one per history column) until a population change gives a model another model's
        row of the table or another rate scale; from then on one per column, each
        model's own (a model that left keeps the schedule's)."""
        row = self._rates[min(t, self.total - 1)]
        if not self._own_rates:
            return row
        column = np.broadcast_to(row, self.diverged_step.shape).astype(np.float64)
        column[self.ids] = self.step_rates.effective_rates(min(t, self.total - 1))
        return column

    # ------------------------------------------------------------ the population
    def hyper(self) -> dict:
        """Each per-model hyper-parameter now, host float64 ``(M,)`` by name."""
        net, M = self.net, self.net.n_models
        scale = self.step_rates.scale
        out = {"rate_scale": np.ones(M) if scale is None else scale.copy(),
               "lam": net.lam_host.copy()}
        momentum = getattr(self.optimizer, "momentum", None)
        if momentum is not None:
            out["momentum"] = np.broadcast_to(
                to_numpy(momentum).astype(np.float64).reshape(-1), (M,)).copy()
        out.update({name: v.copy() for name, v in net.per_model_host.items()})
        return out

    def act(self, callbacks=()) -> None:
        """The population schedule's change at step :attr:`t` (an action point)."""
        view = PopulationView(self.history, self.ids.copy(), self.hyper(),
                              self.steps_per_epoch, self.action_at.index(self.t))
        change = self.population.decide(self.t, view)
        if change is None or change.is_identity(self.net.n_models):
            return
        left = np.setdiff1d(np.arange(self.net.n_models), change.slots)
        if left.size:
            self.diverged_step[self.ids[left]] = to_numpy(
                self.liveness.diverged_step()).astype(np.int64)[left]
        self.apply(change)
        if left.size:
            for cb in callbacks:
                cb.on_models_dropped(self.t, self.ids.copy())

    def apply(self, change: PopulationChange) -> None:
        """Gather every per-model array along the model axis and set new hyper-parameters
        (see :class:`~xpnet.training.population.PopulationChange`)."""
        net, rows, slots = self.net, change.rows, change.slots
        index = net.backend.asarray(rows)
        net.take_models(rows)
        self.optimizer.take_models(rows)
        self.liveness.take(index)
        self.step_rates.take(rows, index)
        self.ids = self.ids[slots]
        self.seeds = [self.seeds[int(i)] for i in slots]
        hyper = dict(change.hyper)
        self._own_rates |= "rate_scale" in hyper or not np.array_equal(rows, slots)
        if "rate_scale" in hyper:
            self.step_rates.set_scale(hyper.pop("rate_scale"))
        if "lam" in hyper:
            net.set_lam(hyper.pop("lam"))
        if "momentum" in hyper:
            values = hyper.pop("momentum")
            self.optimizer.set_momentum(_per_model_column(net, values))
        for name, values in hyper.items():
            net.set_per_model(name, values)
        decay = None if not np.any(net.lam_host) else net.decay
        self.optimizer.set_decay(decay)
        self.step_rates.set_decay(self._decay_host())
        # This epoch's inputs and factors again, for the new population: pure functions
        # of the seeds, the rates and the epoch, so a resumed run draws the same.
        epoch = self.t // self.steps_per_epoch
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None
        self._inputs = None
        if self.t < self.total:
            self.start_epoch(epoch)

    def _decay_host(self):
        """The L2 decay factors ``(M,)`` for the rate table, or None where none applies."""
        if self.optimizer.decay is None:
            return None
        return l2.gradient_factor(self.net.lam_host)

    def finish(self) -> None:
        """Fill in the history's last fields once the run ends."""
        history = self.history
        diverged = self.diverged_step.copy()
        diverged[self.ids] = to_numpy(self.liveness.diverged_step()).astype(np.int64)
        history.diverged_step = diverged
        if self.population is not None:
            history.survivors = self.ids.copy()


def _per_model_column(net: Network, values):
    """A host ``(M,)`` option as a float when every model shares it, else device
    ``(M, 1, 1)`` (what the optimizers take)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.all(values == values[0]):
        return float(values[0])
    return net.backend.asarray(values[:, None, None].copy(), dtype=net.dtype)


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
