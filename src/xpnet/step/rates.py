"""What each training step multiplies by, on the device before the step, in one or two calls.

The schedule's rates live on the host.  Once per epoch :class:`StepRates` uploads a table
of the epoch's factors; per step one ``where`` picks, per model, the step's row where the
model is live and the row of a stopped model where it is not (:mod:`xpnet.step.liveness`):

- for optimizers that take the rate (SGD with momentum, Adam): ``eta`` ``(M, 1, 1)``,
  the rate or 0;
- for momentum-free SGD, whose updates come back-propagated already scaled
  (:meth:`~xpnet.training.optim.SGDUpdate.step_prescaled`): the score gradient's factor
  ``-eta / B`` (in place of the mean's ``1 / B``) and the weights' decay factor
  ``1 - eta * decay``, side by side: ``[-rate / B, 1 - rate * decay]`` or ``[0, 1]``.

Computing these on the host saves the step four of the five calls it spent on them
(issue 28).  Tables are ``(steps, M or 1, 1, k)``: one column of models when every model
shares the rates and the decay.
"""

from __future__ import annotations

import numpy as np


class StepRates:
    """The per-step factors of one training run (see the module docstring).

    Args:
        rates: host ``(T,)`` (shared) or ``(T, M)`` (one column per model).
        batch_size: B, the samples per step.
        prescaled: whether the optimizer takes updates already scaled by ``-eta``.
        decay: host ``(M,)`` L2 decay factors (``2 * lam``), or None when none applies.
        backend, dtype: where the tables go.
    """

    def __init__(self, rates, *, batch_size: int, prescaled: bool, decay, backend, dtype):
        self.rates = np.asarray(rates, dtype=np.float64)
        self.batch_size = int(batch_size)
        self.prescaled = prescaled
        self.backend, self.dtype = backend, dtype
        self.table = None
        #: Host float64 ``(M,)``: each model's factor on the schedule's rate (None: 1).
        self.scale = None
        self.set_decay(decay)

    def set_decay(self, decay) -> None:
        """New L2 decay factors, host ``(M,)`` (``2 * lam``) or None when none applies;
        takes effect at the next :meth:`start_epoch`."""
        decay = None if decay is None else np.asarray(decay, dtype=np.float64).reshape(-1)
        if decay is not None and np.all(decay == decay[0]):
            decay = decay[:1]  # one column for every model
        self.decay = decay
        # A stopped model's row: no rate, no decay (shrink 1).
        stopped = [0.0, 1.0] if self.prescaled and decay is not None else [0.0]
        self.stopped = self.backend.asarray(np.array([[stopped]]), dtype=self.dtype)

    def set_scale(self, scale) -> None:
        """Each model's factor on the schedule's rate, host ``(M,)`` (None: all 1);
        takes effect at the next :meth:`start_epoch`."""
        scale = None if scale is None else np.asarray(scale, dtype=np.float64).reshape(-1)
        self.scale = None if scale is None or np.all(scale == 1.0) else scale

    def effective_rates(self, step: int):
        """The rate of ``step`` as the models take it: a float, or host ``(M,)`` when
        the schedule or the scale differ between models."""
        r = self.rates[step]
        return r if self.scale is None else r * self.scale

    def host_table(self, start: int, steps: int) -> np.ndarray:
        """The factors of steps ``start .. start + steps - 1`` for live models:
        ``(steps, M or 1, 1, k)``, ``k`` = 1 (the rate, or ``-rate / B``) or 2 (and
        ``1 - rate * decay``)."""
        r = self.rates[start:start + steps]
        if self.scale is not None:
            r = (r if r.ndim == 2 else r[:, None]) * self.scale
        r = r.reshape(r.shape[0], -1, 1, 1)  # (steps, M or 1, 1, 1)
        if not self.prescaled:
            return r
        columns = [-r / self.batch_size]
        if self.decay is not None:
            columns.append(1.0 - r * self.decay[None, :, None, None])
        width = max(c.shape[1] for c in columns)
        return np.concatenate([np.broadcast_to(c, (c.shape[0], width, 1, 1)) for c in columns],
                              axis=-1)

    def start_epoch(self, start: int, steps: int) -> None:
        """Upload the table of the epoch that begins at step ``start`` (one transfer)."""
        self.table = self.backend.asarray(self.host_table(start, steps), dtype=self.dtype)

    def at(self, j: int, live):
        """Step ``j`` of the epoch, for models with liveness ``live`` ``(M,)`` bool.

        Returns ``(eta, None)`` for an optimizer that takes the rate, else
        ``(factor, shrink)``: ``factor`` ``(M, 1, 1)`` for
        ``loss_and_data_gradients(score_factor=)`` and ``shrink`` ``(M, 1, 1)``, or None
        without decay.
        """
        row = self.backend.xp.where(live[:, None, None], self.table[j, ...], self.stopped)
        if row.shape[-1] == 1:
            return row, None
        return row[..., :1], row[..., 1:]

    def take(self, keep, index) -> None:
        """Model i takes model ``keep[i]``'s rates, scale and decay (host indices, repeats
        allowed; ``index`` the same on the device)."""
        if self.rates.ndim == 2:
            self.rates = self.rates[:, keep]
        if self.scale is not None:
            self.scale = self.scale[keep]
        if self.decay is not None and self.decay.shape[0] > 1:
            self.decay = self.decay[keep]
        if self.table is not None and self.table.shape[1] > 1:
            self.table = self.backend.xp.take(self.table, index, axis=1)
