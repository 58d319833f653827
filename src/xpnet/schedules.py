"""Learning-rate schedules, evaluated on the host (one float per step).

``CyclicalLR`` is the triangular policy of Smith (2017) as in
``torch.optim.lr_scheduler.CyclicLR(mode="triangular")``: the rate climbs linearly from
``eta_min`` to ``eta_max`` over ``n_s`` steps and falls back over the next ``n_s``; one
cycle is ``2 * n_s`` steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet.errors import XpnetError


def _check_positive(**values):
    for name, value in values.items():
        if not (np.isfinite(value) and value > 0):
            raise XpnetError(f"{name} must be a positive number, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class CyclicalLR:
    """Triangular cyclical rate: ``cycles`` cycles of ``2 * n_s`` steps."""

    eta_min: float = 1e-5
    eta_max: float = 1e-1
    n_s: int = 2250
    cycles: int = 2

    def __post_init__(self):
        _check_positive(eta_min=self.eta_min, eta_max=self.eta_max, n_s=self.n_s,
                        cycles=self.cycles)
        if self.eta_min > self.eta_max:
            raise XpnetError("eta_min must not exceed eta_max.")

    @property
    def total_steps(self) -> int:
        return 2 * self.n_s * self.cycles

    @property
    def cycle_length(self) -> int:
        return 2 * self.n_s

    def rates(self) -> np.ndarray:
        """The rate at every step ``t = 0 .. total_steps - 1``, shape ``(total_steps,)``."""
        t = np.arange(self.total_steps)
        phase = (t % self.cycle_length) / self.n_s  # in [0, 2)
        rise = 1.0 - np.abs(1.0 - phase)  # 0 -> 1 -> 0 over one cycle
        return self.eta_min + (self.eta_max - self.eta_min) * rise


@dataclasses.dataclass(frozen=True)
class ConstantLR:
    """A fixed rate for ``steps`` steps; ``cycle_length`` sets how often to record history."""

    eta: float = 0.01
    steps: int = 4500
    cycle_length: int = 450

    def __post_init__(self):
        _check_positive(eta=self.eta, steps=self.steps, cycle_length=self.cycle_length)

    @property
    def total_steps(self) -> int:
        return self.steps

    def rates(self) -> np.ndarray:
        return np.full(self.steps, float(self.eta))


@dataclasses.dataclass(frozen=True)
class StepDecayLR:
    """``eta0 * factor ** (t // every)`` for ``steps`` steps (``torch``'s ``StepLR``)."""

    eta0: float = 0.1
    factor: float = 0.1
    every: int = 2250
    steps: int = 9000
    cycle_length: int = 450

    def __post_init__(self):
        _check_positive(eta0=self.eta0, factor=self.factor, every=self.every,
                        steps=self.steps, cycle_length=self.cycle_length)

    @property
    def total_steps(self) -> int:
        return self.steps

    def rates(self) -> np.ndarray:
        return self.eta0 * self.factor ** (np.arange(self.steps) // self.every)
