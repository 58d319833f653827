"""The one NaN <-> None codec for stored metrics.

JSON has no NaN.  Results keep "no value" (a diverged model, a missing figure) as
``null``: :func:`to_jsonable` writes non-finite floats as ``None`` (and NumPy types as
Python ones), :func:`to_float_array` reads ``None`` back as NaN.
"""

from __future__ import annotations

import math

import numpy as np


def to_jsonable(obj):
    """NumPy scalars/arrays to Python, non-finite floats to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def to_float_array(values) -> np.ndarray:
    """Nested lists of numbers and None as a float64 array, None as NaN."""
    def restore(v):
        if isinstance(v, (list, tuple)):
            return [restore(x) for x in v]
        return np.nan if v is None else v
    return np.array(restore(values), dtype=np.float64)
