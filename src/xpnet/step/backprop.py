"""The training step's forward and backward pass, in array-API code: the reference.

Every backend can run :func:`loss_and_data_gradients`; a backend may carry a faster
step of its own (the CPU's is :mod:`xpnet.backend.numpy_step`), which is tested against this
one.  :class:`~xpnet.backend.devices.Backend` holds the step a network trains with.
"""

from __future__ import annotations

from xpnet.nn import layers


def loss_and_data_gradients(net, X, Y, *, update_stats: bool = True, scale=None, masks=None,
                            score_factor=None):
    """Train-mode loss ``(M,)`` and the gradients of the loss alone (no L2 term).

    Args:
        net: a :class:`~xpnet.network.network.Network`; its ``params`` are differentiated.
        X: ``(n, d_in)`` or ``(M, n, d_in)``; Y: one-hot ``(n, C)`` or ``(M, n, C)``.
        update_stats: fold the batch statistics into the running averages.
        scale: optional per-model factor ``(M, 1, 1)`` multiplied into every gradient.
            Back-propagation is linear in the score gradient, so scaling that small
            ``(M, n, C)`` array by ``-eta`` yields ready-made updates.
        masks: dropout masks ``(M, n, d_l)`` per hidden layer, or None
            (see :mod:`xpnet.nn.dropout`).
        score_factor: instead of ``scale``, a factor ``(M, 1, 1)`` that replaces the
            mean's ``1 / n`` in the score gradient: ``-eta / n``, computed ahead of the
            step (:mod:`xpnet.step.rates`), saves the step the multiplication by ``1 / n``.

    Returns:
        ``(loss, grads)``: ``grads`` keyed like ``net.params``, arrays of the same shapes.
    """
    xp = net.xp
    p = net.params
    norm, act = net.norm_entry, net.activation_entry
    scores, caches = net.forward(X, train=True, update_stats=update_stats, masks=masks)
    loss, dout = layers.softmax_cross_entropy(scores, Y, xp=xp, scale=scale,
                                              factor=score_factor)
    grads = {}
    K = net.config.n_layers
    for l in range(K, 0, -1):
        dense_cache, norm_cache, act_cache, mask = caches[l - 1]
        if l < K:
            if mask is not None:
                dout = dout * mask
            dout = act.backward(dout, act_cache, xp=xp)
        if l < K and norm is not None:
            dout, param_grads = norm.backward(dout, norm_cache, xp=xp)
            for name, grad in param_grads.items():
                grads[f"{name}{l}"] = grad
        has_b = f"b{l}" in p
        dout, grads[f"W{l}"], db = layers.dense_backward(
            dout, dense_cache, need_dx=l > 1, need_db=has_b, xp=xp, head=l == 1)
        if has_b:
            grads[f"b{l}"] = db
    return loss, grads
