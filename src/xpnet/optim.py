"""Stochastic gradient descent with optional momentum and L2 decay, for parameter dicts.

Semantics follow ``torch.optim.SGD``: ``g = grad + decay * p``; with momentum
``v = momentum * v + g`` and ``g = v``; then ``p -= eta * g``.  ``eta`` and ``momentum``
may be Python floats or per-model arrays ``(M, 1, 1)`` (``eta`` zero for models that
have stopped), and ``decay`` a per-model array ``(M, 1, 1)`` (``Network.decay``, from
:mod:`xpnet.l2`), so one update serves every model in lockstep without a host sync.
"""

from __future__ import annotations

import array_api_compat


class SGD:
    """SGD over a dict of arrays, updated in place."""

    def __init__(self, params: dict, momentum=0.0, decay=None, decay_names=None):
        """``decay`` applies to the names in ``decay_names`` (default: all of ``params``).

        ``momentum``: a float in [0, 1), or a per-model device array ``(M, 1, 1)``
        (validated by the caller, e.g. :class:`~xpnet.training.TrainConfig`).
        """
        if isinstance(momentum, (int, float)):
            if not 0.0 <= momentum < 1.0:
                from xpnet.errors import XpnetError

                raise XpnetError(f"momentum must be in [0, 1), got {momentum!r}.")
            momentum = float(momentum)
        self.momentum = momentum
        self.decay = decay
        self.decay_names = set(params if decay_names is None else decay_names)
        self.velocity = None
        if not (isinstance(momentum, float) and momentum == 0.0):
            self.velocity = {k: 0.0 * v for k, v in params.items()}

    def step(self, params: dict, grads: dict, eta) -> None:
        """Apply one update to every entry of ``params`` that has a gradient."""
        for name, grad in grads.items():
            decays = self.decay is not None and name in self.decay_names
            if self.velocity is not None:
                v = self.velocity[name]
                v *= self.momentum
                v += grad
                if decays:
                    v += self.decay * params[name]
                params[name] -= eta * v
            elif decays:
                # p - eta * (g + decay * p) = p * (1 - eta * decay) - eta * g, in place.
                params[name] *= 1.0 - eta * self.decay
                params[name] -= eta * grad
            else:
                params[name] -= eta * grad

    def step_prescaled(self, params: dict, updates: dict, eta) -> None:
        """Apply updates already multiplied by ``-eta`` (momentum-free SGD only).

        ``updates`` come from back-propagating a score gradient scaled by ``-eta``; the
        decay still needs ``eta`` ``(M, 1, 1)``.  Two passes over each weight matrix
        instead of three.
        """
        if self.velocity is not None:
            raise ValueError("step_prescaled is for SGD without momentum.")
        for name, update in updates.items():
            if self.decay is not None and name in self.decay_names:
                params[name] *= 1.0 - eta * self.decay
            params[name] += update

    def take_models(self, keep) -> None:
        """Keep only models ``keep`` (host int64 ``(k,)``) of every per-model state array:
        the velocity, and ``momentum`` and ``decay`` where they are ``(M, 1, 1)`` arrays.
        ``xp.take`` along the model axis with an index array on each array's own device."""
        def take(value):
            if value is None or isinstance(value, float):
                return value
            xp = array_api_compat.array_namespace(value)
            idx = xp.asarray(keep, dtype=xp.int64, device=array_api_compat.device(value))
            return xp.take(value, idx, axis=0)

        self.momentum = take(self.momentum)
        self.decay = take(self.decay)
        if self.velocity is not None:
            self.velocity = {name: take(v) for name, v in self.velocity.items()}
