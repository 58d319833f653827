"""Optimizers: one frozen dataclass of options each, and the update object it builds.

=========  ==========================================  ================================
option     update (``g``: the loss gradient, ``p``)    regularisation
=========  ==========================================  ================================
``SGD``    ``v = momentum * v + g + decay * p``;        L2 of the cost (``lam``, through
           ``p -= eta * v`` (``torch.optim.SGD``)       ``decay = 2 * lam``: :mod:`xpnet.l2`)
``Adam``   ``g += decay * p``; ``m``, ``v`` moving      the same L2, inside ``g``, as
           averages of ``g`` and ``g * g`` with         ``torch.optim.Adam(weight_decay=)``
           bias correction; ``p -= eta * m_hat /``
           ``(sqrt(v_hat) + eps)`` (Kingma & Ba 2015)
``AdamW``  ``p *= 1 - eta * weight_decay``, then        decoupled weight decay
           Adam's step (Loshchilov & Hutter 2019,       (``torch.optim.AdamW``), plus the
           ``torch.optim.AdamW``)                       cost's L2 if ``lam`` > 0
=========  ==========================================  ================================

Decay, L2 or decoupled, applies to the weight matrices only (:func:`xpnet.l2.is_penalised`);
``torch.optim`` decays every parameter of a group, so compare with the biases and batch
norm's parameters in a group of their own with ``weight_decay=0``.

The rate ``eta`` comes from the schedule (a float, or per-model ``(M, 1, 1)``, zero for
models that have stopped); ``momentum`` and ``weight_decay`` take one value or one per
model, the betas and ``eps`` one per run.  Every update works on the leading model axis
without a host sync, and :meth:`take_models` keeps the state of some models only.
"""

from __future__ import annotations

import dataclasses
import math

import array_api_compat
import numpy as np

from xpnet import l2, options
from xpnet.errors import XpnetError


def _unit(a):
    return (a >= 0) & (a < 1)


class _Options:
    """What the option dataclasses share: checks, per-model fields, their spec form."""

    def __post_init__(self):
        options.check_fields(self)

    def per_model_fields(self) -> tuple[str, ...]:
        """Names of the fields given one value per model."""
        return tuple(name for name in options.per_model_names(type(self))
                     if isinstance(getattr(self, name), tuple))

    @property
    def n_models(self) -> int | None:
        """M when some field is per model, else None."""
        fields = self.per_model_fields()
        return len(getattr(self, fields[0])) if fields else None


@dataclasses.dataclass(frozen=True)
class SGD(_Options):
    """Stochastic gradient descent with (heavy-ball) momentum, as ``torch.optim.SGD``."""

    momentum: float = options.per_model(0.0, "in [0, 1)", _unit)

    def build(self, net) -> SGDUpdate:
        return SGDUpdate(net.params, _column(self.momentum, net, "momentum"), decay=net.decay,
                         decay_names=_penalised(net))


@dataclasses.dataclass(frozen=True)
class Adam(_Options):
    """Adam (Kingma & Ba 2015) with bias correction, as ``torch.optim.Adam``."""

    beta1: float = options.shared(0.9, "in [0, 1)", _unit)
    beta2: float = options.shared(0.999, "in [0, 1)", _unit)
    eps: float = options.shared(1e-8, "above 0", lambda a: a > 0)

    def build(self, net) -> AdamUpdate:
        return AdamUpdate(net.params, self.beta1, self.beta2, self.eps, decay=net.decay,
                          decay_names=_penalised(net))


@dataclasses.dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``."""

    weight_decay: float = options.per_model(0.01, "of at least 0", lambda a: a >= 0)

    def build(self, net) -> AdamUpdate:
        return AdamUpdate(net.params, self.beta1, self.beta2, self.eps, decay=net.decay,
                          decay_names=_penalised(net),
                          weight_decay=_column(self.weight_decay, net, "weight_decay"))


#: Optimizer option classes by name, as a spec writes them.
OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW)}


def to_dict(optimizer) -> dict | None:
    """``{"type": class name, **fields}`` of an optimizer's options (None stays None)."""
    if optimizer is None:
        return None
    return {"type": type(optimizer).__name__, **dataclasses.asdict(optimizer)}


def from_dict(d: dict | None):
    """The optimizer options :func:`to_dict` wrote (lists read as per-model tuples)."""
    if d is None:
        return None
    fields = dict(d)
    name = fields.pop("type", None)
    if name not in OPTIMIZERS:
        raise XpnetError(f"Unknown optimizer {name!r}; use one of: {', '.join(OPTIMIZERS)}.")
    return OPTIMIZERS[name](**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in fields.items()})


