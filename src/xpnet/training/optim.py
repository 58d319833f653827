"""Optimizers: one frozen dataclass of options each, and the update object it builds.

=========  ==========================================  ================================
option     update (``g``: the loss gradient, ``p``)    regularisation
=========  ==========================================  ================================
``SGD``    ``v = momentum * v + g + decay * p``;        L2 of the cost (``lam``, through
           ``p -= eta * v`` (``torch.optim.SGD``)       ``decay = 2 * lam``: :mod:`xpnet.nn.l2`)
``Adam``   ``g += decay * p``; ``m``, ``v`` moving      the same L2, inside ``g``, as
           averages of ``g`` and ``g * g`` with         ``torch.optim.Adam(weight_decay=)``
           bias correction; ``p -= eta * m_hat /``
           ``(sqrt(v_hat) + eps)`` (Kingma & Ba 2015)
``AdamW``  ``p *= 1 - eta * weight_decay``, then        decoupled weight decay
           Adam's step (Loshchilov & Hutter 2019,       (``torch.optim.AdamW``), plus the
           ``torch.optim.AdamW``)                       cost's L2 if ``lam`` > 0
=========  ==========================================  ================================

Decay, L2 or decoupled, applies to the weight matrices only (:func:`xpnet.nn.l2.is_penalised`);
``torch.optim`` decays every parameter of a group, so compare with the biases and batch
norm's parameters in a group of their own with ``weight_decay=0``.

The rate ``eta`` comes from the schedule (a float, or per-model ``(M, 1, 1)``, zero for
models that have stopped); ``momentum`` and ``weight_decay`` take one value or one per
model, the betas and ``eps`` one per run.  Every update works on the leading model axis
without a host sync, and ``take_models`` keeps the state of some models only.
"""

from __future__ import annotations

import dataclasses
import math

import array_api_compat
import numpy as np

from xpnet.errors import XpnetError
from xpnet.nn import l2, options
from xpnet.training import optim_state


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
        return SGDUpdate(net.params, _column(self.momentum, net, "momentum"),
                         decay=_decay(net), decay_names=_penalised(net), layout=_layout(net))


@dataclasses.dataclass(frozen=True)
class Adam(_Options):
    """Adam (Kingma & Ba 2015) with bias correction, as ``torch.optim.Adam``."""

    beta1: float = options.shared(0.9, "in [0, 1)", _unit)
    beta2: float = options.shared(0.999, "in [0, 1)", _unit)
    eps: float = options.shared(1e-8, "above 0", lambda a: a > 0)

    def build(self, net) -> AdamUpdate:
        return AdamUpdate(net.params, self.beta1, self.beta2, self.eps, decay=_decay(net),
                          decay_names=_penalised(net), layout=_layout(net),
                          inplace=net.backend.adam_update)


