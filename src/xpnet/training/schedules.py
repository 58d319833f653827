"""Learning-rate schedules, evaluated on the host: a table of rates, one row per step.

``CyclicalLR`` is the triangular policy of Smith (2017) as in
``torch.optim.lr_scheduler.CyclicLR(mode="triangular")``: the rate climbs linearly from
``eta_min`` to ``eta_max`` over ``n_s`` steps and falls back over the next ``n_s``; one
cycle is ``2 * n_s`` steps.  ``RangeTestLR`` is the learning-rate range test of the same
paper (section 3.3): one sweep from ``eta_min`` up to ``eta_max``.

Per-model rates.  The rate-valued parameters (``eta_min``, ``eta_max``, ``eta``,
``eta0``, ``factor``), the step size ``every`` of :class:`StepDecayLR` and the spacing
of :class:`RangeTestLR` take one value for all models or a sequence of one value per
model.  With any of them per model, ``rates()`` returns ``(T, M)`` (column m is model
m's schedule, exactly the scalar schedule of its values); otherwise ``(T,)``, as a
scalar schedule always has.  The length parameters that fix ``T`` and the record points
(``n_s``, ``cycles``, ``steps``, ``cycle_length``) are shared: lockstep models take the
same number of steps.

Lengths in epochs.  ``CyclicalLR(n_s_epochs=5)`` gives the half-cycle in epochs rather
than steps (``n_s`` then holds :class:`Epochs`); it becomes a number of steps once the
epoch's length is known, by :func:`resolve` (``train`` and
``Classifier.fit`` call it): ``n_s = max(1, round(epochs * steps_per_epoch))`` with
``steps_per_epoch = n_train // batch_size``, as :func:`xpnet.training.loop.train` counts an
epoch.  A schedule given in steps is unchanged by it, and its fields (hence
``dataclasses.asdict``) are exactly what they were before epochs existed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.base import inputs
from xpnet.errors import XpnetError


@dataclasses.dataclass(frozen=True)
class Epochs:
    """A schedule length counted in epochs, turned into steps by :meth:`steps`."""

    epochs: float

    def __post_init__(self):
        value = inputs.numbers(self.epochs)
        if value is None or value.ndim != 0 or not (np.isfinite(value) and value > 0):
            raise XpnetError(f"A length in epochs must be one positive number, "
                             f"got {self.epochs!r}.")
        object.__setattr__(self, "epochs", float(value))

    def steps(self, steps_per_epoch: int) -> int:
        """``max(1, round(epochs * steps_per_epoch))``."""
        return max(1, round(self.epochs * int(steps_per_epoch)))


def resolve(schedule, steps_per_epoch: int):
    """``schedule`` with its lengths in epochs turned into steps (see :class:`Epochs`).

    Schedules that are not from this module (anything with ``rates()`` and
    ``cycle_length``) are returned unchanged.
    """
    return schedule.resolve(steps_per_epoch) if isinstance(schedule, _Schedule) else schedule


class _Schedule:
    """Shared machinery: per-model fields normalised to a float/int or a tuple of them."""

    #: Fields that may hold one value per model.
    PER_MODEL: tuple[str, ...] = ()
    #: Fields that must be positive numbers (per-model or not).
    POSITIVE: tuple[str, ...] = ()
    #: Fields that are whole numbers.
    INTEGER: tuple[str, ...] = ()

    def __post_init__(self):
        self._normalise()

    @property
    def total_steps(self) -> int:
        """Steps of the schedule: ``steps``, unless a subclass derives it."""
        return self.steps

    def resolve(self, steps_per_epoch: int):
        """This schedule with lengths in epochs turned into steps (here: itself)."""
        return self

    def _normalise(self) -> None:
        lengths = set()
        for name in self.POSITIVE:
            value = getattr(self, name)
            if isinstance(value, Epochs):
                continue
            arr = inputs.numbers(value)  # None unless a number or a flat sequence of them
            per_model = arr is not None and arr.ndim > 0
            if per_model and name not in self.PER_MODEL:
                raise XpnetError(f"{name} is shared by all models; give one number, "
                                 f"got {value!r}.")
            if arr is None or arr.size == 0 or not np.all(np.isfinite(arr) & (arr > 0)):
                raise XpnetError(f"{name} must be a positive number"
                                 f"{' or one per model' if name in self.PER_MODEL else ''}, "
                                 f"got {value!r}.")
            cast = int if name in self.INTEGER else float
            if name in self.INTEGER and not np.all(arr == np.round(arr)):
                raise XpnetError(f"{name} must be a whole number, got {value!r}.")
            if per_model:
                lengths.add(arr.size)
                object.__setattr__(self, name, tuple(cast(v) for v in arr.tolist()))
            else:
                object.__setattr__(self, name, cast(arr))
        if len(lengths) > 1:
            raise XpnetError("Per-model schedule parameters must all have one value per "
                             f"model; got lengths {sorted(lengths)}.")

    def per_model_fields(self) -> tuple[str, ...]:
        """Names of the fields given one value per model (empty: a shared schedule)."""
        return tuple(name for name in self.PER_MODEL if isinstance(getattr(self, name), tuple))

    @property
    def n_models(self) -> int | None:
        """M when some parameter is per model, else None."""
        fields = self.per_model_fields()
        return len(getattr(self, fields[0])) if fields else None

    def _arg(self, name: str):
        """A field for :meth:`_table`: a float, or a row ``(1, M)`` for a per-model field."""
        value = getattr(self, name)
        return np.asarray(value, dtype=np.float64)[None, :] if isinstance(value, tuple) else value

    def rates(self) -> np.ndarray:
        """The rate of every step ``t = 0 .. total_steps - 1``: ``(T,)``, or ``(T, M)``."""
        M = self.n_models
        t = np.arange(self.total_steps, dtype=np.float64)
        table = self._table(t if M is None else t[:, None])
        shape = (self.total_steps,) if M is None else (self.total_steps, M)
        return np.array(np.broadcast_to(table, shape), dtype=np.float64)

    def _table(self, t):
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class CyclicalLR(_Schedule):
    """Triangular cyclical rate: ``cycles`` cycles of ``2 * n_s`` steps.

    ``eta_min`` and ``eta_max`` may be per model; ``n_s`` and ``cycles`` are shared.
    ``n_s_epochs`` gives the half-cycle in epochs instead (the reports' 5 epochs:
    ``CyclicalLR(1e-5, 1e-1, n_s_epochs=5)``); ``n_s`` then holds :class:`Epochs` until
    :meth:`resolve` turns it into steps.
    """

    eta_min: float | tuple[float, ...] = 1e-5
    eta_max: float | tuple[float, ...] = 1e-1
    n_s: int | Epochs = 2250
    cycles: int = 2
    n_s_epochs: dataclasses.InitVar[float | None] = None

    PER_MODEL = ("eta_min", "eta_max")
    POSITIVE = ("eta_min", "eta_max", "n_s", "cycles")
    INTEGER = ("n_s", "cycles")

    def __post_init__(self, n_s_epochs=None):
        if n_s_epochs is not None:
            if self.n_s != CyclicalLR.n_s:
                raise XpnetError("Give the half-cycle as n_s (steps) or as n_s_epochs, "
                                 "not both.")
            object.__setattr__(self, "n_s", Epochs(n_s_epochs))
        self._normalise()
        if np.any(np.asarray(self.eta_min) > np.asarray(self.eta_max)):
            raise XpnetError("eta_min must not exceed eta_max.")

    def resolve(self, steps_per_epoch: int) -> CyclicalLR:
        """This schedule with ``n_s`` in steps: ``n_s_epochs * steps_per_epoch``, rounded."""
        if not isinstance(self.n_s, Epochs):
            return self
        return dataclasses.replace(self, n_s=self.n_s.steps(steps_per_epoch))

    @property
    def total_steps(self) -> int:
        return 2 * self._steps_n_s() * self.cycles

    @property
    def cycle_length(self) -> int:
        return 2 * self._steps_n_s()

    def _steps_n_s(self) -> int:
        if isinstance(self.n_s, Epochs):
            raise XpnetError(f"n_s is {self.n_s.epochs:g} epochs, so the schedule's steps are "
                             "unknown until resolve(steps_per_epoch) turns it into steps "
                             "(train and Classifier.fit do).")
        return self.n_s

    def _table(self, t):
        phase = (t % self.cycle_length) / self._steps_n_s()  # in [0, 2)
        rise = 1.0 - np.abs(1.0 - phase)  # 0 -> 1 -> 0 over one cycle
        lo, hi = self._arg("eta_min"), self._arg("eta_max")
        return lo + (hi - lo) * rise


@dataclasses.dataclass(frozen=True)
class ConstantLR(_Schedule):
    """A fixed rate (per model or shared) for ``steps`` steps; ``cycle_length`` sets how
    often to record history."""

    eta: float | tuple[float, ...] = 0.01
    steps: int = 4500
    cycle_length: int = 450

    PER_MODEL = ("eta",)
    POSITIVE = ("eta", "steps", "cycle_length")
    INTEGER = ("steps", "cycle_length")

    def _table(self, t):
        return self._arg("eta") + 0.0 * t


@dataclasses.dataclass(frozen=True)
class StepDecayLR(_Schedule):
    """``eta0 * factor ** (t // every)`` for ``steps`` steps (``torch``'s ``StepLR``).

    ``eta0``, ``factor`` and the step size ``every`` may be per model.
    """

    eta0: float | tuple[float, ...] = 0.1
    factor: float | tuple[float, ...] = 0.1
    every: int | tuple[int, ...] = 2250
    steps: int = 9000
    cycle_length: int = 450

    PER_MODEL = ("eta0", "factor", "every")
    POSITIVE = ("eta0", "factor", "every", "steps", "cycle_length")
    INTEGER = ("every", "steps", "cycle_length")

    def _table(self, t):
        return self._arg("eta0") * self._arg("factor") ** (t // self._arg("every"))


#: Spacings of :class:`RangeTestLR`.
SPACINGS = ("linear", "log")


@dataclasses.dataclass(frozen=True)
class RangeTestLR(_Schedule):
    """The learning-rate range test (Smith 2017, section 3.3): one rising sweep.

    The rate goes from ``eta_min`` at step 0 to ``eta_max`` at the last step, evenly
    spaced in eta (``spacing="linear"``, as in the paper) or in ``log(eta)``
    (``"log"``, which resolves the small rates too).  ``eta_min``, ``eta_max`` and
    ``spacing`` may be per model, so one lockstep run can hold both sweeps.
    ``cycle_length`` sets how often to record history (``TrainConfig.evals_per_cycle``
    points per ``cycle_length`` steps).
    """

    eta_min: float | tuple[float, ...] = 1e-5
    eta_max: float | tuple[float, ...] = 1.0
    steps: int = 1800
    cycle_length: int = 1800
    spacing: str | tuple[str, ...] = "linear"

    PER_MODEL = ("eta_min", "eta_max", "spacing")
    POSITIVE = ("eta_min", "eta_max", "steps", "cycle_length")
    INTEGER = ("steps", "cycle_length")

    def __post_init__(self):
        self._normalise()
        spacing = self.spacing
        values = ((spacing,) if not isinstance(spacing, (tuple, list, np.ndarray))
                  else tuple(spacing))
        if not values or any(not isinstance(v, str) or v not in SPACINGS for v in values):
            raise XpnetError(f"spacing must be one of {', '.join(SPACINGS)} (or one per "
                             f"model), got {spacing!r}.")
        object.__setattr__(self, "spacing", spacing if isinstance(spacing, str) else values)
        lengths = {len(getattr(self, f)) for f in self.per_model_fields()}
        if len(lengths) > 1:
            raise XpnetError("Per-model schedule parameters must all have one value per "
                             f"model; got lengths {sorted(lengths)}.")
        if self.steps < 2:
            raise XpnetError("A range test needs at least 2 steps.")
        if np.any(np.asarray(self.eta_min) >= np.asarray(self.eta_max)):
            raise XpnetError("eta_min must be below eta_max.")

    def _table(self, t):
        frac = t / (self.steps - 1)
        lo, hi = self._arg("eta_min"), self._arg("eta_max")
        linear = lo + (hi - lo) * frac
        log = lo * (hi / lo) ** frac
        if isinstance(self.spacing, str):
            return log if self.spacing == "log" else linear
        is_log = np.array([s == "log" for s in self.spacing])[None, :]
        return np.where(is_log, log, linear)
