"""Which of the lockstep models still train, tracked on the device in few array calls.

A model whose batch loss is non-finite or above ``TrainConfig.divergence_loss`` is marked
diverged at that step and stops updating (its rate becomes 0: :mod:`xpnet.step.rates`
selects a zero rate where ``live`` is false).  Nothing here reads a value back to the host
inside the step (design rule 6); :meth:`Liveness.diverged_step` is read at the record
points only.

Per step this costs three array calls: a ``where`` that stamps the step number on every
model still live, the comparison and an ``&``.  A model that diverges at step ``t`` keeps
the last stamp, ``t``.  The step numbers arrive once per epoch (:meth:`start_epoch`) and
are kept in the net's float dtype, exact up to 2**24 steps in float32.
"""

from __future__ import annotations

import numpy as np


class Liveness:
    """``live`` ``(M,)`` bool: the models still training; ``stamp`` ``(M,)``: the last step
    each model started live (the step a diverged model diverged at)."""

    def __init__(self, net):
        xp, device = net.xp, net.backend.device
        self.xp, self.backend, self.dtype = xp, net.backend, net.dtype
        self.live = xp.ones((net.n_models,), dtype=xp.bool, device=device)
        self.stamp = xp.zeros((net.n_models,), dtype=net.dtype, device=device)
        self.steps = None

    def start_epoch(self, start: int, steps: int) -> None:
        """Upload the step numbers ``start .. start + steps - 1`` (one transfer)."""
        self.steps = self.backend.asarray(np.arange(start, start + steps, dtype=np.float64),
                                          dtype=self.dtype)

    def observe(self, loss, divergence_loss: float, j: int) -> None:
        """Step ``j`` of the epoch: mark the models whose batch loss ``(M,)`` diverged
        (NaN and inf included)."""
        xp = self.xp
        self.stamp = xp.where(self.live, self.steps[j], self.stamp)
        self.live = self.live & (loss <= divergence_loss)

    def diverged_step(self):
        """Device int64 ``(M,)``: the step each model diverged at, -1 for live ones."""
        xp = self.xp
        return xp.where(self.live, -1, xp.astype(self.stamp, xp.int64))

    def take(self, index) -> None:
        """Keep the models at device ``index`` only (successive halving)."""
        self.live = self.xp.take(self.live, index, axis=0)
        self.stamp = self.xp.take(self.stamp, index, axis=0)