@dataclasses.dataclass(frozen=True)
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``."""

    weight_decay: float = options.per_model(0.01, "of at least 0", lambda a: a >= 0)

    def build(self, net) -> AdamUpdate:
        return AdamUpdate(net.params, self.beta1, self.beta2, self.eps, decay=_decay(net),
                          decay_names=_penalised(net), layout=_layout(net),
                          weight_decay=_column(self.weight_decay, net, "weight_decay"),
                          inplace=net.backend.adam_update)


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


def _decay(net):
    """The net's L2 decay factor ``(M, 1, 1)``, or None when no model has an L2 term
    (multiplying by one is a pass over the weights for nothing)."""
    return None if not np.any(net.lam_host) else net.decay


def _layout(net):
    flat = getattr(net, "flat_params", None)
    return None if flat is None else flat.layout


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
    """SGD over a dict of arrays, updated in place (see the module docstring).

    Given the parameters' :class:`~xpnet.step.flat.FlatLayout` (``layout``), an update whose
    ``flat`` (:class:`~xpnet.step.flat.FlatParams`) still holds ``params`` runs on the flat
    array: a few calls for all parameters instead of a few per parameter.
    """

    def __init__(self, params: dict, momentum=0.0, decay=None, decay_names=None, layout=None):
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
        self.layout = layout
        self.xp = array_api_compat.array_namespace(*params.values())
        self.velocity = self._velocity_flat = None
        if not (isinstance(momentum, float) and momentum == 0.0):
            self._velocity_flat, self.velocity = _zeros_like(self.xp, params, layout)

    @property
    def prescaled(self) -> bool:
        """Whether updates may come back-propagated already scaled (see :meth:`step_prescaled`)."""
        return self.velocity is None

    def step(self, params: dict, grads: dict, eta, *, flat=None) -> None:
        """Apply one update to every entry of ``params`` that has a gradient."""
        if _on_flat(self, params, grads, flat):
            velocity = self._velocity_flat
            parts = self.layout.gradient_parts(self.xp, grads)
            for i, (p, (g, n_decayed)) in enumerate(zip(flat.parts, parts, strict=True)):
                self._update(p, g, None if velocity is None else velocity[i], n_decayed, eta)
            return
        for name, grad in grads.items():
            decays = name in self.decay_names
            v = None if self.velocity is None else self.velocity[name]
            self._update(params[name], grad, v, -1 if decays else 0, eta)

    def _update(self, p, g, v, n_decayed, eta) -> None:
        """SGD on one array ``p`` (velocity ``v`` or None); its leading ``n_decayed``
        columns decay (-1: all of it, 0: none)."""
        decayed = _decayed(p, n_decayed) if self.decay is not None else None
        if v is not None:
            v *= self.momentum
            v += g
            if decayed is not None:
                v_decayed = _decayed(v, n_decayed)
                v_decayed += self.decay * decayed
            p -= eta * v
        elif decayed is not None:
            # p - eta * (g + decay * p) = p * (1 - eta * decay) - eta * g, in place.
            decayed *= 1.0 - eta * self.decay
            p -= eta * g
        else:
            p -= eta * g

    def step_prescaled(self, params: dict, updates: dict, eta=None, *, shrink=None,
                       flat=None) -> None:
        """Apply updates already multiplied by ``-eta`` (momentum-free SGD only).

        ``updates`` come from back-propagating a score gradient scaled by ``-eta``; the
        decay multiplies the weights by ``shrink = 1 - eta * decay`` ``(M, 1, 1)``, given
        or computed from ``eta`` here.  Two passes over each weight matrix instead of
        three; on the flat parameters, four array calls in all (the decay of every weight
        matrix, the head's update, the others' laid side by side and added).
        """
        if self.velocity is not None:
            raise ValueError("step_prescaled is for SGD without momentum.")
        if self.decay is not None and shrink is None:
            shrink = 1.0 - eta * self.decay
        if _on_flat(self, params, updates, flat):
            if self.decay is not None:
                for decayed in self.layout.decayed_parts(flat.parts):
                    decayed *= shrink
            parts = self.layout.gradient_parts(self.xp, updates)
            for p, (update, _) in zip(flat.parts, parts, strict=True):
                p += update
            return
        for name, update in updates.items():
            if self.decay is not None and name in self.decay_names:
                params[name] *= shrink
            params[name] += update

    def set_decay(self, decay) -> None:
        """The L2 decay factor from now on: device ``(M, 1, 1)`` or None (no L2 term)."""
        self.decay = decay

    def set_momentum(self, momentum) -> None:
        """The momentum from now on: a float or device ``(M, 1, 1)``.  A run that started
        without momentum keeps no velocity, so it cannot gain one."""
        if self.velocity is None:
            raise XpnetError("This run's SGD started without momentum, so its momentum "
                             "cannot change; start with momentum above 0 to explore it.")
        self.momentum = momentum

    def take_models(self, keep) -> None:
        """Model i takes the state of model ``keep[i]`` (host int64 indices; repeats
        allowed, models left out are dropped)."""
        self.momentum, self.decay = _take(self.momentum, keep), _take(self.decay, keep)
        if self.velocity is not None:
            self._velocity_flat, self.velocity = _take_state(
                self.xp, self._velocity_flat, self.velocity, self.layout, keep)

    def state_dict(self) -> dict:
        """The state as host arrays in logical ``(M, ...)`` shapes (:mod:`.optim_state`)."""
        return optim_state.state_dict(self)

    def load_state_dict(self, state: dict) -> None:
        """Take the state :meth:`state_dict` returned (any M; :mod:`.optim_state`)."""
        optim_state.load(self, state)


class AdamUpdate:
    """Adam, or AdamW with ``weight_decay``, over a dict of arrays, updated in place.

    The step count ``t`` (for the bias correction) is shared by the lockstep models and
    kept on the host, so the correction is two Python floats per step.  With a
    ``layout``, updates run on the flat parameters as :class:`SGDUpdate`'s do.  With
    ``inplace`` (a backend's ``adam_update``, such as
    :func:`xpnet.backend.numpy_step.adam_update`), each array's update runs in that form;
    ``AdamUpdate._update`` is its array-API reference (design rule 2).
    """

    prescaled = False

    def __init__(self, params: dict, beta1: float, beta2: float, eps: float, *, decay=None,
                 decay_names=None, weight_decay=None, layout=None, inplace=None):
        """``decay`` (L2, ``(M, 1, 1)``) and ``weight_decay`` (decoupled: a float or
        ``(M, 1, 1)``) apply to the names in ``decay_names`` (default: all of ``params``)."""
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.decay = decay
        self.weight_decay = (None if isinstance(weight_decay, float) and weight_decay == 0.0
                             else weight_decay)
        self.decay_names = set(params if decay_names is None else decay_names)
        self.layout = layout
        self.xp = array_api_compat.array_namespace(*params.values())
        self._m_flat, self.m = _zeros_like(self.xp, params, layout)
        self._v_flat, self.v = _zeros_like(self.xp, params, layout)
        self.t = 0
        self.inplace = inplace
        self._scratch = {}  # the in-place form's work arrays, per updated array

    def step(self, params: dict, grads: dict, eta, *, flat=None) -> None:
        """One Adam step of every entry of ``params`` that has a gradient."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = 1.0 / (1.0 - b1 ** self.t)  # times eta: the first moment's correction
        root_c2 = math.sqrt(1.0 - b2 ** self.t)
        if _on_flat(self, params, grads, flat):
            layout = self.layout
            entries = [(i, p, g, m, v, n_decayed) for i, (p, (g, n_decayed), m, v) in enumerate(
                zip(flat.parts, layout.gradient_parts(self.xp, grads), self._m_flat,
                    self._v_flat, strict=True))]
        else:
            entries = [(name, params[name], g, self.m[name], self.v[name],
                        -1 if name in self.decay_names else 0) for name, g in grads.items()]
        for key, p, g, m, v, n_decayed in entries:
            if self.inplace is None:
                self._update(p, g, m, v, n_decayed, eta, step_size, root_c2)
            else:
                self.inplace(p, g, m, v, scratch=self._scratch.setdefault(key, []),
                             beta1=b1, beta2=b2, eps=self.eps, decay=self.decay,
                             weight_decay=self.weight_decay, n_decayed=n_decayed, eta=eta,
                             step_size=step_size, root_c2=root_c2)

    def _update(self, p, g, m, v, n_decayed, eta, step_size, root_c2) -> None:
        """Adam on one array ``p``; its leading ``n_decayed`` columns decay (-1: all)."""
        b1, b2 = self.beta1, self.beta2
        if n_decayed and self.decay is not None:
            if n_decayed < 0:
                g = g + self.decay * p  # not in place: g may be a view of the caller's
            else:  # g is the tail's gradients laid side by side: a fresh array
                g_decayed = g[..., :n_decayed]
                g_decayed += self.decay * p[..., :n_decayed]
        if n_decayed and self.weight_decay is not None:
            p_decayed = _decayed(p, n_decayed)
            p_decayed *= 1.0 - eta * self.weight_decay
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        p -= (eta * step_size) * m / (self.xp.sqrt(v) / root_c2 + self.eps)

    def set_decay(self, decay) -> None:
        """The L2 decay factor from now on: device ``(M, 1, 1)`` or None (no L2 term)."""
        self.decay = decay

    def take_models(self, keep) -> None:
        """Model i takes the state of model ``keep[i]`` (host int64 indices; repeats
        allowed, models left out are dropped)."""
        self.decay, self.weight_decay = _take(self.decay, keep), _take(self.weight_decay, keep)
        self._scratch = {}
        self._m_flat, self.m = _take_state(self.xp, self._m_flat, self.m, self.layout, keep)
        self._v_flat, self.v = _take_state(self.xp, self._v_flat, self.v, self.layout, keep)

    def state_dict(self) -> dict:
        """The state as host arrays in logical ``(M, ...)`` shapes (:mod:`.optim_state`)."""
        return optim_state.state_dict(self)

    def load_state_dict(self, state: dict) -> None:
        """Take the state :meth:`state_dict` returned (any M; :mod:`.optim_state`)."""
        optim_state.load(self, state)