def _penalised(net) -> list[str]:
    return [name for name in net.params if l2.is_penalised(name)]


def _column(value, net, name):
    """A per-model option as a float when every model shares it, else device ``(M, 1, 1)``."""
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size not in (1, net.n_models):
        raise XpnetError(f"{name} has {arr.size} values but the network has {net.n_models} "
                         "models; give one value per model or one for all.")
    if np.all(arr == arr[0]):
        return float(arr[0])
    # A writable copy: PyTorch warns on tensors over read-only memory.
    return net.backend.asarray(arr[:, None, None].copy(), dtype=net.dtype)


def _take(value, keep):
    """Rows ``keep`` (host int64 ``(M',)``) of a device array's leading axis; floats as they are."""
    if value is None or isinstance(value, float):
        return value
    xp = array_api_compat.array_namespace(value)
    index = xp.asarray(np.asarray(keep, dtype=np.int64), device=array_api_compat.device(value))
    return xp.take(value, index, axis=0)


class SGDUpdate:
    """SGD over a dict of arrays, updated in place (see the module docstring)."""

    def __init__(self, params: dict, momentum=0.0, decay=None, decay_names=None):
        """``decay`` applies to the names in ``decay_names`` (default: all of ``params``).

        ``momentum``: a float in [0, 1), or a per-model device array ``(M, 1, 1)``.
        """
        if isinstance(momentum, (int, float)):
            if not 0.0 <= momentum < 1.0:
                raise XpnetError(f"momentum must be in [0, 1), got {momentum!r}.")
            momentum = float(momentum)
        self.momentum = momentum
        self.decay = decay
        self.decay_names = set(params if decay_names is None else decay_names)
        self.velocity = None
        if not (isinstance(momentum, float) and momentum == 0.0):
            self.velocity = {k: 0.0 * v for k, v in params.items()}

    @property
    def prescaled(self) -> bool:
        """Whether updates may come back-propagated already scaled (see :meth:`step_prescaled`)."""
        return self.velocity is None

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
        shrink = None  # 1 - eta * decay, the same for every weight matrix: computed once
        for name, update in updates.items():
            if self.decay is not None and name in self.decay_names:
                if shrink is None:
                    shrink = 1.0 - eta * self.decay
                params[name] *= shrink
            params[name] += update

    def take_models(self, keep) -> None:
        """Keep the state of models ``keep`` (host int64 indices) only, in that order."""
        self.momentum, self.decay = _take(self.momentum, keep), _take(self.decay, keep)
        if self.velocity is not None:
            self.velocity = {k: _take(v, keep) for k, v in self.velocity.items()}


class AdamUpdate:
    """Adam, or AdamW with ``weight_decay``, over a dict of arrays, updated in place.

    The step count ``t`` (for the bias correction) is shared by the lockstep models and
    kept on the host, so the correction is two Python floats per step.
    """

    prescaled = False

    def __init__(self, params: dict, beta1: float, beta2: float, eps: float, *, decay=None,
                 decay_names=None, weight_decay=None):
        """``decay`` (L2, ``(M, 1, 1)``) and ``weight_decay`` (decoupled: a float or
        ``(M, 1, 1)``) apply to the names in ``decay_names`` (default: all of ``params``)."""
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.decay = decay
        self.weight_decay = (None if isinstance(weight_decay, float) and weight_decay == 0.0
                             else weight_decay)
        self.decay_names = set(params if decay_names is None else decay_names)
        self.m = {k: 0.0 * v for k, v in params.items()}
        self.v = {k: 0.0 * v for k, v in params.items()}
        self.t = 0
        self.xp = array_api_compat.array_namespace(*params.values())

    def step(self, params: dict, grads: dict, eta) -> None:
        """One Adam step of every entry of ``params`` that has a gradient."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = 1.0 / (1.0 - b1 ** self.t)  # times eta: the first moment's correction
        root_c2 = math.sqrt(1.0 - b2 ** self.t)
        for name, g in grads.items():
            p = params[name]
            decays = name in self.decay_names
            if decays and self.decay is not None:
                g = g + self.decay * p
            if decays and self.weight_decay is not None:
                p *= 1.0 - eta * self.weight_decay
            m, v = self.m[name], self.v[name]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p -= (eta * step_size) * m / (self.xp.sqrt(v) / root_c2 + self.eps)

    def take_models(self, keep) -> None:
        """Keep the state of models ``keep`` (host int64 indices) only, in that order."""
        self.decay, self.weight_decay = _take(self.decay, keep), _take(self.weight_decay, keep)
        self.m = {k: _take(v, keep) for k, v in self.m.items()}
        self.v = {k: _take(v, keep) for k, v in self.v.items()}
