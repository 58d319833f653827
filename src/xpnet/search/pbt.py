"""Population-based training inside one lockstep network: the worst models copy the best.

A :class:`PBT` schedule (Jaderberg et al. 2017) tells :func:`xpnet.training.loop.train`
what to do at its *action points*: every ``interval`` (steps or epochs), each snapped to
the nearest record point (the later one on a tie), where the metric is already on the
host.  There the models are ranked by ``metric`` (a diverged model, NaN, ranks last; ties
go to the lower index); each model of the bottom ``fraction`` (``ceil(fraction * M)``
models) *exploits*: it takes the whole state of a model of the top ``fraction`` drawn by
``numpy.random.default_rng([seed, step])`` (parameters, batch-norm averages, optimizer
state, liveness, its row of the rate table and every per-model hyper-parameter), as one
gather along the model axis with repeats.  Then it *explores*: each explored
hyper-parameter (``rate_scale``, ``lam``, ``dropout``, ``momentum``: those named in
``space``, by default ``rate_scale`` and ``lam``) is multiplied by a factor drawn from
``perturb``, or, with probability ``resample``, drawn afresh from ``space``.  A child
keeps its own place: its history column, its batch order and its dropout stream.

Every exploit is written to the run's :class:`~xpnet.training.history.History`
(``pbt_steps``, ``pbt_events``, ``pbt_hyper``); :meth:`History.lineage
<xpnet.training.history.History.lineage>` gives each final model's ancestry and the
hyper-parameter schedule it followed.  Unlike Ray Tune's PBT, the population is
synchronous (every model reaches an action point at the same step), the copy is exact
(no checkpoint files, no trial that keeps its own weights) and costs one gather.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from xpnet.base import inputs
from xpnet.errors import XpnetError
from xpnet.search.halving import UNITS, check_metric
from xpnet.training.population import (
    PopulationChange,
    PopulationSchedule,
    PopulationView,
    nearest_record_point,
)

#: The hyper-parameters PBT may explore, and the range a perturbed value is kept in.
EXPLORABLE = {"rate_scale": (0.0, math.inf), "lam": (0.0, math.inf), "dropout": (0.0, 0.9),
              "momentum": (0.0, 0.999)}
DEFAULT_EXPLORED = ("rate_scale", "lam")


@dataclasses.dataclass(frozen=True)
class PBT(PopulationSchedule):
    """A population-based training schedule for one lockstep run.

    Attributes:
        interval: how often to exploit and explore, in ``unit``; each multiple of it
            before the last step becomes the nearest record point (the later on a tie).
        unit: ``"steps"`` or ``"epochs"``.
        fraction: the share of the population that copies (the bottom) and that is
            copied (the top), in [0, 0.5]; 0 never changes anything.
        perturb: the factors a copied hyper-parameter is multiplied by, one drawn per
            hyper-parameter and child.
        resample: the probability that a copied hyper-parameter is drawn from ``space``
            instead of perturbed (needs ``space``).
        space: ``{name: (low, high)}`` (a log-uniform range, ``0 < low < high``) or
            ``{name: [v1, v2, ...]}`` (values to draw from), for names among
            ``rate_scale``, ``lam``, ``dropout``, ``momentum``: the explored
            hyper-parameters (default: ``rate_scale`` and ``lam``, unbounded).  A perturbed
            value stays in its range (dropout below 0.9, momentum below 0.999).
            ``rate_scale`` is a factor on the model's row of the rate schedule (1 at the
            start; a child takes its parent's row and factor), not a rate.
        metric: the :class:`~xpnet.training.history.History` key to rank by.
        seed: the seed of the host RNG that picks the parents and the factors.
    """

    interval: float
    unit: str = "steps"
    fraction: float = 0.25
    perturb: tuple = (0.8, 1.2)
    resample: float = 0.0
    space: object = None
    metric: str = "val_accuracy"
    seed: int = 0

    def __post_init__(self):
        if self.unit not in UNITS:
            raise XpnetError(f"PBT unit must be 'steps' or 'epochs', got {self.unit!r}.")
        interval = self.interval
        ok = inputs.is_number(interval) and math.isfinite(interval) and interval > 0
        if not ok or (self.unit == "steps" and interval != round(interval)):
            what = "a whole number of steps" if self.unit == "steps" else "a positive number"
            raise XpnetError(f"PBT interval must be {what}, got {interval!r}.")
        object.__setattr__(self, "interval", int(interval) if self.unit == "steps"
                           else float(interval))
        fraction = self.fraction
        if not (inputs.is_number(fraction) and 0 <= fraction <= 0.5):
            raise XpnetError(f"PBT fraction must be a number in [0, 0.5], got {fraction!r}.")
        object.__setattr__(self, "fraction", float(fraction))
        factors = inputs.numbers(self.perturb)
        if factors is None or factors.size == 0 or not np.all(np.isfinite(factors) & (factors > 0)):
            raise XpnetError(f"PBT perturb must be positive factors such as (0.8, 1.2), "
                             f"got {self.perturb!r}.")
        object.__setattr__(self, "perturb", tuple(float(f) for f in factors.reshape(-1)))
        if not (inputs.is_number(self.resample) and 0 <= self.resample <= 1):
            raise XpnetError(f"PBT resample must be a probability in [0, 1], "
                             f"got {self.resample!r}.")
        object.__setattr__(self, "resample", float(self.resample))
        object.__setattr__(self, "space", _space(self.space))
        if self.resample > 0 and self.space is None:
            raise XpnetError("PBT resample needs a space to draw from; pass space={name: "
                             "(low, high)} or set resample=0.")
        check_metric("PBT", self.metric)
        object.__setattr__(self, "seed", inputs.whole("PBT seed", self.seed, 0))

    @property
    def explored(self) -> tuple[str, ...]:
        """The hyper-parameters explore changes."""
        return DEFAULT_EXPLORED if self.space is None else tuple(n for n, _, _ in self.space)

    def action_steps(self, record_at, steps_per_epoch: int) -> list[int]:
        points = sorted(record_at)
        last = points[-1]
        every = self.interval * (steps_per_epoch if self.unit == "epochs" else 1)
        wanted = [round(k * every) for k in range(1, int(last / every) + 1)]
        steps = sorted({nearest_record_point(points, w) for w in wanted})
        steps = [s for s in steps if s < last]
        if not steps:
            raise XpnetError(f"PBT interval {self.interval} {self.unit} gives no record point "
                             f"before the run's last step ({last}); give a shorter interval.")
        return steps

    def check(self, n_models: int, has_val: bool) -> None:
        super().check(n_models, has_val)
        if self.fraction > 0 and n_models < 2:
            raise XpnetError("PBT needs at least 2 models to copy one into another; train "
                             "a population (several seeds or hyper-parameters).")

    def begin(self, history, n_models: int) -> None:
        history.pbt_steps, history.pbt_events, history.pbt_hyper = [], [], {}

    def n_exploit(self, n_models: int) -> int:
        """Models that copy (and models that may be copied) out of ``n_models``."""
        return min(n_models // 2, math.ceil(self.fraction * n_models - 1e-9))

    def ranks(self, scores) -> np.ndarray:
        """Positions of ``scores`` ``(M,)`` best first (NaN last, ties: lower index first)."""
        key = np.asarray(scores, dtype=np.float64)
        key = key if self.higher_is_better else -key
        return np.argsort(-np.where(np.isnan(key), -np.inf, key), kind="stable")

    def decide(self, step: int, view: PopulationView) -> PopulationChange | None:
        """The bottom models take the top ones' state, their hyper-parameters explored;
        every exploit is recorded in the history."""
        history, hyper = view.history, view.hyper
        for name in self.explored:
            if name not in hyper:
                raise XpnetError(f"PBT explores {name}, which this run does not have; "
                                 "leave it out of space.")
        recorded = [n for n in EXPLORABLE if n in hyper]  # not bn_eps and the like
        if not history.pbt_hyper:  # the population before its first action
            history.pbt_hyper = {n: [_column(hyper[n], view.ids, history)] for n in recorded}
        history.pbt_steps.append(int(step))
        scores = view.scores(self.metric)
        order = self.ranks(scores)
        k = self.n_exploit(scores.size)
        top = np.array([p for p in order[:k] if np.isfinite(scores[p])], dtype=np.int64)
        rows = np.arange(scores.size, dtype=np.int64)
        new = {name: values.copy() for name, values in hyper.items()}
        rng = np.random.default_rng([self.seed, int(step)])
        children = [] if top.size == 0 else sorted(int(p) for p in order[scores.size - k:])
        for child in children:
            parent = int(top[rng.integers(top.size)])
            rows[child] = parent
            for name in hyper:
                new[name][child] = hyper[name][parent]
            for name in self.explored:
                new[name][child] = self.explore(name, hyper[name][parent], rng)
            history.pbt_events.append({
                "step": int(step), "child": int(view.ids[child]),
                "parent": int(view.ids[parent]),
                "before": {n: float(hyper[n][child]) for n in recorded},
                "after": {n: float(new[n][child]) for n in recorded}})
        for name in recorded:
            history.pbt_hyper[name].append(_column(new[name], view.ids, history))
        if not children:
            return None
        return PopulationChange(rows=rows, slots=np.arange(scores.size),
                                hyper={n: new[n] for n in self.explored})

    def explore(self, name: str, value: float, rng) -> float:
        """``value`` perturbed by a drawn factor, or (probability ``resample``) drawn from
        the space; always two draws from ``rng``, so the stream does not depend on which."""
        low, high = EXPLORABLE[name]
        entry = None if self.space is None else dict((n, (k, v)) for n, k, v in self.space)[name]
        coin, factor = rng.random(), self.perturb[int(rng.integers(len(self.perturb)))]
        if entry is not None and coin < self.resample:
            kind, values = entry
            if kind == "values":
                return float(values[int(rng.integers(len(values)))])
            return float(np.exp(rng.uniform(np.log(values[0]), np.log(values[1]))))
        if entry is not None:
            low, high = max(low, min(entry[1])), min(high, max(entry[1]))
        return float(np.clip(value * factor, low, high))


def _space(space):
    """``space`` as a hashable tuple of ``(name, "range" | "values", values)``, or None."""
    if space is None:
        return None
    if isinstance(space, tuple) and all(isinstance(e, tuple) and len(e) == 3 for e in space):
        space = {n: (v if k == "range" else list(v)) for n, k, v in space}
    if not isinstance(space, dict) or not space:
        raise XpnetError(f"PBT space must be a dict such as {{'lam': (1e-4, 1e-2)}}, "
                         f"got {space!r}.")
    out = []
    for name in sorted(space):
        if name not in EXPLORABLE:
            raise XpnetError(f"PBT cannot explore {name!r}; it explores "
                             f"{', '.join(EXPLORABLE)}.")
        entry = space[name]
        values = inputs.numbers(entry)
        low, high = EXPLORABLE[name]
        if values is None or values.ndim != 1 or values.size == 0 or not np.all(
                np.isfinite(values) & (values >= low) & (values <= min(high, 1e300))):
            raise XpnetError(f"PBT space[{name!r}] must be (low, high) or a list of "
                             f"allowed values, got {entry!r}.")
        if isinstance(entry, tuple):
            if values.size != 2 or not 0 < values[0] < values[1]:
                raise XpnetError(f"PBT space[{name!r}] as a tuple is a log-uniform range "
                                 f"(low, high) with 0 < low < high, got {entry!r}; give a "
                                 "list for a set of values.")
            out.append((name, "range", (float(values[0]), float(values[1]))))
        else:
            out.append((name, "values", tuple(float(v) for v in values)))
    return tuple(out)


def _column(values, ids, history) -> list:
    """Per-model ``values`` ``(M,)`` as a list over the history's columns (NaN elsewhere)."""
    n_places = next(iter(history.metrics.values())).shape[1]
    out = np.full(n_places, np.nan)
    out[ids] = values
    return out.tolist()