def _on_flat(update, params: dict, grads: dict, flat) -> bool:
    """Whether an update may run on ``flat``: it holds ``params`` in ``update.layout`` and
    every parameter has a gradient."""
    return (flat is not None and update.layout is not None and flat.layout == update.layout
            and flat.current(params) and len(grads) == len(params)
            and all(name in grads for name in update.layout.names))


def _decayed(a, n_decayed):
    """The decayed part of ``a``: all of it (-1), its leading columns, or None (0)."""
    if n_decayed < 0:
        return a
    return a[..., :n_decayed] if n_decayed else None


def _zeros_like(xp, params: dict, layout):
    """Optimizer state of zeros like ``params``: ``(parts, views)`` with a layout (the
    views slices of the parts, :meth:`~xpnet.step.flat.FlatLayout.flatten`), else
    ``(None, dict)``."""
    if layout is None:
        return None, {k: 0.0 * v for k, v in params.items()}
    flat = [0.0 * part for part in layout.flatten(xp, params)]
    return flat, layout.views(xp, flat)


def _take_state(xp, flat, views: dict, layout, keep):
    """:func:`_take` of optimizer state kept as :func:`_zeros_like` made it."""
    if flat is None:
        return None, {k: _take(v, keep) for k, v in views.items()}
    flat = [_take(part, keep) for part in flat]
    return flat, layout.views(xp, flat)
