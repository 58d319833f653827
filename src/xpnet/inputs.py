"""Checks of what a user hands the short API: numbers, per-model values, ``(X, y)`` pairs.

Each check returns the value in its normal form (a float, an int, a tuple of one value
per model, host arrays) or raises an :class:`~xpnet.errors.XpnetError` of one sentence
that names the argument.
"""

from __future__ import annotations

import numpy as np

from xpnet.errors import XpnetError


def is_number(value) -> bool:
    """Whether ``value`` is one real number (not a bool, a string or a sequence)."""
    return np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf"


def numbers(value) -> np.ndarray | None:
    """``value`` as float64 ``()`` or ``(k,)``; None unless a number or a flat sequence of them."""
    arr = np.asarray(value, dtype=object)  # a ragged sequence stays 1-D instead of failing
    if arr.ndim > 1 or not all(is_number(v) for v in arr.reshape(-1)):
        return None
    return arr.astype(np.float64)


def widths(hidden) -> tuple[int, ...]:
    """Hidden widths as a tuple of positive ints (one int: one hidden layer)."""
    arr = numbers(hidden)
    if arr is None or not np.all((arr == np.round(arr)) & (arr >= 1)):
        raise XpnetError(f"hidden must be a sequence of positive whole widths such as "
                         f"(50, 50), got {hidden!r}.")
    return tuple(int(h) for h in arr.reshape(-1).tolist())


def whole(name: str, value, minimum: int) -> int:
    """``value`` as an int, which must be a whole number at least ``minimum``."""
    if not (is_number(value) and value == np.round(value) and value >= minimum):
        raise XpnetError(f"{name} must be a whole number of at least {minimum}, got {value!r}.")
    return int(value)


def per_model_value(name: str, value, whole: bool = False):
    """A scalar stays a scalar (float, or int if ``whole``); a sequence becomes a tuple."""
    arr = numbers(value)
    if arr is None or arr.size == 0:
        raise XpnetError(f"{name} must be a number or a sequence of one number per model, "
                         f"got {value!r}.")
    if whole and not np.all((arr == np.round(arr)) & (arr >= 0)):
        raise XpnetError(f"{name} must be non-negative whole numbers, got {value!r}.")
    cast = int if whole else float
    return cast(arr) if arr.ndim == 0 else tuple(cast(v) for v in arr.tolist())


def models_from(values: dict) -> int:
    """M from per-model values (tuples count, scalars and None do not); checks they agree."""
    lengths = {name: (len(v) if isinstance(v, tuple) else v) for name, v in values.items()
               if isinstance(v, tuple) or (name == "the schedule" and v is not None)}
    if len(set(lengths.values())) > 1:
        described = " and ".join(f"{name} has {n}" for name, n in lengths.items())
        raise XpnetError(f"The per-model values disagree on the number of models ({described}); "
                         "give one value per model or one for all.")
    return next(iter(lengths.values()), 1)


def pair(data, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked host arrays ``X`` ``(n, d)`` and ``y`` ``(n,)`` from a pair, or from ``X, y``."""
    if y is None:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise XpnetError(f"{what} must be an (X, y) pair such as data.train or (X, y), "
                             f"got {type(data).__name__}.")
        data, y = data
    X = features(data, f"{what}'s X")
    y = np.asarray(y)
    if y.ndim != 1:
        raise XpnetError(f"{what}'s y must be one class label per sample, shape (n,), "
                         f"got shape {y.shape}.")
    if y.shape[0] != X.shape[0]:
        raise XpnetError(f"{what} has {X.shape[0]} samples in X but {y.shape[0]} labels in y.")
    if y.dtype.kind not in "iuf" or not np.all(y == np.round(y)):
        raise XpnetError(f"{what}'s y must hold whole-number class labels 0, 1, 2, ..., "
                         f"got dtype {y.dtype}.")
    return X, y.astype(np.int64)


def features(X, what: str) -> np.ndarray:
    """``X`` as a host array ``(n, d)`` of finite numbers, n and d at least 1."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise XpnetError(f"{what} must be a 2-D array (n_samples, n_features) with at least "
                         f"one sample, got shape {X.shape}.")
    if X.dtype.kind not in "biuf":
        raise XpnetError(f"{what} must hold numbers, got dtype {X.dtype}.")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise XpnetError(f"{what} holds NaN or infinite values; remove or replace them first.")
    return X


def check_labels(y: np.ndarray, n_classes: int, what: str) -> None:
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise XpnetError(f"{what}'s y holds the label {bad}, outside the classes 0 to "
                         f"{n_classes - 1}.")
