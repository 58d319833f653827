"""What a training run records and who hears about it: :class:`History` and the
:class:`Callback` hooks of :func:`xpnet.training.loop.train` (a :class:`ProgressBar` is one).

Both are host-side only: a history holds host arrays, and no hook is handed a device
array, so none can make the training step wait for the device.  ``xpnet.training.loop``
re-exports all three names.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.base.codec import to_float_array, to_jsonable
from xpnet.errors import XpnetError


@dataclasses.dataclass
class History:
    """Metrics recorded during training.

    ``steps`` and ``epochs`` have one entry per record point, ``eta`` the rate there (a
    float, or a list of M floats for per-model rates); ``metrics[key]`` is a host array
    ``(n_points, M)`` for keys like ``"train_loss"`` or ``"val_accuracy"`` (NaN once a
    model has diverged).  ``diverged_step`` is ``(M,)``, -1 for models that never
    diverged; ``stopped_step`` is where training ended (early once every model diverged).

    With successive halving (:mod:`xpnet.search.halving`) the columns stay those of the M
    models the run started with: a dropped model's curve is NaN after its rung.
    ``dropped_step`` ``(M,)`` is the rung's step (-1: never dropped), ``dropped_reason``
    one line per model ("" if never dropped) and ``survivors`` the original indices of
    the models still in the network at the end (model j of the net is ``survivors[j]``).
    All three are None for a run without halving.

    With population-based training (:mod:`xpnet.search.pbt`) ``pbt_steps`` lists the steps
    it acted at (its interval's ends snapped to record points), ``pbt_events`` one dict
    per exploit (``step``, ``child`` and ``parent`` places, the child's hyper-parameters
    ``before`` and ``after`` by name) and ``pbt_hyper`` each per-model hyper-parameter by
    name as ``(1 + len(pbt_steps), M)`` lists: the population's values at step 0, then
    after each action.  :meth:`lineage` reads them; all three are None without PBT.
    """

    steps: list = dataclasses.field(default_factory=list)
    epochs: list = dataclasses.field(default_factory=list)
    eta: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)
    diverged_step: np.ndarray | None = None
    stopped_step: int | None = None
    dropped_step: np.ndarray | None = None
    dropped_reason: list | None = None
    survivors: np.ndarray | None = None
    pbt_steps: list | None = None
    pbt_events: list | None = None
    pbt_hyper: dict | None = None

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

    def lineage(self, place: int) -> dict:
        """The ancestry of the model that ends in column ``place`` of a PBT run, and the
        hyper-parameter schedule it followed.

        Returns a dict: ``ancestry``, ``[[step, place], ...]`` in order: from ``step`` on,
        the model's state was trained in ``place`` (the first entry at step 0, each next
        one an exploit that copied the state on into the next place); ``steps`` (0 and
        each of ``pbt_steps``), ``places`` (where the model's ancestor was from each of
        those steps on) and, per hyper-parameter name, the value it trained with from
        each of those steps on (a piecewise constant schedule).
        """
        if self.pbt_events is None:
            raise XpnetError("This history has no lineage; it is not that of a PBT run.")
        ancestry, current, before = [], int(place), np.inf
        for event in sorted(self.pbt_events, key=lambda e: -e["step"]):
            if event["child"] == current and event["step"] < before:
                ancestry.append([int(event["step"]), current])
                current, before = int(event["parent"]), event["step"]
        ancestry.append([0, current])
        ancestry.reverse()
        steps = [0, *self.pbt_steps]
        places = [max((a for a in ancestry if a[0] <= s), key=lambda a: a[0])[1] for s in steps]
        out = {"ancestry": ancestry, "steps": steps, "places": places}
        for name, rows in (self.pbt_hyper or {}).items():
            out[name] = [float(rows[k][p]) for k, p in enumerate(places) if k < len(rows)]
        return out

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_step >= 0

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN written as None)."""
        out = {"steps": self.steps, "epochs": self.epochs, "eta": self.eta,
               "metrics": self.metrics, "diverged_step": self.diverged_step,
               "stopped_step": self.stopped_step}
        if self.dropped_step is not None:  # halving runs only: other records keep their form
            out.update(dropped_step=self.dropped_step, dropped_reason=self.dropped_reason,
                       survivors=self.survivors)
        if self.pbt_events is not None:  # PBT runs only
            out.update(pbt_steps=self.pbt_steps, pbt_events=self.pbt_events,
                       pbt_hyper=self.pbt_hyper)
        return to_jsonable(out)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        def ints(key):
            return None if d.get(key) is None else np.asarray(d[key], dtype=np.int64)

        return cls(list(d["steps"]), list(d["epochs"]), list(d["eta"]),
                   {k: to_float_array(v) for k, v in d["metrics"].items()},
                   np.asarray(d["diverged_step"], dtype=np.int64), d.get("stopped_step"),
                   ints("dropped_step"),
                   None if d.get("dropped_reason") is None else list(d["dropped_reason"]),
                   ints("survivors"), d.get("pbt_steps"), d.get("pbt_events"),
                   None if d.get("pbt_hyper") is None else {
                       k: to_float_array(v).tolist() for k, v in d["pbt_hyper"].items()})


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

    def on_models_dropped(self, step: int, survivors) -> None:
        """After a halving rung: ``survivors`` are the original indices of the models
        still training (host int64); the network now holds just them."""

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
