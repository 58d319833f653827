"""The training step's forward and backward pass, in array-API code: the reference.

Every backend can run :func:`loss_and_data_gradients`; a backend may carry a faster
step of its own (the CPU's is :mod:`xpnet.numpy_step`), which is tested against this
one.  :class:`~xpnet.backend.Backend` holds the step a network trains with.
"""

from __future__ import annotations

from xpnet import layers


def loss_and_data_gradients(net, X, Y, *, update_stats: bool = True, scale=None):
    """Train-mode loss ``(M,)`` and the gradients of the loss alone (no L2 term).

    Args:
        net: a :class:`~xpnet.network.Network`; its ``params`` are differentiated.
        X: ``(n, d_in)`` or ``(M, n, d_in)``; Y: one-hot ``(n, C)`` or ``(M, n, C)``.
        update_stats: fold the batch statistics into the running averages.
        scale: optional per-model factor ``(M, 1, 1)`` multiplied into every gradient.
            Back-propagation is linear in the score gradient, so scaling that small
            ``(M, n, C)`` array by ``-eta`` yields ready-made updates.

    Returns:
        ``(loss, grads)``: ``grads`` keyed like ``net.params``, arrays of the same shapes.
    """
    xp = net.xp
    p = net.params
    scores, caches = net.forward(X, train=True, update_stats=update_stats)
    loss, dout = layers.softmax_cross_entropy(scores, Y, xp=xp)
    if scale is not None:
        dout = dout * scale
    grads = {}
    for l in range(net.config.n_layers, 0, -1):
        dense_cache, bn_cache, relu_cache = caches[l - 1]
        if relu_cache is not None:
            dout = layers.relu_backward(dout, relu_cache, xp=xp)
        if bn_cache is not None:
            dout, grads[f"gamma{l}"], grads[f"beta{l}"] = layers.batchnorm_backward(
                dout, bn_cache, xp=xp)
        has_b = f"b{l}" in p
        dout, grads[f"W{l}"], db = layers.dense_backward(
            dout, dense_cache, need_dx=l > 1, need_db=has_b, xp=xp)
        if has_b:
            grads[f"b{l}"] = db
    return loss, grads
