"""The training step's forward and backward pass, specialised for NumPy.

Same maths as :func:`xpnet.step.backprop.loss_and_data_gradients` — which stays the
array-API reference this is tested against (to 1e-12 in float64) — but written as
NumPy calls that work in place on the step's fresh intermediates.  On the CPU a step
of the 3072-50-50-10 net is ~100 calls on ``(M, 100, 50)`` arrays, so per-call overhead
and temporaries, not arithmetic, set its cost; this version makes fewer of both.
The ``cpu`` backend carries it as its ``data_gradients`` (design rule 2).

Normalizations and activations come from :mod:`xpnet.nn.registry`: their in-place NumPy
forms where an entry has them, else their reference forms, so every entry runs here.

Shapes as in :mod:`xpnet.nn.layers`: inputs ``(n, d)`` or ``(M, n, d)``, weights
``(M, d_in, d_out)``, per-feature parameters ``(M, 1, d)``.
"""

from __future__ import annotations

import functools
import math
import sys
import weakref

import numpy as np

# The ufunc reductions themselves: what ndarray.sum / .max call, without their Python
# wrappers (a step makes a dozen such calls on small arrays, where the wrapper shows).
_sum, _max = np.add.reduce, np.maximum.reduce

#: Per network, the array its last step wrote W1's gradient into (see _gradient_buffer).
_GRADIENT_BUFFERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def loss_and_data_gradients(net, X, Y, *, update_stats: bool = True, scale=None, masks=None,
                            score_factor=None):
    """Loss ``(M,)`` and gradients of the loss alone (no L2 term) for ``net.params``.

    Args:
        net: a :class:`~xpnet.network.network.Network` on the ``cpu`` backend.
        X: ``(n, d_in)`` or ``(M, n, d_in)``; Y: one-hot ``(n, C)`` or ``(M, n, C)``.
        update_stats: fold the batch statistics into the running averages.
        scale: optional ``(M, 1, 1)`` factor multiplied into every gradient.
        masks: dropout masks ``(M, n, d_l)`` per hidden layer, or None.
        score_factor: ``(M, 1, 1)`` in place of the mean's ``1 / n`` (instead of ``scale``).

    Returns:
        ``(loss, grads)`` exactly as the generic method returns them.
    """
    p, buffers, K = net.params, net.buffers, net.config.n_layers
    inv_n = 1.0 / X.shape[-2]
    norm, act = net.norm_entry, net.activation_entry
    act_forward, act_backward = _forms(act, net.xp)
    act_options = net.entry_options(act)
    if norm is not None:
        norm_forward, norm_backward = _forms(norm, net.xp)
        norm_options = net.entry_options(norm)
        momentum = net.average_momentum(norm)
    inputs, hidden = [], []  # per layer: its input; per hidden layer: its caches and mask
    h = X
    for l in range(1, K + 1):
        inputs.append(h)
        # A fresh array: everything below may work in place.
        s = _first_layer(h, p["W1"]) if l == 1 else np.matmul(h, p[f"W{l}"])
        b = p.get(f"b{l}")
        if b is not None:
            s += b
        if l == K:
            break
        norm_cache = None
        if norm is not None:
            s, norm_cache, new_buffers = norm_forward(
                s, {k: p[f"{k}{l}"] for k in norm.params},
                {k: buffers[f"{k}{l}"] for k in norm.buffers}, train=True, **norm_options)
            if update_stats:
                for k, value in new_buffers.items():
                    if norm.averages is not None:  # batch statistics: fold them in place
                        running = buffers[f"{k}{l}"] * momentum
                        running += (1.0 - momentum) * value
                        value = running
                    buffers[f"{k}{l}"] = value
        s, act_cache = act_forward(s, **act_options)
        mask = None if masks is None else masks[l - 1]
        if mask is not None:
            s = s * mask  # not in place: the activation's cache may be s itself
        hidden.append((norm_cache, act_cache, mask))
        h = s

    scores = s
    scores -= _max(scores, axis=-1, keepdims=True)
    exp = np.exp(scores)
    sum_exp = _sum(exp, axis=-1, keepdims=True)
    # Rows of Y sum to one: -sum(Y * log_softmax) = sum(log sum_exp) - sum(Y * shifted).
    loss = (_sum(np.log(sum_exp), axis=(-2, -1)) - _sum(Y * scores, axis=(-2, -1))) * inv_n
    dout = exp
    dout /= sum_exp
    dout -= Y
    if score_factor is not None:
        dout *= score_factor
    else:
        dout *= inv_n if scale is None else scale * inv_n

    grads = {}
    for l in range(K, 0, -1):
        if l < K:
            norm_cache, act_cache, mask = hidden[l - 1]
            if mask is not None:
                dout *= mask
            dout = act_backward(dout, act_cache)
            if norm is not None:
                dout, param_grads = norm_backward(dout, norm_cache)
                for k, grad in param_grads.items():
                    grads[f"{k}{l}"] = grad
        x = inputs[l - 1]
        grads[f"W{l}"] = (_first_layer_grad(x, dout, _gradient_buffer(net, dout, x)) if l == 1
                          else np.matmul(x.swapaxes(-1, -2), dout))
        if f"b{l}" in p:
            grads[f"b{l}"] = _sum(dout, axis=-2, keepdims=True)
        if l > 1:
            dout = np.matmul(dout, p[f"W{l}"].swapaxes(-1, -2))
    return loss, grads


