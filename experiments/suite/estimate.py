"""How long the suite will take: its work, this machine's speed, and the time left.

- **Work.** A run's work is its estimated one-core seconds
  (:func:`experiments.suite.spec.estimated_seconds`, fitted on a 2-core machine): what it
  computes (model-steps through its weights, its layers' calls, its evaluations), so an
  81-model run counts 81 times a one-model run of the same net, not once.  Runs a chained
  study will submit later (a search's next links) are planned up front
  (:meth:`Context.plan <experiments.suite.context.Context.plan>`), so the total does not
  jump as they come.  A run's share done follows its model-steps: a halving run's first
  steps, with every model, weigh more than its last (:func:`work_done`).
- **Speed.** Work per second of one worker: first :func:`calibrate`'s (a short training in
  this process, before any run starts), then more and more what the workers measure:
  the work their runs have done over the time those runs took (:class:`Speed`).
- **Time left.** The work left over the workers' speed, or the longest run left (one
  worker trains it) when that takes longer (:func:`time_left`).
"""

from __future__ import annotations

import math
import time

from experiments.suite import spec as specs
from xpnet import ConstantLR, Network, TrainConfig
from xpnet.training import DeviceSplit, train

#: Seconds of measurements the calibration counts for, against the workers' own.
PRIOR_S = 10.0
#: Work an untrained run (a gradient check, a probe) counts for, in estimated seconds.
UNTRAINED_WORK = 1.0
#: Work every run counts for besides its training (its task, data and network set-up,
#: test evaluation, record): fitted to the runs of ``--quick``, where it is a third of
#: the work; in the main job it is under 1 %.
RUN_OVERHEAD = 0.5
#: The calibration run: a 3-layer [50, 50] net of three models, this many steps on this many
#: training images (and half as many validation images).
CALIBRATION_STEPS = 40
CALIBRATION_IMAGES = 2000


def work_done(spec: dict | None, step: int, total: int) -> float:
    """The share (0..1) of a training run's work done after ``step`` of ``total`` steps:
    its model-steps so far over all of them (a halving run's models leave at its rungs)."""
    if total <= 0:
        return 1.0
    step = min(max(int(step), 0), total)
    if spec is None or spec.get("halving") is None:
        return step / total
    schedule = specs.make_schedule(spec["schedule"], spec["models"])
    rungs = specs.halving_rungs(spec, total, schedule.cycle_length)
    halving = specs.make_halving(spec)
    active, done, taken, upto = specs.n_models(spec), 0, 0, 0
    for rung in [*rungs, total]:
        taken += active * (rung - done)
        upto += active * (min(rung, step) - done) if step > done else 0
        active, done = halving.n_keep(active) * halving.group_size, rung
    return upto / taken if taken else 1.0


def calibrate(env) -> float:
    """This machine's speed now, in work per second of one worker: a short training of the
    suite's kind in this process on a slice of its data (a fraction of a second), timed
    against its estimate; 1.0 (the estimate's machine) where this process cannot train
    (``--scheduler`` with a device only the workers have)."""
    try:
        return _calibrate(env)
    except Exception:  # noqa: BLE001 (an estimate must never stop the suite)
        return 1.0


def _calibrate(env) -> float:
    data, backend = env.data, env.backend
    n_train, n_val = min(CALIBRATION_IMAGES, len(data.y_train)), min(CALIBRATION_IMAGES // 2,
                                                                   len(data.y_val))
    splits = [DeviceSplit.from_host(backend, X[:n], y[:n], data.n_classes, "float32")
              for X, y, n in ((data.X_train, data.y_train, n_train),
                              (data.X_val, data.y_val, n_val))]
    schedule = ConstantLR(eta=0.01, steps=CALIBRATION_STEPS, cycle_length=CALIBRATION_STEPS)
    config = TrainConfig(evals_per_cycle=1)
    sizes = {**env.data_sizes(), "val": n_val}
    spec = specs.train_spec(data=sizes, d_in=data.X_train.shape[1], n_classes=data.n_classes,
                            hidden=(50, 50), seeds=[0, 1, 2], lam=0.005, schedule=schedule,
                            train=config, n_train=n_train)
    net = Network.create(specs.make_config(spec), seeds=[0, 1, 2], lam=0.005, device=backend)
    start = time.perf_counter()
    train(net, schedule, *splits, config, progress=False)
    backend.synchronize()
    seconds = time.perf_counter() - start
    return specs.estimated_seconds(spec) / max(seconds, 1e-3)


class Speed:
    """Work per second of one worker: ``prior`` (:func:`calibrate`'s) until the workers'
    runs have taken a while, then theirs: ``(prior * PRIOR_S + work) / (PRIOR_S + busy)``
    over the ``work`` their runs did in ``busy`` seconds of those runs."""

    def __init__(self, prior: float):
        self.prior = max(float(prior), 1e-9)

    def rate(self, work: float, busy_s: float) -> float:
        return (self.prior * PRIOR_S + max(work, 0.0)) / (PRIOR_S + max(busy_s, 0.0))


def time_left(work_left: float, longest_left: float, rate: float, workers: int) -> float:
    """Seconds until the work left is done at ``rate`` per worker on ``workers`` workers,
    or until one worker has trained the longest run left, when that takes longer."""
    rate = max(rate, 1e-9)
    return max(work_left / (rate * max(workers, 1)), longest_left / rate)


def clock(seconds: float) -> str:
    """``"4:05"``, ``"1:02:03"``: a duration for the status line."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def words(seconds: float) -> str:
    """``"about 35 min"``, ``"about 1 h 10 min"``, ``"under a minute"``: an estimate."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min" if hours else f"about {minutes} min"
