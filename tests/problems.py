"""Small learnable problems for the tests that train."""

from __future__ import annotations

import numpy as np


def blobs(n=200, d=20, classes=4, seed=0, spread=2.0, dtype=np.float64):
    """Gaussian blobs, one centre per class (centres ``spread`` standard deviations
    apart on each axis): inputs ``(n, d)`` and integer labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * spread
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, d))).astype(dtype), y
