"""Normalization layers as forward/backward pairs: the registry's built-in entries.

Each sits between a hidden layer's affine map and its activation and has per-feature
``gamma`` and ``beta`` ``(M, 1, d)``.  Arrays are ``(M, n, d)``; the epsilon
(``NetworkConfig.bn_eps``, per model) arrives as ``(M, 1, 1)``.

- ``batch`` (Ioffe and Szegedy 2015), the DD2424 reports' convention: statistics over
  the samples of the batch in train mode (biased variance), exponential running
  averages (``bn_momentum``) in eval mode.  The maths is :mod:`xpnet.nn.layers`' pair.
- ``layer`` (Ba, Kiros and Hinton 2016): statistics over the features of each sample,
  the same in train and eval mode, no running averages.

The NumPy forms (``*_numpy``) are train-mode only and work in place on the fresh
pre-activations and gradients the NumPy step hands them.
"""

from __future__ import annotations

import numpy as np

from xpnet.nn import layers

_sum = np.add.reduce  # ndarray.sum without its Python wrapper (small arrays, many calls)


def batch_forward(s, params, buffers, *, train, xp, bn_eps):
    """Batch norm of ``s`` ``(M, n, d)``; returns ``(out, cache, batch_statistics)``.

    Train mode normalises with the batch's statistics and returns them, ``mean`` and
    biased ``var`` ``(M, 1, d)``: the entry's ``averages`` option tells the network to fold
    them into the running averages (:mod:`xpnet.step.averages`).  Eval mode normalises with the
    running ``mean`` and ``var`` of ``buffers`` and returns ``{}``.
    """
    if not train:
        out, cache, _, _ = layers.batchnorm_forward(
            s, params["gamma"], params["beta"], buffers["mean"], buffers["var"], train=False,
            eps=bn_eps, xp=xp)
        return out, cache, {}
    out, cache, mean, var = layers.batchnorm_train(s, params["gamma"], params["beta"],
                                                   eps=bn_eps, xp=xp)
    return out, cache, {"mean": mean, "var": var}


def batch_backward(dout, cache, *, xp):
    """``(ds, {"gamma": dgamma, "beta": dbeta})`` of train-mode batch norm."""
    ds, dgamma, dbeta = layers.batchnorm_backward(dout, cache, xp=xp)
    return ds, {"gamma": dgamma, "beta": dbeta}


def batch_forward_numpy(s, params, buffers, *, train, bn_eps):
    """:func:`batch_forward` in train mode, in place: ``s`` becomes ``s_hat``; returns the
    batch statistics, as it does."""
    if not train:
        raise ValueError("the NumPy form of batch norm is train mode only")
    mean, var, inv_std = _standardize(s, -2, bn_eps)
    return _scale_shift(s, params), (s, inv_std, params["gamma"]), {"mean": mean, "var": var}


def _standardize(s, axis: int, eps):
    """In place: ``s`` becomes ``(s - mean) / sqrt(var + eps)`` along ``axis``; returns
    ``mean``, the biased ``var`` and ``inv_std``, each reduced along ``axis`` (kept)."""
    inv_n = 1.0 / s.shape[axis]
    mean = _sum(s, axis=axis, keepdims=True)
    mean *= inv_n
    s -= mean
    var = _sum(np.square(s), axis=axis, keepdims=True)
    var *= inv_n
    inv_std = var + eps
    np.sqrt(inv_std, out=inv_std)
    np.reciprocal(inv_std, out=inv_std)
    s *= inv_std
    return mean, var, inv_std


def _scale_shift(s_hat, params):
    """``s_hat * gamma + beta``, a new array."""
    out = s_hat * params["gamma"]
    out += params["beta"]
    return out


def batch_backward_numpy(dout, cache):
    """:func:`batch_backward`, overwriting ``dout`` with ``ds``."""
    s_hat, inv_std, gamma = cache
    inv_n = 1.0 / dout.shape[-2]
    dbeta = _sum(dout, axis=-2, keepdims=True)
    dgamma = _sum(dout * s_hat, axis=-2, keepdims=True)
    dout -= s_hat * (dgamma * inv_n)
    dout -= dbeta * inv_n
    dout *= gamma * inv_std
    return dout, {"gamma": dgamma, "beta": dbeta}


def layer_forward(s, params, buffers, *, train, xp, bn_eps):
    """Layer norm of ``s`` ``(M, n, d)``: each sample's features to mean 0, variance 1
    (biased), then ``gamma * s_hat + beta``.  Train and eval mode agree; no buffers.

    Returns ``(out, cache, {})``; the cache is ``(s_hat, gamma, inv_std)`` with
    ``inv_std`` ``(M, n, 1)``.
    """
    inv_d = 1.0 / s.shape[-1]
    mean = xp.sum(s, axis=-1, keepdims=True) * inv_d
    centred = s - mean
    var = xp.sum(centred * centred, axis=-1, keepdims=True) * inv_d
    inv_std = 1.0 / xp.sqrt(var + bn_eps)
    s_hat = centred * inv_std
    return params["gamma"] * s_hat + params["beta"], (s_hat, params["gamma"], inv_std), {}


def layer_backward(dout, cache, *, xp):
    """``(ds, {"gamma": dgamma, "beta": dbeta})`` of layer norm; ``ds`` ``(M, n, d)``."""
    s_hat, gamma, inv_std = cache
    dbeta = xp.sum(dout, axis=-2, keepdims=True)
    dgamma = xp.sum(dout * s_hat, axis=-2, keepdims=True)
    # The batch-norm formula with the roles of samples and features swapped:
    # ds = inv_std * (g - mean_features(g) - s_hat * mean_features(g * s_hat)), g = gamma dout.
    g = dout * gamma
    inv_d = 1.0 / dout.shape[-1]
    mean_g = xp.sum(g, axis=-1, keepdims=True) * inv_d
    mean_gs = xp.sum(g * s_hat, axis=-1, keepdims=True) * inv_d
    ds = inv_std * (g - mean_g - s_hat * mean_gs)
    return ds, {"gamma": dgamma, "beta": dbeta}


def layer_forward_numpy(s, params, buffers, *, train, bn_eps):
    """:func:`layer_forward`, in place: ``s`` becomes ``s_hat``."""
    _, _, inv_std = _standardize(s, -1, bn_eps)
    return _scale_shift(s, params), (s, params["gamma"], inv_std), {}


def layer_backward_numpy(dout, cache):
    """:func:`layer_backward`, overwriting ``dout`` with ``ds``."""
    s_hat, gamma, inv_std = cache
    dbeta = _sum(dout, axis=-2, keepdims=True)
    dgamma = _sum(dout * s_hat, axis=-2, keepdims=True)
    inv_d = 1.0 / dout.shape[-1]
    dout *= gamma
    mean_g = _sum(dout, axis=-1, keepdims=True)
    mean_g *= inv_d
    mean_gs = _sum(dout * s_hat, axis=-1, keepdims=True)
    mean_gs *= inv_d
    dout -= mean_g
    dout -= s_hat * mean_gs
    dout *= inv_std
    return dout, {"gamma": dgamma, "beta": dbeta}
