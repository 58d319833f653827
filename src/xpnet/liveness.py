"""Which of the lockstep models still train, tracked on the device in few array calls.

A model whose batch loss is non-finite or above ``TrainConfig.divergence_loss`` is marked
diverged at that step and stops updating (its rate becomes 0).  Nothing here reads a
value back to the host inside the step (design rule 6); :meth:`Liveness.diverged_step`
is read at the record points only.

Per step this costs three array calls: the comparison, a ``where`` and one addition;
the step's rates read ``live`` (:mod:`xpnet.step_rates`).
Instead of writing the step of divergence each step, it counts the steps each model
finished alive: a model that diverges at step ``t`` finished steps ``0 .. t-1`` alive,
so its count is ``t``.  The count is kept in the net's float dtype, exact up to 2**24
steps in float32.
"""

from __future__ import annotations


class Liveness:
    """``live`` ``(M,)``: 1 for models still training, 0 for diverged ones (net dtype);
    ``steps_alive`` ``(M,)``: the steps each model finished alive."""

    def __init__(self, net):
        xp, device = net.xp, net.backend.device
        self.xp = xp
        self.live = xp.ones((net.n_models,), dtype=net.dtype, device=device)
        self.steps_alive = xp.zeros((net.n_models,), dtype=net.dtype, device=device)

    def observe(self, loss, divergence_loss: float) -> None:
        """Mark the models whose batch loss ``(M,)`` diverged (NaN and inf included)."""
        self.live = self.xp.where(loss <= divergence_loss, self.live, 0.0)
        self.steps_alive = self.steps_alive + self.live

    def diverged_step(self):
        """Device int64 ``(M,)``: the step each model diverged at, -1 for live ones."""
        xp = self.xp
        return xp.where(self.live > 0.0, -1, xp.astype(self.steps_alive, xp.int64))

    def take(self, index) -> None:
        """Keep the models at device ``index`` only (successive halving)."""
        self.live = self.xp.take(self.live, index, axis=0)
        self.steps_alive = self.xp.take(self.steps_alive, index, axis=0)
