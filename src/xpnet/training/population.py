"""Population schedules: what happens to the model axis at a run's record points.

A lockstep run trains M models as one network.  A *population schedule* (successive
halving, :mod:`xpnet.search.halving`; population-based training) acts on that axis at some of
the run's record points, where the metrics are already on the host, so it costs no extra
host sync.  It answers one question there, as a :class:`PopulationChange`: which model's
state each model of the new population takes (``rows``), whose place it takes
(``slots``), and which of its hyper-parameters change (``hyper``).
:func:`xpnet.training.loop.train` applies the change to everything that has a model axis:
parameters, buffers, optimizer state, liveness, the rate table and the per-model
hyper-parameters, then the batch orders and dropout streams of the places.

Halving keeps the best models in their places (``rows == slots``, a subset); PBT keeps
every place and copies the best models' state into the worst ones' (``slots`` every
place, ``rows`` with repeats) and then perturbs their hyper-parameters.

A schedule is a frozen dataclass with no state of its own: what it decides depends only
on the step, the history and its seed, so a run resumed from a checkpoint decides the
same (draw randomness from ``numpy.random.default_rng([seed, step])``).
"""

from __future__ import annotations

import abc
import dataclasses

import numpy as np

from xpnet.errors import XpnetError

#: The hyper-parameters a change may set per model (host float64 ``(M',)`` each):
#: the rate's per-model factor, the L2 strength, SGD's momentum, and the network's
#: per-model options (:func:`xpnet.nn.options.per_model_names`: ``dropout``, ``bn_eps``...).
RUN_HYPER = ("rate_scale", "lam", "momentum")


@dataclasses.dataclass(frozen=True)
class PopulationChange:
    """What a population schedule does to the model axis at one record point.

    Attributes:
        rows: host int64 ``(M',)``: new model i takes the whole state of model
            ``rows[i]`` (parameters, buffers, optimizer state, liveness, its row of the
            rate table and every per-model hyper-parameter).  Repeats allowed.
        slots: host int64 ``(M',)``, distinct: new model i continues the *place* of
            model ``slots[i]``: its column of the history, its batch order and its
            dropout stream.  A place not in ``slots`` leaves the run.
        hyper: new per-model hyper-parameters after the gather, by name (see
            :data:`RUN_HYPER` and the network's per-model options), host ``(M',)``.
    """

    rows: np.ndarray
    slots: np.ndarray
    hyper: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        rows = np.asarray(self.rows, dtype=np.int64).reshape(-1)
        slots = np.asarray(self.slots, dtype=np.int64).reshape(-1)
        if rows.shape != slots.shape or rows.size == 0:
            raise XpnetError("A population change needs one row and one slot per new model.")
        if np.unique(slots).size != slots.size:
            raise XpnetError("A population change cannot put two models in one place.")
        hyper = {name: np.asarray(v, dtype=np.float64).reshape(-1)
                 for name, v in self.hyper.items()}
        for name, values in hyper.items():
            if values.shape != rows.shape:
                raise XpnetError(f"A population change sets {name} for {values.size} models, "
                                 f"not the {rows.size} of the new population.")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "slots", slots)
        object.__setattr__(self, "hyper", hyper)

    def is_identity(self, n_models: int) -> bool:
        """Whether the change leaves an ``n_models`` population as it is."""
        same = np.arange(n_models)
        return (not self.hyper and self.rows.size == n_models
                and np.array_equal(self.rows, same) and np.array_equal(self.slots, same))


class PopulationSchedule(abc.ABC):
    """What :func:`xpnet.training.loop.train` asks of a population schedule (a base class).

    Subclasses are frozen dataclasses (see the module docstring) and implement:

    - :meth:`action_steps`: the record points where the schedule acts;
    - :meth:`check`: refuse, in one sentence, a run it cannot act on;
    - :meth:`begin`: set up what it records in the history (optional);
    - :meth:`decide`: the :class:`PopulationChange` at one of those points, or None.
    """

    #: The History key the schedule ranks by.
    metric: str = "val_accuracy"

    @property
    def higher_is_better(self) -> bool:
        """Whether a higher :attr:`metric` ranks first (accuracies; a loss ranks lowest first)."""
        return self.metric.endswith("accuracy")

    @abc.abstractmethod
    def action_steps(self, record_at, steps_per_epoch: int) -> list[int]:
        """The steps (record points of ``record_at``, before the last) where it acts."""

    def check(self, n_models: int, has_val: bool) -> None:
        """Raise :class:`XpnetError` if it cannot act on ``n_models`` models."""
        if self.metric.startswith("val_") and not has_val:
            raise XpnetError(f"{type(self).__name__} by {self.metric} needs validation data; "
                             "pass val_data or rank by a train_ metric.")

    def begin(self, history, n_models: int) -> None:  # noqa: B027 (optional: most add nothing)
        """Before the first step: add the schedule's own fields to ``history``."""

    @abc.abstractmethod
    def decide(self, step: int, view: PopulationView) -> PopulationChange | None:
        """The change at ``step`` (one of :meth:`action_steps`), or None for none."""


def nearest_record_point(points, wanted: int) -> int:
    """The record point of ``points`` nearest step ``wanted`` (the later one on a tie): where
    a schedule given in epochs or intervals acts."""
    return min(points, key=lambda p: (abs(p - wanted), -p))


@dataclasses.dataclass(frozen=True)
class PopulationView:
    """What a schedule sees when it decides, all on the host.

    Attributes:
        history: the run's :class:`~xpnet.training.history.History` (columns: the places the run
            started with), its last row just recorded at this step.
        ids: int64 ``(M,)``: the history column of each model now in the network.
        hyper: each per-model hyper-parameter now, host float64 ``(M,)`` by name
            (``rate_scale``, ``lam``, ``momentum`` and the network's per-model options).
        steps_per_epoch: the run's epoch length, in steps.
        action: which of the schedule's :meth:`~PopulationSchedule.action_steps` this is
            (0 for the first).
    """

    history: object
    ids: np.ndarray
    hyper: dict
    steps_per_epoch: int
    action: int

    def scores(self, metric: str) -> np.ndarray:
        """The models' ``metric`` at this record point, host ``(M,)`` (NaN: diverged)."""
        return np.asarray(self.history.metrics[metric][-1, self.ids], dtype=np.float64)

