"""The training step's forward and backward pass, specialised for NumPy.

Same maths as :func:`xpnet.backprop.loss_and_data_gradients` — which stays the
array-API reference this is tested against (to 1e-12 in float64) — but written as
NumPy calls that work in place on the step's fresh intermediates.  On the CPU a step
of the 3072-50-50-10 net is ~100 calls on ``(M, 100, 50)`` arrays, so per-call overhead
and temporaries, not arithmetic, set its cost; this version makes fewer of both.
The ``cpu`` backend carries it as its ``data_gradients`` (design rule 2).

Shapes as in :mod:`xpnet.layers`: inputs ``(n, d)`` or ``(M, n, d)``, weights
``(M, d_in, d_out)``, per-feature parameters ``(M, 1, d)``.
"""

from __future__ import annotations

import numpy as np


def loss_and_data_gradients(net, X, Y, *, update_stats: bool = True, scale=None):
    """Loss ``(M,)`` and gradients of the loss alone (no L2 term) for ``net.params``.

    Args:
        net: a :class:`~xpnet.network.Network` on the ``cpu`` backend.
        X: ``(n, d_in)`` or ``(M, n, d_in)``; Y: one-hot ``(n, C)`` or ``(M, n, C)``.
        update_stats: fold the batch statistics into the running averages (in place).
        scale: optional ``(M, 1, 1)`` factor multiplied into every gradient.

    Returns:
        ``(loss, grads)`` exactly as the generic method returns them.
    """
    p, cfg = net.params, net.config
    K = cfg.n_layers
    inv_n = 1.0 / X.shape[-2]
    inputs, hidden = [], []  # per layer: its input; per hidden layer: (s_hat, inv_std, out)
    h = X
    for l in range(1, K + 1):
        inputs.append(h)
        s = np.matmul(h, p[f"W{l}"])  # a fresh array: everything below may work in place
        b = p.get(f"b{l}")
        if b is not None:
            s += b
        if l == K:
            break
        s_hat = inv_std = None
        if cfg.has_bn(l):
            s_hat, inv_std, s = _batchnorm(net, l, s, inv_n, update_stats)
        np.maximum(s, 0.0, out=s)
        hidden.append((s_hat, inv_std, s))
        h = s

    scores = s
    scores -= scores.max(axis=-1, keepdims=True)
    exp = np.exp(scores)
    sum_exp = exp.sum(axis=-1, keepdims=True)
    # Rows of Y sum to one: -sum(Y * log_softmax) = sum(log sum_exp) - sum(Y * shifted).
    loss = (np.log(sum_exp).sum(axis=(-2, -1)) - (Y * scores).sum(axis=(-2, -1))) * inv_n
    dout = exp
    dout /= sum_exp
    dout -= Y
    dout *= inv_n if scale is None else scale * inv_n

    grads = {}
    for l in range(K, 0, -1):
        if l < K:
            s_hat, inv_std, out = hidden[l - 1]
            dout *= out > 0.0
            if s_hat is not None:
                gamma = p[f"gamma{l}"]
                grads[f"beta{l}"] = dbeta = dout.sum(axis=-2, keepdims=True)
                grads[f"gamma{l}"] = dgamma = (dout * s_hat).sum(axis=-2, keepdims=True)
                dout -= s_hat * (dgamma * inv_n)
                dout -= dbeta * inv_n
                dout *= gamma * inv_std
        x = inputs[l - 1]
        grads[f"W{l}"] = np.matmul(np.swapaxes(x, -1, -2), dout)
        if f"b{l}" in p:
            grads[f"b{l}"] = dout.sum(axis=-2, keepdims=True)
        if l > 1:
            dout = np.matmul(dout, np.swapaxes(p[f"W{l}"], -1, -2))
    return loss, grads


def _batchnorm(net, l, s, inv_n, update_stats):
    """Train-mode batch norm of the fresh pre-activations ``s`` ``(M, n, d)``, in place.

    Returns ``(s_hat, inv_std, out)``; ``s`` itself becomes ``s_hat``.
    """
    cfg, p, buffers = net.config, net.params, net.buffers
    mean = s.sum(axis=-2, keepdims=True)
    mean *= inv_n
    s -= mean
    var = np.square(s).sum(axis=-2, keepdims=True)
    var *= inv_n
    inv_std = var + net.bn_eps[:, None, None]
    np.sqrt(inv_std, out=inv_std)
    np.reciprocal(inv_std, out=inv_std)
    s *= inv_std
    out = s * p[f"gamma{l}"]
    out += p[f"beta{l}"]
    if update_stats:
        for name, batch in ((f"mean{l}", mean), (f"var{l}", var)):
            running = buffers[name] * cfg.bn_momentum
            running += (1.0 - cfg.bn_momentum) * batch
            buffers[name] = running
    return s, inv_std, out
