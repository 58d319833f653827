"""Successive halving inside one lockstep network: drop the losing models from the model axis.

A :class:`Halving` schedule tells :func:`xpnet.training.loop.train` to cut its M models down
at a few *rungs*.  At each rung (a record point, so the metric is already on the host and
the cut costs no extra host sync) the models still training are ranked by the last
recorded ``metric``; the best ``1 / eta`` of them (at least ``min_models``) are kept and
the network, the optimiser state and every per-model table are compacted to them with
``take`` along the model axis.  Every step after a rung is cheaper: the arrays are
smaller, not masked.

Groups.  With ``group_size = g``, models ``[k * g, (k + 1) * g)`` form configuration k
(a grid's seeds of one setting: :class:`experiments.studies.kit.Grid` varies the seed
fastest) and are ranked by their mean metric and kept or dropped together; a group
with a diverged model (NaN metric) ranks last.  Ranking: higher is better for metrics
ending in ``accuracy``, lower for the others (loss, cost); NaN ranks last; ties go to
the lower model index.

Unlike ASHA (asynchronous successive halving, as in Ray Tune), the rungs are
synchronous: every model reaches a rung at the same step, since they train in one
network, and there are no trials to schedule or pause.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from xpnet.base import inputs
from xpnet.errors import XpnetError
from xpnet.training.loop import METRICS
from xpnet.training.population import (
    PopulationChange,
    PopulationSchedule,
    PopulationView,
    nearest_record_point,
)

UNITS = ("steps", "epochs")


@dataclasses.dataclass(frozen=True)
class Halving(PopulationSchedule):
    """A successive-halving schedule for one lockstep run.

    Attributes:
        rungs: where to cut, in increasing order, in ``unit``.  In steps each rung must be
            one of the run's record points (:func:`xpnet.training.loop.record_steps`) before
            its last step; in epochs each becomes ``round(rung * steps_per_epoch)`` steps
            and then the nearest record point (the later one on a tie).
        eta: reduction factor: a rung keeps ``ceil(n / eta)`` of its n configurations.
        min_models: never keep fewer configurations than this.
        metric: the :class:`~xpnet.training.loop.History` key to rank by (``"val_accuracy"``
            needs validation data).
        group_size: models per configuration (consecutive models), ranked by their mean.
        unit: ``"steps"`` or ``"epochs"``.
    """

    rungs: tuple[float, ...]
    eta: int = 3
    min_models: int = 1
    metric: str = "val_accuracy"
    group_size: int = 1
    unit: str = "steps"

    def __post_init__(self):
        values = inputs.numbers(self.rungs)  # None unless a number or a flat sequence
        rungs = () if values is None else tuple(float(r) for r in values.reshape(-1))
        if not rungs or any(not (math.isfinite(r) and r > 0) for r in rungs):
            raise XpnetError(f"Halving rungs must be positive numbers, got {self.rungs!r}.")
        if any(b <= a for a, b in zip(rungs, rungs[1:], strict=False)):
            raise XpnetError(f"Halving rungs must increase, got {self.rungs!r}.")
        if self.unit not in UNITS:
            raise XpnetError(f"Halving unit must be 'steps' or 'epochs', got {self.unit!r}.")
        if self.unit == "steps":
            if any(r != round(r) for r in rungs):
                raise XpnetError(f"Halving rungs in steps must be whole numbers, "
                                 f"got {self.rungs!r}.")
            rungs = tuple(int(r) for r in rungs)
        object.__setattr__(self, "rungs", rungs)
        for name in ("eta", "min_models", "group_size"):
            value = inputs.whole(f"Halving {name}", getattr(self, name),
                                 2 if name == "eta" else 1)
            object.__setattr__(self, name, value)
        check_metric("Halving", self.metric)

    def rung_steps(self, record_at, steps_per_epoch: int) -> list[int]:
        """The rungs as steps, each a record point in ``record_at`` before the last step."""
        points = sorted(record_at)
        last = points[-1]
        if self.unit == "epochs":
            wanted = [round(r * steps_per_epoch) for r in self.rungs]
            steps = [nearest_record_point(points, w) for w in wanted]
        else:
            steps = list(self.rungs)
            off = [s for s in steps if s not in record_at]
            if off:
                every = points[0]
                raise XpnetError(f"Halving rungs {off} are not record points; this run "
                                 f"records every {every} steps (and at step {last}): put "
                                 "the rungs there or give them in epochs.")
        if len(set(steps)) != len(steps) or steps[-1] >= last:
            raise XpnetError(f"Halving rungs {list(self.rungs)} ({self.unit}) fall on record "
                             f"points {steps}; give distinct rungs before the last step "
                             f"({last}).")
        return steps

    def action_steps(self, record_at, steps_per_epoch: int) -> list[int]:
        return self.rung_steps(record_at, steps_per_epoch)

    def check(self, n_models: int, has_val: bool) -> None:
        self.check_models(n_models)
        super().check(n_models, has_val)

    def begin(self, history, n_models: int) -> None:
        history.dropped_step = np.full(n_models, -1, dtype=np.int64)
        history.dropped_reason = [""] * n_models

    def decide(self, step: int, view: PopulationView) -> PopulationChange | None:
        """Keep the best :meth:`n_keep` configurations in their places; note in the
        history when and why each of the others left."""
        scores = view.scores(self.metric)
        keep = self.select(scores)
        if keep.size == scores.size:
            return None
        for pos in np.setdiff1d(np.arange(scores.size), keep):
            view.history.dropped_step[view.ids[pos]] = step
            view.history.dropped_reason[view.ids[pos]] = self.reason(scores, int(pos),
                                                                     view.action + 1, step)
        return PopulationChange(rows=keep, slots=keep)

    def check_models(self, n_models: int) -> None:
        if n_models % self.group_size:
            raise XpnetError(f"Halving group_size {self.group_size} does not divide the "
                             f"{n_models} models; give one group per configuration.")

    def n_keep(self, n_models: int) -> int:
        """Configurations a rung keeps out of ``n_models`` models still training."""
        n_groups = n_models // self.group_size
        return min(n_groups, max(self.min_models, math.ceil(n_groups / self.eta)))

    def group_scores(self, scores) -> np.ndarray:
        """Each configuration's mean metric ``(n // group_size,)`` from model scores ``(n,)``."""
        return np.asarray(scores, dtype=np.float64).reshape(-1, self.group_size).mean(axis=1)

    def ranks(self, scores) -> np.ndarray:
        """Each model's configuration rank ``(n,)`` (0 = best) from model scores ``(n,)``."""
        key = self.group_scores(scores)
        key = key if self.higher_is_better else -key
        key = np.where(np.isnan(key), -np.inf, key)
        order = np.argsort(-key, kind="stable")  # best first; ties: lower index first
        group_rank = np.empty(order.size, dtype=np.int64)
        group_rank[order] = np.arange(order.size)
        return np.repeat(group_rank, self.group_size)

    def select(self, scores) -> np.ndarray:
        """Which of the models still training to keep, from their metric ``(n,)``.

        Returns the kept positions into ``scores`` (increasing) as int64 ``(k,)``: whole
        groups of ``group_size``, the best :meth:`n_keep`.
        """
        ranks = self.ranks(scores)
        return np.flatnonzero(ranks < self.n_keep(ranks.size)).astype(np.int64)

    def reason(self, scores, position: int, rung: int, step: int) -> str:
        """Why the model at ``position`` of ``scores`` was dropped, in one line."""
        g = self.group_size
        value = self.group_scores(scores)[position // g]
        n_groups = len(scores) // g
        what = "configurations" if g > 1 else "models"
        shown = "NaN (diverged)" if np.isnan(value) else f"{value:.4g}"
        mean = f"mean {self.metric}" if g > 1 else self.metric
        return (f"halving rung {rung} at step {step}: {mean} {shown} ranked "
                f"{int(self.ranks(scores)[position]) + 1} of {n_groups} {what}, "
                f"{self.n_keep(len(scores))} kept")


def check_metric(owner: str, metric) -> None:
    """Refuse a ``metric`` that :func:`train` does not record (at construction, rather
    than at the first action point)."""
    split, _, kind = metric.partition("_") if isinstance(metric, str) else ("",) * 3
    if split not in ("train", "val") or kind not in METRICS:
        keys = ", ".join(f"{s}_{k}" for s in ("train", "val") for k in METRICS)
        raise XpnetError(f"{owner} metric must be a History key, one of {keys}, got "
                         f"{metric!r}.")


def geometric_rungs(record_at, n_rungs: int, eta: int = 3) -> tuple[int, ...]:
    """``n_rungs`` rungs at ``total / eta**k`` (k = n_rungs .. 1), snapped to record points.

    The classic successive-halving budget: with eta = 3 and 3 rungs, 27 configurations
    become 9, 3 and 1 at a 27th, a ninth and a third of the run; each rung keeps a
    distinct record point before the last.
    """
    points = sorted(record_at)
    total = points[-1]
    candidates = points[:-1]
    if len(candidates) < n_rungs:
        raise XpnetError(f"{n_rungs} rungs need {n_rungs} record points before the last "
                         f"step; this run has {len(candidates)} (raise evals_per_cycle).")
    rungs: list[int] = []
    for k in range(n_rungs, 0, -1):
        free = [p for p in candidates if p not in rungs and (not rungs or p > rungs[-1])]
        room = len(free) - (k - 1)  # leave a point for each later rung
        target = total / eta**k
        rungs.append(min(free[:room], key=lambda p: (abs(p - target), p)))
    return tuple(rungs)
