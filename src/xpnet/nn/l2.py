"""The L2 convention, in one place.

Cost of model m = mean cross-entropy + ``lam[m] * sum_l ||W_l[m]||^2``: weight matrices
only (not biases, not batch norm's ``gamma``/``beta``), and no factor 1/2 — the DD2424
reports' convention.  Its gradient with respect to ``W_l`` is therefore
``2 * lam * W_l``: :func:`gradient_factor` says so, and both the network's gradients
and the optimiser's in-place decay use it, so the factor cannot drift apart.
"""

from __future__ import annotations


def is_penalised(name: str) -> bool:
    """Whether parameter ``name`` (``"W1"``, ``"b2"``, ``"gamma1"``...) is in the L2 term."""
    return name.startswith("W")


def penalty(lam, params: dict, xp):
    """``lam * sum_l ||W_l||^2`` per model, shape ``(M,)``.

    Args:
        lam: device array ``(M,)``.
        params: ``{"W1": (M, d0, d1), ...}``; entries that are not weights are ignored.
    """
    total = None
    for name, W in params.items():
        if is_penalised(name):
            sq = xp.sum(W * W, axis=(-2, -1))
            total = sq if total is None else total + sq
    return lam * total


def gradient_factor(lam):
    """The factor ``c`` in ``d(penalty)/dW = c * W``, shaped like ``lam`` (``(M,)``)."""
    return 2.0 * lam