def _wide(W1):
    """The stored ``Wt`` ``(M * d_out, d_in)`` behind ``W1`` ``(M, d_in, d_out)`` (the flat
    layout's transposed head, :mod:`xpnet.step.flat`), or None when ``W1`` is laid out
    otherwise (a user's array)."""
    Wt = W1.swapaxes(-1, -2)
    if not Wt.flags.c_contiguous:
        return None
    return Wt.reshape(-1, Wt.shape[-1])


def _first_layer(X, W1):
    """``X @ W1`` ``(M, n, d_out)``, fresh and contiguous.  A shared batch ``X`` ``(n, d)``
    meets all M models' weights in one wide product ``X @ Wt^T`` ``(n, M * d_out)``
    (:mod:`xpnet.step.wide`), one GEMM where the batched product is M; its small output is
    then laid out per model."""
    Wt = _wide(W1) if X.ndim == 2 else None
    if Wt is None:
        return np.matmul(X, W1)
    M, n = W1.shape[0], X.shape[0]
    wide = np.matmul(X, Wt.T)
    return np.ascontiguousarray(wide.reshape(n, M, -1).swapaxes(0, 1))


def _gradient_buffer(net, dout, x):
    """Where W1's gradient goes: ``(M * d_out, d_in)``, the array ``net``'s previous step
    wrote it into when nothing refers to that gradient any more, else a new one.

    The gradient is the step's largest array (39 MB at M = 64): a fresh one each step is
    a new memory mapping whose every page faults on first write, 4 ms of a 57 ms step
    (the wide product runs at 81 GFLOP/s into a fresh array, 98 into a used one).  The
    reference count tells whether the caller still holds the last gradient or a view of
    it (a view refers to its base): then it is left alone.
    """
    M, _, h = dout.shape
    shape, dtype = (M * h, x.shape[-1]), np.result_type(dout, x)
    buffer = _GRADIENT_BUFFERS.get(net)
    # Three references when free: the table's, this frame's, getrefcount's argument.
    if (buffer is None or buffer.shape != shape or buffer.dtype != dtype
            or sys.getrefcount(buffer) > 3):
        buffer = np.empty(shape, dtype)
        _GRADIENT_BUFFERS[net] = buffer
    return buffer


def _first_layer_grad(x, dout, out):
    """``W1``'s gradient ``(M, d_in, d_out)`` as the transposed view of ``dout^T @ x``
    ``(M, d_out, d_in)`` written into ``out`` ``(M * d_out, d_in)``: the flat head's layout,
    so the update adds it without a copy.  With a shared batch ``x`` ``(n, d)``, one wide
    product ``[dout_1^T; ...; dout_M^T] @ x``."""
    M, n, h = dout.shape
    if x.ndim == 2:
        np.matmul(dout.swapaxes(-1, -2).reshape(M * h, n), x, out=out)
    else:
        np.matmul(dout.swapaxes(-1, -2), x, out=out.reshape(M, h, -1))
    return out.reshape(M, h, -1).swapaxes(-1, -2)


