"""Weight initialisers, drawn on the host from seeded NumPy generators.

Each function returns a host array of shape ``(M, d_in, d_out)``: one matrix per model,
model ``m`` drawn from ``numpy.random.default_rng(seeds[m])`` so that a model's weights
depend only on its own seed (and not on which other models share the batch).
"""

from __future__ import annotations

import numpy as np

from xpnet.errors import XpnetError

INITS = ("he", "xavier", "normal")


def init_scale(method: str, d_in: int, d_out: int, sigma: float | None = None) -> float:
    """Standard deviation of the initial weights of a ``d_in -> d_out`` layer."""
    if method == "he":
        return float(np.sqrt(2.0 / d_in))
    if method == "xavier":
        return float(np.sqrt(1.0 / d_in))
    if method == "normal":
        if sigma is None or not sigma > 0:
            raise XpnetError("init='normal' needs a positive sigma, for example sigma=1e-3.")
        return float(sigma)
    raise XpnetError(f"Unknown init {method!r}; use one of: {', '.join(INITS)}.")


def layer_weights(rngs, method, d_in, d_out, sigmas=None) -> np.ndarray:
    """Draw one layer's weights for every model.

    Args:
        rngs: M NumPy generators, one per model, advanced in place.
        method: ``"he"``, ``"xavier"`` or ``"normal"``.
        sigmas: ``(M,)`` standard deviations for ``"normal"``.

    Returns:
        float64 host array ``(M, d_in, d_out)``.
    """
    M = len(rngs)
    out = np.empty((M, d_in, d_out))
    for m, rng in enumerate(rngs):
        sigma = None if sigmas is None else float(sigmas[m])
        out[m] = rng.standard_normal((d_in, d_out)) * init_scale(method, d_in, d_out, sigma)
    return out
