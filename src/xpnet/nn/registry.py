"""The layer registry: activations and normalizations by name, each one entry.

scikit-learn's MLP keeps its activations and their derivatives in two tables of
functions; here one entry holds both halves of a cs231n-style pair, and optionally the
NumPy backend's in-place form of each:

- an :class:`Activation` maps ``s`` ``(M, n, d)`` to ``out`` ``(M, n, d)``;
- a :class:`Normalization` maps ``s`` ``(M, n, d)`` to ``out`` ``(M, n, d)`` with
  per-feature parameters (``gamma``, ``beta``: ``(M, 1, d)``) and optional buffers
  (batch norm's running averages, ``(M, 1, d)``).

``NetworkConfig.activation`` and ``NetworkConfig.norm`` name an entry.  The reference
step (:mod:`xpnet.step.backprop`), :meth:`Network.forward <xpnet.network.network.Network.forward>`
and the NumPy step (:mod:`xpnet.backend.numpy_step`) all call entries through this module, so a
new entry works everywhere at once; the NumPy step uses an entry's in-place form where
it has one and its reference form otherwise.  Adding one::

    from xpnet.nn.registry import Activation, register_activation

    def softsign_forward(s, *, xp):
        out = s / (1.0 + xp.abs(s))
        return out, s

    def softsign_backward(dout, s, *, xp):
        return dout / (1.0 + xp.abs(s)) ** 2

    register_activation(Activation("softsign", softsign_forward, softsign_backward))

Entry options: ``options`` names :class:`~xpnet.network.network.NetworkConfig` fields the entry
reads; they reach its ``forward`` as keyword arguments, per-model fields as ``(M, 1, 1)``
arrays of the net's dtype and device, the others as the config's Python value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from xpnet.errors import XpnetError
from xpnet.nn import activations, norms


@dataclasses.dataclass(frozen=True)
class Activation:
    """One activation function.

    Attributes:
        name: the name ``NetworkConfig.activation`` uses.
        forward: ``forward(s, *, xp, **options) -> (out, cache)``; ``s`` and ``out``
            ``(M, n, d)``.
        backward: ``backward(dout, cache, *, xp) -> ds``, each ``(M, n, d)``.
        options: the config fields ``forward`` takes as keywords.
        numpy_forward: optional NumPy in-place form of ``forward``, with the same
            arguments less ``xp`` and the same results; it may overwrite ``s``, which
            the NumPy step guarantees is fresh.
        numpy_backward: the same for ``backward`` (it may overwrite ``dout``).  Both
            in-place forms or neither: the two halves share their cache.
    """

    name: str
    forward: Callable
    backward: Callable
    options: tuple[str, ...] = ()
    numpy_forward: Callable | None = None
    numpy_backward: Callable | None = None

    def __post_init__(self):
        _check_pair(self)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """One normalization layer, between a hidden layer's affine map and its activation.

    Attributes:
        name: the name ``NetworkConfig.norm`` uses.
        forward: ``forward(s, params, buffers, *, train, xp, **options) ->
            (out, cache, new_buffers)``: ``params`` and ``buffers`` are dicts keyed by
            the names below (without the layer number), ``(M, 1, d)`` each;
            ``new_buffers`` holds what train mode folds into the buffers (the network
            stores it unless told not to), or with ``averages`` set the batch's
            statistics, which the network folds into the buffers as running averages.
        backward: ``backward(dout, cache, *, xp) -> (ds, param_grads)`` for a train-mode
            cache; ``param_grads`` a dict keyed like ``params``.
        params: per-feature parameter name -> initial value (stored as ``gamma{l}``...).
        buffers: per-feature buffer name -> initial value (stored as ``mean{l}``...).
        options: the config fields ``forward`` takes as keywords.
        dense_bias: whether the affine map before it keeps its bias.
        averages: None, or the config field of a momentum: then the buffers are
            exponential running averages of the statistics train-mode ``forward``
            returns, ``buffer = momentum * buffer + (1 - momentum) * statistic``, folded
            by the network for every layer in one pass
            (:class:`xpnet.step.averages.RunningAverages`).
        numpy_forward: optional NumPy in-place form of ``forward`` (as for
            :class:`Activation`).
        numpy_backward: the same for ``backward``.
    """

    name: str
    forward: Callable
    backward: Callable
    params: dict = dataclasses.field(default_factory=lambda: {"gamma": 1.0, "beta": 0.0})
    buffers: dict = dataclasses.field(default_factory=dict)
    options: tuple[str, ...] = ()
    dense_bias: bool = False
    averages: str | None = None
    numpy_forward: Callable | None = None
    numpy_backward: Callable | None = None

    def __post_init__(self):
        _check_pair(self)


def _check_pair(entry) -> None:
    if (entry.numpy_forward is None) != (entry.numpy_backward is None):
        raise XpnetError(f"Entry {entry.name!r} has one in-place NumPy form; give both "
                         "numpy_forward and numpy_backward, or neither.")


#: Activation name -> entry; extend it with :func:`register_activation`.
ACTIVATIONS: dict[str, Activation] = {}
#: Normalization name -> entry; ``NetworkConfig.norm=None`` means no normalization.
NORMALIZATIONS: dict[str, Normalization] = {}


def register_activation(entry: Activation, *, replace: bool = False) -> Activation:
    """Add ``entry`` to :data:`ACTIVATIONS` (``replace=True`` to overwrite a name)."""
    return _register(ACTIVATIONS, entry, replace, "activation")


def register_normalization(entry: Normalization, *, replace: bool = False) -> Normalization:
    """Add ``entry`` to :data:`NORMALIZATIONS` (``replace=True`` to overwrite a name)."""
    return _register(NORMALIZATIONS, entry, replace, "normalization")


def _register(table, entry, replace, kind):
    if entry.name in table and not replace:
        raise XpnetError(f"An {kind} named {entry.name!r} is registered already; pick "
                         "another name or pass replace=True.")
    table[entry.name] = entry
    return entry


def activation(name: str) -> Activation:
    """The registered activation ``name``; an unknown name is a one-sentence error."""
    if name not in ACTIVATIONS:
        raise XpnetError(f"Unknown activation {name!r}; use one of: "
                         f"{', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def normalization(name: str | None) -> Normalization | None:
    """The registered normalization ``name``, or None for ``name=None``."""
    if name is None:
        return None
    if name not in NORMALIZATIONS:
        raise XpnetError(f"Unknown norm {name!r}; use one of: "
                         f"{', '.join(NORMALIZATIONS)} or None.")
    return NORMALIZATIONS[name]


# ------------------------------------------------------------------ the built-in entries
register_activation(Activation(
    "relu", activations.relu_forward, activations.relu_backward,
    numpy_forward=activations.relu_forward_numpy,
    numpy_backward=activations.relu_backward_numpy))
register_activation(Activation(
    "leaky_relu", activations.leaky_relu_forward, activations.leaky_relu_backward,
    options=("leaky_slope",)))
register_activation(Activation(
    "tanh", activations.tanh_forward, activations.tanh_backward,
    numpy_forward=activations.tanh_forward_numpy,
    numpy_backward=activations.tanh_backward_numpy))
register_activation(Activation("elu", activations.elu_forward, activations.elu_backward))

register_normalization(Normalization(
    "batch", norms.batch_forward, norms.batch_backward,
    buffers={"mean": 0.0, "var": 1.0}, options=("bn_eps",), averages="bn_momentum",
    numpy_forward=norms.batch_forward_numpy, numpy_backward=norms.batch_backward_numpy))
register_normalization(Normalization(
    "layer", norms.layer_forward, norms.layer_backward, options=("bn_eps",),
    numpy_forward=norms.layer_forward_numpy, numpy_backward=norms.layer_backward_numpy))

