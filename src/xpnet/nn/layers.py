"""Layers as forward/backward pairs, written against the Python array API.

Dense, batch norm and the softmax cross-entropy; the activations and normalizations a
config names are entries of :mod:`xpnet.nn.registry` (batch norm's entry wraps the pair
here, the others live in :mod:`xpnet.nn.activations` and :mod:`xpnet.nn.norms`).

Each ``*_forward`` returns ``(out, cache)`` and each ``*_backward`` takes the upstream
gradient and that cache.  Samples are rows.  Every array may carry a leading model axis
of M models trained in lockstep:

- activations ``(M, n, d)``; a network input shared by all models may be ``(n, d)``;
- dense weights ``(M, d_in, d_out)``, biases and batch-norm ``gamma``/``beta``
  ``(M, 1, d)``;
- per-model scalars ``(M,)``.

Reductions over samples use ``axis=-2`` so the same code serves M = 1 and M > 1.
The namespace comes from the arrays themselves (or an ``xp`` argument, which saves the
look-up in the training step), so NumPy, CuPy and array_api_strict all run this file
unchanged.
"""

from __future__ import annotations

from array_api_compat import array_namespace as namespace_of


def dense_forward(x, W, b=None):
    """Affine map ``x @ W + b``.

    Args:
        x: ``(M, n, d_in)`` or shared ``(n, d_in)``.
        W: ``(M, d_in, d_out)``.
        b: ``(M, 1, d_out)`` or None (a layer followed by batch norm needs no bias).

    Returns:
        ``out`` of shape ``(M, n, d_out)`` and the cache ``(x, W)``.
    """
    out = x @ W
    if b is not None:
        out = out + b
    return out, (x, W)


def dense_backward(dout, cache, need_dx=True, need_db=True, xp=None, head=False):
    """Gradients of the affine map.

    Args:
        dout: ``(M, n, d_out)``.
        cache: from :func:`dense_forward`.
        need_dx: False for the first layer, whose input gradient nobody uses
            (it is the most expensive product of the step).
        need_db: False when the layer has no bias.
        head: True for the first layer's weights, which :mod:`xpnet.step.flat` stores
            transposed: ``dW`` is then the transposed view of a contiguous
            ``dout^T @ x`` ``(M, d_out, d_in)``, which lines up with them without a copy.

    Returns:
        ``(dx, dW, db)``: ``dx`` ``(M, n, d_in)`` or None, ``dW`` ``(M, d_in, d_out)``,
        ``db`` ``(M, 1, d_out)`` or None.
    """
    xp = xp or namespace_of(dout)
    x, W = cache
    T = xp.linalg.matrix_transpose
    # dW = x^T @ dout, contiguous: the optimizer adds it into the flat parameters
    # (xpnet.step.flat), where a transposed view would be copied first.  A shared 2-D x
    # broadcasts: (d_in, n) @ (M, n, d_out) -> (M, d_in, d_out).  The head is stored
    # transposed: its gradient comes out as (dout^T @ x)^T, the same products.
    dW = T(T(dout) @ x) if head else T(x) @ dout
    db = xp.sum(dout, axis=-2, keepdims=True) if need_db else None
    dx = dout @ T(W) if need_dx else None
    return dx, dW, db


def batchnorm_forward(s, gamma, beta, running_mean, running_var, *, train=True,
                      momentum=0.9, eps=1e-5, xp=None):
    """Batch normalisation over the samples of each model.

    Train mode normalises with the batch mean and (biased) batch variance, as the
    DD2424 reports do, and returns updated running averages
    ``running = momentum * running + (1 - momentum) * batch``.  Eval mode normalises
    with the running averages and returns them unchanged.

    Args:
        s: ``(M, n, d)`` pre-activations.
        gamma, beta: ``(M, 1, d)`` scale and shift.
        running_mean, running_var: ``(M, 1, d)``.
        eps: a float, or per model ``(M, 1, 1)``.

    Returns:
        ``out`` ``(M, n, d)``, ``cache``, ``new_running_mean``, ``new_running_var``.
    """
    xp = xp or namespace_of(s)
    if not train:
        std = xp.sqrt(running_var + eps)
        return gamma * ((s - running_mean) / std) + beta, None, running_mean, running_var
    out, cache, mean, var = batchnorm_train(s, gamma, beta, eps=eps, xp=xp)
    new_mean = momentum * running_mean + (1.0 - momentum) * mean
    new_var = momentum * running_var + (1.0 - momentum) * var
    return out, cache, new_mean, new_var


