"""Activation functions as forward/backward pairs: the registry's built-in entries.

Reference forms take the array namespace ``xp`` and allocate their results; the NumPy
forms (``*_numpy``) work in place on the fresh arrays the NumPy step hands them.  Every
array is ``(M, n, d)``; a per-model option such as the leaky ReLU's slope is ``(M, 1, 1)``.
:mod:`xpnet.nn.registry` turns these functions into entries.
"""

from __future__ import annotations

import numpy as np


def relu_forward(s, *, xp):
    """``max(s, 0)``; the cache is ``out`` ``(M, n, d)``."""
    out = xp.maximum(s, 0.0)
    return out, out


def relu_backward(dout, out, *, xp):
    """``dout`` where the unit was active, else 0; ``(M, n, d)``."""
    return xp.where(out > 0.0, dout, 0.0)


def relu_forward_numpy(s):
    """In place: ``s`` becomes ``max(s, 0)``, also the cache."""
    np.maximum(s, 0.0, out=s)
    return s, s


def relu_backward_numpy(dout, out):
    """In place: ``dout`` zeroed where the unit was inactive."""
    dout *= out > 0.0
    return dout


def leaky_relu_forward(s, *, xp, leaky_slope):
    """``s`` where positive, else ``leaky_slope * s`` (slope ``(M, 1, 1)``, one per model).

    The cache is ``(s, leaky_slope)``.
    """
    return xp.where(s > 0.0, s, leaky_slope * s), (s, leaky_slope)


def leaky_relu_backward(dout, cache, *, xp):
    """``dout`` where ``s > 0``, else ``leaky_slope * dout``; ``(M, n, d)``."""
    s, leaky_slope = cache
    return xp.where(s > 0.0, dout, leaky_slope * dout)


def tanh_forward(s, *, xp):
    """``tanh(s)``; the cache is ``out`` ``(M, n, d)``."""
    out = xp.tanh(s)
    return out, out


def tanh_backward(dout, out, *, xp):
    """``dout * (1 - out**2)``; ``(M, n, d)``."""
    return dout * (1.0 - out * out)


def tanh_forward_numpy(s):
    """In place: ``s`` becomes ``tanh(s)``, also the cache."""
    np.tanh(s, out=s)
    return s, s


def tanh_backward_numpy(dout, out):
    """In place: ``dout`` times ``1 - out**2``."""
    slope = np.square(out)
    np.subtract(1.0, slope, out=slope)
    dout *= slope
    return dout


def elu_forward(s, *, xp):
    """ELU with alpha 1 (Clevert, Unterthiner and Hochreiter 2016): ``s`` where positive,
    else ``exp(s) - 1``; the cache is ``(s, out)``, each ``(M, n, d)``."""
    out = xp.where(s > 0.0, s, xp.expm1(xp.minimum(s, 0.0)))
    return out, (s, out)


def elu_backward(dout, cache, *, xp):
    """``dout`` where ``s > 0``, else ``dout * exp(s)`` (``= dout * (out + 1)``)."""
    s, out = cache
    return xp.where(s > 0.0, dout, dout * (out + 1.0))