def _forms(entry, xp):
    """An entry's ``(forward, backward)`` as this step calls them: the in-place NumPy
    forms where it has them, else the reference forms bound to ``xp``."""
    if entry.numpy_forward is not None:
        return entry.numpy_forward, entry.numpy_backward
    return functools.partial(entry.forward, xp=xp), functools.partial(entry.backward, xp=xp)


#: Numbers per slice of :func:`adam_update` (4 MB of float32 an array): at M = 64 the
#: head's update took 26 ms in slices of 2**19 to 2**21 numbers, 31 ms in one piece and
#: 42 ms in slices of 2**15 (the calls' own cost).
ADAM_SLICE = 2**20


def adam_update(p, g, m, v, *, scratch: list, beta1: float, beta2: float, eps: float,
                decay, weight_decay, n_decayed: int, eta, step_size: float,
                root_c2: float) -> None:
    """One Adam (AdamW with ``weight_decay``) step of one array ``p``, in place in NumPy.

    The maths of ``xpnet.training.optim.AdamUpdate._update``, its array-API
    reference (tested against it): the same arguments, plus ``scratch``, a list this
    function keeps two small work arrays in (pass the same list for the same ``p`` every
    step).  The reference makes a fresh temporary per operation and runs each operation
    over the whole array: at M = 64 a dozen passes over the head's 39 MB, from memory,
    each temporary a new mapping the kernel must fault in.  Here the last axis is cut in
    slices of about :data:`ADAM_SLICE` numbers, and every operation of one slice writes into
    ``m``, ``v``, ``p`` or a work array while the slice sits in cache: ``p``, ``g``, ``m``,
    ``v`` are read from memory once, ``p``, ``m``, ``v`` written once.  ``g`` is never
    written.  The operations are elementwise, so slicing changes no number.
    """
    n = p.shape[-1]
    width = max(1, min(n, ADAM_SLICE // math.prod(p.shape[:-1])))
    shape = (*p.shape[:-1], width)
    if not scratch or scratch[0].shape != shape or scratch[0].dtype != p.dtype:
        scratch[:] = [np.empty(shape, p.dtype), np.empty(shape, p.dtype)]
    decayed = 0 if not n_decayed else (n if n_decayed < 0 else n_decayed)
    shrink = None if weight_decay is None else 1.0 - eta * weight_decay
    factors = (1.0 - beta1, 1.0 - beta2, beta2, eps * root_c2,
               eta * (step_size * root_c2))  # root_c2 moved to the numerator
    # Slices that do not straddle the end of the decayed columns.
    for lo, hi in ((0, decayed), (decayed, n)):
        for start in range(lo, hi, width):
            stop = min(start + width, hi)
            cols = slice(start, stop)
            work, spare = (a[..., :stop - start] for a in scratch)
            _adam_slice(p[..., cols], g[..., cols], m[..., cols], v[..., cols], work, spare,
                        decay if lo == 0 and decayed else None,
                        shrink if lo == 0 and decayed else None, factors)


def _adam_slice(p, g, m, v, work, spare, l2, shrink, factors) -> None:
    """:func:`adam_update` on one slice of columns; ``l2``, ``shrink``: the L2 factor and
    AdamW's ``1 - eta * weight_decay`` where these columns decay, else None."""
    one_minus_b1, one_minus_b2, beta2, eps, rate = factors
    if l2 is not None:  # g + decay * p, into the spare array
        np.multiply(p, l2, out=spare)
        spare += g
        g = spare
    if shrink is not None:
        p *= shrink
    # m = beta1 * m + (1 - beta1) * g, as m - (1 - beta1) * (m - g) without a temporary.
    np.subtract(m, g, out=work)
    work *= one_minus_b1
    m -= work
    np.multiply(g, g, out=work)
    work *= one_minus_b2
    v *= beta2
    v += work
    np.sqrt(v, out=work)
    work += eps
    np.divide(m, work, out=work)
    work *= rate
    p -= work