def batchnorm_train(s, gamma, beta, *, eps=1e-5, xp=None):
    """Train-mode batch norm with the batch's statistics, the running averages left to
    the caller (the network folds every layer's at once).

    Returns:
        ``out`` ``(M, n, d)``, ``cache``, and the batch ``mean`` and biased ``var``
        ``(M, 1, d)``.
    """
    xp = xp or namespace_of(s)
    # Few array calls on purpose: on a GPU each is a kernel launch (issue 28).
    mean = xp.mean(s, axis=-2, keepdims=True)
    var = xp.var(s, axis=-2, keepdims=True)  # biased (correction 0)
    std = xp.sqrt(var + eps)
    s_hat = (s - mean) / std
    return gamma * s_hat + beta, (s_hat, gamma, std), mean, var


def batchnorm_backward(dout, cache, xp=None):
    """Gradients of train-mode batch norm.

    Args:
        dout: ``(M, n, d)``.
        cache: from :func:`batchnorm_forward` with ``train=True``.

    Returns:
        ``(ds, dgamma, dbeta)`` with shapes ``(M, n, d)``, ``(M, 1, d)``, ``(M, 1, d)``.
    """
    xp = xp or namespace_of(dout)
    s_hat, gamma, std = cache
    n = dout.shape[-2]
    dbeta = xp.sum(dout, axis=-2, keepdims=True)
    dgamma = xp.vecdot(dout, s_hat, axis=-2)[..., None, :]  # sum(dout * s_hat): one call
    # d/ds of gamma * (s - mean) / std, with mean and std depending on s, fused:
    # ds = gamma / std * (dout - (s_hat * sum(dout * s_hat) + sum(dout)) / n).
    ds = (gamma / std) * (dout - (s_hat * dgamma + dbeta) * (1.0 / n))
    return ds, dgamma, dbeta


def softmax_cross_entropy(scores, y_onehot, xp=None, scale=None, factor=None):
    """Mean cross-entropy of a softmax classifier and its gradient.

    Args:
        scores: ``(M, n, C)`` class scores.
        y_onehot: ``(n, C)`` shared or ``(M, n, C)`` one-hot labels.
        scale: optional per-model factor ``(M, 1, 1)`` multiplied into ``dscores``.
        factor: optional ``(M, 1, 1)`` that replaces the mean's ``1 / n`` in ``dscores``
            (``scale / n`` computed by the caller, ahead of the step: one call fewer).

    Returns:
        ``loss`` ``(M,)``, the mean over samples per model, and
        ``dscores`` ``(M, n, C)``, its gradient (times ``scale``, or ``n * factor``).
    """
    xp = xp or namespace_of(scores)
    n = scores.shape[-2]
    shifted = scores - xp.max(scores, axis=-1, keepdims=True)
    exp = xp.exp(shifted)
    sum_exp = xp.sum(exp, axis=-1, keepdims=True)
    log_probs = shifted - xp.log(sum_exp)
    # The sum of y * log_probs over samples and classes, as one dot product of the
    # flattened (views) arrays; a shared y (n * C,) broadcasts against (M, n * C).
    flat = (*log_probs.shape[:-2], n * log_probs.shape[-1])
    y_flat = xp.reshape(y_onehot, (*y_onehot.shape[:-2], n * y_onehot.shape[-1]))
    loss = xp.vecdot(y_flat, xp.reshape(log_probs, flat)) * (-1.0 / n)
    if factor is None:
        factor = 1.0 / n if scale is None else scale * (1.0 / n)
    elif scale is not None:
        raise ValueError("give scale or factor, not both")
    dscores = (exp / sum_exp - y_onehot) * factor
    return loss, dscores
