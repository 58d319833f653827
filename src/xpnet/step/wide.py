"""The first dense layer of k models that share a batch, as one wide matrix product.

In a lockstep run, models of one seed see the same batches: their first layer computes
``x @ W_m`` for one ``x`` ``(n, d)`` and k weights ``(d, h)``.  Laid side by side the k
weights are one ``(d, k*h)`` matrix, and the k products are one product
``x @ [W_1 ... W_k]`` ``(n, k*h)`` instead of k small ones (one call instead of a batched
one, which NumPy runs as a loop of k products).  The weight gradient is one product too.

The wide weights are kept *transposed*, ``Wt`` ``(k*h, d)`` with rows
``[W_1^T; ...; W_k^T]``, because that is the layout the weight gradient comes out in
(``dout^T @ x``, only the small ``dout`` transposed, as :func:`xpnet.nn.layers.dense_backward`
does): the update is then one contiguous in-place operation, and the per-model weights
``(k, d, h)`` are a view of ``Wt`` (:func:`stacked_weights`).  Array-API code.
"""

from __future__ import annotations

from array_api_compat import array_namespace as namespace_of


def wide_weights(W, xp=None):
    """``(k, d, h)`` per-model weights -> the wide transposed ``Wt`` ``(k*h, d)`` (a copy)."""
    xp = xp or namespace_of(W)
    k, d, h = W.shape
    return xp.reshape(xp.linalg.matrix_transpose(W), (k * h, d), copy=True)


def stacked_weights(Wt, k: int, xp=None):
    """The wide ``Wt`` ``(k*h, d)`` as per-model weights ``(k, d, h)``: a view."""
    xp = xp or namespace_of(Wt)
    kh, d = Wt.shape
    return xp.linalg.matrix_transpose(xp.reshape(Wt, (k, kh // k, d)))


def wide_forward(x, Wt, k: int, xp=None):
    """``x @ W_m`` for all k models at once.

    Args:
        x: the shared input ``(n, d)``.
        Wt: wide transposed weights ``(k*h, d)`` (:func:`wide_weights`).

    Returns:
        ``(k, n, h)``, a view of the one product ``(n, k*h)``.
    """
    xp = xp or namespace_of(x)
    n = x.shape[0]
    wide = x @ xp.linalg.matrix_transpose(Wt)  # (n, d) @ (d, k*h)
    return xp.permute_dims(xp.reshape(wide, (n, k, Wt.shape[0] // k)), (1, 0, 2))


def wide_weight_grad(x, dout, xp=None):
    """The gradients of all k models' first-layer weights in one product.

    Args:
        x: the shared input ``(n, d)``.
        dout: the gradient of the layer's output ``(k, n, h)``.

    Returns:
        ``dWt`` ``(k*h, d)``, laid out like :func:`wide_weights` (``dW_m^T`` stacked).
    """
    xp = xp or namespace_of(dout)
    k, n, h = dout.shape
    # (k, h, n) -> (k*h, n): a copy of the small gradient where it is not contiguous.
    dout_t = xp.reshape(xp.linalg.matrix_transpose(dout), (k * h, n))
    return dout_t @ x
