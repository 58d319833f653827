"""The training loop: mini-batch SGD over a schedule, for M models in lockstep.

Read top to bottom: move the data to the device once; per epoch draw the batch order
on the host and send it over; per step gather the batch on the device, compute
gradients, update.  Nothing in the step reads a value back to the host: divergence is
tracked on the device (a model whose batch loss is non-finite, or absurdly large, stops
updating and its step is kept), and metrics are gathered only at a fixed number of points per cycle.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from tqdm.auto import tqdm

from xpnet.backend import to_numpy
from xpnet.errors import XpnetError
from xpnet.network import Network, one_hot
from xpnet.optim import SGD

METRICS = ("loss", "cost", "accuracy")


@dataclasses.dataclass
class History:
    """Metrics recorded during training.

    ``steps``, ``epochs`` and ``eta`` have one entry per record point; ``metrics[key]``
    is a host array ``(n_points, M)`` for keys like ``"train_loss"`` or
    ``"val_accuracy"`` (NaN once a model has diverged).  ``diverged_step`` is ``(M,)``,
    -1 for models that never diverged.
    """

    steps: list = dataclasses.field(default_factory=list)
    epochs: list = dataclasses.field(default_factory=list)
    eta: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)
    diverged_step: np.ndarray | None = None

    def record(self, step, epoch, eta, values: dict) -> None:
        self.steps.append(int(step))
        self.epochs.append(float(epoch))
        self.eta.append(float(eta))
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
        def clean(a):
            return [[None if not math.isfinite(x) else x for x in row] for row in a.tolist()]
        return {"steps": self.steps, "epochs": self.epochs, "eta": self.eta,
                "metrics": {k: clean(v) for k, v in self.metrics.items()},
                "diverged_step": [int(s) for s in self.diverged_step]}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        def restore(rows):
            return np.array([[np.nan if x is None else x for x in row] for row in rows],
                            dtype=np.float64)
        return cls(list(d["steps"]), list(d["epochs"]), list(d["eta"]),
                   {k: restore(v) for k, v in d["metrics"].items()},
                   np.asarray(d["diverged_step"], dtype=np.int64))


@dataclasses.dataclass
class DeviceSplit:
    """One data split on the device: ``X`` ``(N, d)``, labels ``y`` ``(N,)``, one-hot ``Y``."""

    X: object
    y: object
    Y: object

    @classmethod
    def from_host(cls, backend, X, y, n_classes, dtype) -> "DeviceSplit":
        X = np.asarray(X)
        y = np.asarray(y, dtype=np.int64)
        return cls(backend.asarray(X, dtype=dtype), backend.asarray(y),
                   backend.asarray(one_hot(y, n_classes), dtype=dtype))

    @property
    def size(self) -> int:
        return int(self.X.shape[0])

    def head(self, n: int) -> "DeviceSplit":
        n = min(n, self.size)
        return DeviceSplit(self.X[:n, ...], self.y[:n], self.Y[:n, ...])


def batch_orders(seeds, n_samples: int, epoch: int) -> np.ndarray:
    """Host batch orders for one epoch: ``(n_samples,)`` if all seeds agree, else ``(M, n)``.

    Model m's order depends only on its seed and the epoch.
    """
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) == 1:
        return np.random.default_rng([seeds[0], epoch, 7]).permutation(n_samples)
    return np.stack([np.random.default_rng([s, epoch, 7]).permutation(n_samples)
                     for s in seeds])


def gather(xp, data, idx, n_models: int):
    """Rows ``idx`` of ``data`` ``(N, k)``: ``(B, k)`` for ``idx`` ``(B,)``, else ``(M, B, k)``."""
    if idx.ndim == 1:
        return xp.take(data, idx, axis=0)
    flat = xp.take(data, xp.reshape(idx, (-1,)), axis=0)
    return xp.reshape(flat, (n_models, idx.shape[-1], data.shape[-1]))


def train(net: Network, schedule, train_data: DeviceSplit, val_data: DeviceSplit | None = None,
          *, batch_size: int = 100, momentum: float = 0.0, evals_per_cycle: int = 10,
          train_eval_size: int | None = 10000, shuffle_seeds=None, progress: bool = True,
          divergence_loss: float = 1e4, desc: str = "train") -> History:
    """Train ``net`` (all its M models) in place and return its :class:`History`.

    Args:
        schedule: a schedule from :mod:`xpnet.schedules` (``rates()``, ``total_steps``,
            ``cycle_length``).
        train_data, val_data: :class:`DeviceSplit` on the net's backend.
        batch_size: samples per step; each epoch is ``N // batch_size`` steps.
        evals_per_cycle: record points per schedule cycle (plus one before training).
        train_eval_size: evaluate training metrics on the first this-many training
            samples (None: all); keeps recording cheap on 45,000 images.
        shuffle_seeds: per-model seeds for batch orders; default ``net.seeds``.
        divergence_loss: a model whose batch loss is non-finite or above this is marked
            diverged at that step and stops updating.  A cross-entropy of 1e4 means the
            true class scores 1e4 below the best one: such a model is not training, even
            if float32 has not overflowed yet (say, weights drawn with sigma = 10).
    """
    xp = net.xp
    M = net.n_models
    N = train_data.size
    steps_per_epoch = N // batch_size
    if steps_per_epoch < 1:
        raise XpnetError(f"batch_size {batch_size} is larger than the {N} training samples.")
    rates = schedule.rates()
    total = len(rates)
    every = max(1, schedule.cycle_length // max(1, evals_per_cycle))
    record_at = set(range(every, total + 1, every)) | {total}
    seeds = shuffle_seeds if shuffle_seeds is not None else (net.seeds or [0])
    train_eval = train_data if train_eval_size is None else train_data.head(train_eval_size)

    weights = [name for name in net.params if name.startswith("W")]
    optimizer = SGD(net.params, momentum, decay=2.0 * net.lam[:, None, None],
                    decay_names=weights)
    alive = xp.ones((M,), dtype=xp.bool, device=net.backend.device)
    diverged_step = xp.full((M,), -1, dtype=xp.int64, device=net.backend.device)
    history = History()

    def record(step):
        values = _measure(net, train_eval, val_data)
        dead = to_numpy(diverged_step) >= 0
        for v in values.values():
            v[dead] = np.nan
        history.record(step, step / steps_per_epoch, rates[min(step, total - 1)], values)

    record(0)
    order = None
    with tqdm(total=total, desc=desc, disable=not progress, leave=False,
              unit="step", dynamic_ncols=True) as bar:
        for t in range(total):
            epoch, j = divmod(t, steps_per_epoch)
            if j == 0:
                order = net.backend.asarray(batch_orders(seeds, N, epoch))
            idx = order[..., j * batch_size:(j + 1) * batch_size]
            Xb = gather(xp, train_data.X, idx, M)
            Yb = gather(xp, train_data.Y, idx, M)
            # eta is zero for stopped models; without momentum it is folded into the
            # backward pass (see Network.loss_and_data_gradients).
            eta = float(rates[t]) * xp.astype(alive, net.dtype)[:, None, None]
            if momentum:
                loss, grads = net.loss_and_data_gradients(Xb, Yb)
                optimizer.step(net.params, grads, eta)
            else:
                loss, updates = net.loss_and_data_gradients(Xb, Yb, scale=-eta)
                optimizer.step_prescaled(net.params, updates, eta)

            # A non-finite loss is a non-finite cost (the L2 term is finite while W is).
            # The failing step's update may leave non-finite weights: they are no longer
            # meaningful, and the model's recorded figures stop at its last finite ones.
            finite = loss <= divergence_loss  # False for NaN and inf too
            diverged_step = xp.where(alive & ~finite, t, diverged_step)
            alive = alive & finite

            bar.update(1)
            if t + 1 in record_at:
                record(t + 1)
    history.diverged_step = to_numpy(diverged_step).astype(np.int64)
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
