"""Checks of what a user hands the short API: numbers, per-model values, ``(X, y)`` pairs.

Each check returns the value in its normal form (a float, an int, a tuple of one value
per model, host arrays) or raises an :class:`~xpnet.errors.XpnetError` of one sentence
that names the argument.
"""

from __future__ import annotations

import os

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
    if whole and not np.all(np.isfinite(arr) & (arr == np.round(arr)) & (arr >= 0)
                            & (arr < 2.0**63)):
        raise InputError(f"{name} must be non-negative whole numbers, got {value!r}.")
    cast = int if whole else float
    return cast(arr) if arr.ndim == 0 else tuple(cast(v) for v in arr.tolist())


def per_model_number(name: str, value, rule: str, test):
    """A finite number where ``test`` holds (``rule`` says so in words), or a sequence of
    them, one per model: a float, or a tuple of floats."""
    checked = per_model_value(name, value)
    if not np.all(np.isfinite(checked) & test(np.asarray(checked))):
        raise InputError(f"{name} must be a number {rule} or one per model, got {value!r}.")
    return checked


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


def pair(value, what: str):
    """``value`` if it is an ``(X, y)`` pair (a tuple or list of two, as ``data.val``)."""
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        shown = (f"a {type(value).__name__} of {len(value)}"
                 if isinstance(value, (tuple, list)) else type(value).__name__)
        raise InputError(f"{what} must be an (X, y) pair such as (X_val, y_val) or data.val, "
                         f"got {shown}.")
    return value


def host_numbers(values, what: str) -> np.ndarray:
    """``values`` (an array, nested lists, a DataFrame) as a host array; numbers held as
    Python objects become float64.  Ragged rows, strings held as objects and missing
    values (None, ``pandas.NA``) are refused in one sentence."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):  # NumPy cannot make one array of it (ragged rows)
        raise InputError(f"{what} must be a rectangular array of numbers, but its rows have "
                         "different lengths; give every sample the same features.") from None
    if arr.dtype != object:
        return arr
    for value in arr.reshape(-1):
        if _real(value):
            continue
        if value is None or type(value).__name__ in ("NAType", "NaTType"):
            raise InputError(f"{what} holds missing values ({value!r}); remove or impute "
                             "them first.")
        if isinstance(value, (str, bytes)):
            raise InputError(f"{what} holds strings such as {value!r}; encode text features "
                             "as numbers first.")
        if isinstance(value, int):
            raise InputError(f"{what} holds an integer of {value.bit_length()} bits, too large "
                             "for a float; scale such values down first.")
        raise InputError(f"{what} holds a {type(value).__name__} where a number should be; "
                         "give numeric values.")
    return arr.astype(np.float64)


def _real(value) -> bool:
    """Whether a value held as a Python object converts to a float: a number (a bool too),
    a Python int included while it is within float64's range."""
    if isinstance(value, int):  # bool is an int
        return value.bit_length() <= 1023
    return is_number(value) or isinstance(value, np.bool_)


def features(X, what: str, dtype: str | None = None) -> np.ndarray:
    """``X`` as a host array ``(n, d)`` of finite numbers, n and d at least 1; with
    ``dtype`` (the training dtype), also within that dtype's range, so that the cast to it
    cannot overflow to infinity."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # a SciPy sparse matrix or array
        raise InputError(f"{what} is a sparse matrix, and xpnet takes dense arrays only; "
                         "pass X.toarray().")
    X = host_numbers(X, what)
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
    if dtype is not None and X.dtype.kind == "f" and X.dtype.itemsize > np.dtype(dtype).itemsize:
        limit = float(np.finfo(dtype).max)
        largest = max(float(X.max()), -float(X.min()))
        if largest > limit:
            way = " or train with dtype='float64'" if np.dtype(dtype) == np.float32 else ""
            raise InputError(f"{what} holds values up to {largest:.3g}, beyond the {limit:.3g} "
                             f"that {dtype} holds; scale the features (say with "
                             f"StandardScaler){way}.")
    return X


def sample_weights(weights, n: int, what: str = "sample_weight") -> np.ndarray:
    """``weights`` as float64 ``(n,)``: one finite, non-negative number per sample (a
    scalar weighs every sample alike), not all zero."""
    arr = host_numbers(weights, what)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what} must hold numbers, got dtype {arr.dtype}.")
    if arr.shape != (n,):
        raise InputError(f"{what} must have one weight per sample, shape ({n},), got shape "
                         f"{arr.shape}.")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr) & (arr >= 0)) or not arr.sum() > 0:
        raise InputError(f"{what} must be finite, non-negative and not all zero.")
    return arr


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


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def weight_count(sizes) -> int:
    """Weights of the dense layers ``sizes[0] -> sizes[1] -> ...`` (Python int: no overflow)."""
    sizes = [int(s) for s in sizes]
    return sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def check_memory(n_bytes: int, what: str, way_out: str) -> None:
    """Refuse, before anything is allocated, what needs more bytes than the machine has."""
    total = physical_memory()
    if total is not None and n_bytes > total:
        raise InputError(f"{what} needs at least {_gib(n_bytes)} of memory, more than this "
                         f"machine's {_gib(total)}; {way_out}.")


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"
