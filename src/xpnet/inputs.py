"""Checks of what a user hands the short API: numbers, per-model values, ``(X, y)`` pairs.

Each check returns the value in its normal form (a float, an int, a tuple of one value
per model, host arrays) or raises an :class:`~xpnet.errors.XpnetError` of one sentence
that names the argument.
"""

from __future__ import annotations

import numpy as np

from xpnet.errors import InputError


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
    if arr is None or not np.all(np.isfinite(arr) & (arr == np.round(arr)) & (arr >= 1)):
        raise InputError(f"hidden must be a sequence of positive whole widths such as "
                         f"(50, 50), got {hidden!r}.")
    return tuple(int(h) for h in arr.reshape(-1).tolist())


def whole(name: str, value, minimum: int) -> int:
    """``value`` as an int, which must be a whole number at least ``minimum``."""
    if not (is_number(value) and np.isfinite(value) and value == np.round(value)
            and value >= minimum):
        raise InputError(f"{name} must be a whole number of at least {minimum}, got {value!r}.")
    return int(value)


def per_model_value(name: str, value, whole: bool = False):
    """A scalar stays a scalar (float, or int if ``whole``); a sequence becomes a tuple."""
    arr = numbers(value)
    if arr is None or arr.size == 0:
        raise InputError(f"{name} must be a number or a sequence of one number per model, "
                         f"got {value!r}.")
    if whole and not np.all(np.isfinite(arr) & (arr == np.round(arr)) & (arr >= 0)):
        raise InputError(f"{name} must be non-negative whole numbers, got {value!r}.")
    cast = int if whole else float
    return cast(arr) if arr.ndim == 0 else tuple(cast(v) for v in arr.tolist())


def models_from(values: dict) -> int:
    """M from per-model values (tuples count, scalars and None do not); checks they agree."""
    lengths = {name: (len(v) if isinstance(v, tuple) else v) for name, v in values.items()
               if isinstance(v, tuple) or (name == "the schedule" and v is not None)}
    if len(set(lengths.values())) > 1:
        described = " and ".join(f"{name} has {n}" for name, n in lengths.items())
        raise InputError(f"The per-model values disagree on the number of models ({described}); "
                         "give one value per model or one for all.")
    return next(iter(lengths.values()), 1)


def split_pair(data, y, what: str):
    """``(X, y)`` from ``fit(X, y)`` or from ``fit((X, y))``, a pair such as ``data.train``."""
    if y is None and isinstance(data, (tuple, list)) and len(data) == 2:
        data, y = data
    if y is None:
        raise InputError(f"{what} requires y to be passed, but the target y is None; pass "
                         "X, y or an (X, y) pair such as data.train.")
    return data, y


def features(X, what: str) -> np.ndarray:
    """``X`` as a host array ``(n, d)`` of finite numbers, n and d at least 1."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # a SciPy sparse matrix or array
        raise InputError(f"{what} is a sparse matrix, and xpnet takes dense arrays only; "
                         "pass X.toarray().")
    X = np.asarray(X)
    if X.dtype == object:  # numbers held as objects; anything else raises NumPy's TypeError
        X = X.astype(np.float64)
    if X.ndim == 2 and min(X.shape) == 0:
        kind = "sample" if X.shape[0] == 0 else "feature"
        raise InputError(f"{what} has 0 {kind}(s) (shape={X.shape}) while a minimum of 1 "
                         "is required.")
    if X.ndim != 2:
        raise InputError(f"{what} must be a 2-D array (n_samples, n_features), got shape "
                         f"{X.shape}: Reshape your data, with "
                         "X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample.")
    if X.dtype.kind == "c":
        raise InputError(f"{what} holds complex numbers: Complex data not supported; pass "
                         "real features.")
    if X.dtype.kind not in "biuf":
        raise InputError(f"{what} must hold numbers, got dtype {X.dtype}.")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise InputError(f"{what} holds NaN or infinite values; remove or replace them first.")
    return X


def whole_labels(y: np.ndarray, what: str) -> np.ndarray:
    """Labels ``y`` as int64, which must be whole numbers (class indices)."""
    if y.dtype.kind not in "biuf" or not np.all(y == np.round(y)):
        raise InputError(f"{what} must hold whole-number class labels from 0 up when "
                         f"n_classes is given, got dtype {y.dtype}.")
    return y.astype(np.int64)


def check_labels(y: np.ndarray, n_classes: int, what: str) -> None:
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise InputError(f"{what}'s y holds the label {bad}, outside the classes 0 to "
                         f"{n_classes - 1}.")
