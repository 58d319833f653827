"""What :class:`~xpnet.estimators.classifier.Classifier` and
:class:`~xpnet.estimators.classifier_cv.ClassifierCV` share as scikit-learn estimators,
without needing scikit-learn.

scikit-learn is an optional extra (``pip install ".[sklearn]"``): nothing here imports it
but :func:`classifier_tags`, which only scikit-learn calls; the rest looks for it in
``sys.modules`` (its array API dispatch, its exception and warning classes), where it is
if and only if the caller imported it.

- :class:`Params`: ``get_params(deep=True)`` / ``set_params`` over the constructor's
  keywords, as ``sklearn.base.clone`` and ``GridSearchCV`` use them;
- :func:`classifier_tags`: the ``__sklearn_tags__`` of a classifier;
- :func:`labels`, :func:`encode_labels`: any labels (ints, strings; never a mix) checked,
  and as class codes ``0 .. C-1``;
- :func:`device`, :func:`dtype_name`, :func:`callbacks`, :func:`check_fit_memory`: the
  checks of the estimators' arguments that need more than :mod:`xpnet.base.inputs`;
- :func:`input_namespace`, :func:`backend_flag`, :func:`to_namespace`: scikit-learn's array
  API rule (with ``sklearn.set_config(array_api_dispatch=True)``, inputs from another array
  library are computed on in that library and device, and outputs and fitted arrays follow).
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings

import array_api_compat
import numpy as np

from xpnet.backend.devices import USER_DEVICES, Backend, to_numpy
from xpnet.base import inputs
from xpnet.errors import InputError, NotFittedError
from xpnet.training.history import Callback


class Params:
    """``get_params`` / ``set_params`` from the names ``_param_names()`` returns."""

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor arguments, exactly as given; with ``deep``, those of nested
        estimators too (as ``name__key``)."""
        params = {name: getattr(self, name) for name in self._param_names()}
        if deep:
            for name, value in list(params.items()):
                if _is_estimator(value):
                    params.update({f"{name}__{k}": v for k, v in value.get_params().items()})
        return params

    def set_params(self, **params):
        """Change constructor arguments (``name=value``, ``nested__key=value``); returns
        ``self``.  A change the checks refuse leaves ``self`` as it was."""
        names = self._param_names()
        before = {name: getattr(self, name) for name in names}
        nested: dict[str, dict] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in names:
                raise InputError(f"{type(self).__name__} has no parameter {name!r}; use one "
                                 f"of: {', '.join(names)}.")
            if sub and not _is_estimator(getattr(self, name)):
                raise InputError(f"{type(self).__name__}'s {name} is not an estimator, so "
                                 f"set_params cannot set {key!r} inside it; pass a whole new "
                                 f"value, set_params({name}=...).")
            if sub:
                nested.setdefault(name, {})[sub] = value
        for key, value in params.items():
            if "__" not in key:
                setattr(self, key, value)
        for name, values in nested.items():
            getattr(self, name).set_params(**values)
        try:
            self._check_params()
        except Exception:
            for name, value in before.items():  # a refused change leaves self as it was
                setattr(self, name, value)
            raise
        return self

    def _check_params(self) -> None:
        """Raise a one-sentence error for a bad combination of parameters (subclasses)."""


def _is_estimator(value) -> bool:
    """Whether ``value`` is an estimator instance (it has ``get_params`` / ``set_params``)."""
    return (hasattr(value, "get_params") and hasattr(value, "set_params")
            and not isinstance(value, type))


def device(value):
    """``value`` if it names a device (not whether this machine has it: fit finds out)."""
    if isinstance(value, Backend) or (isinstance(value, str) and (
            value in USER_DEVICES or value == "strict" or value.startswith("strict:"))):
        return value
    raise InputError(f"device must be one of {', '.join(USER_DEVICES)} (or a Backend), got "
                     f"{value!r}.")


def dtype_name(dtype) -> str:
    """``"float32"`` or ``"float64"`` from that name, a NumPy dtype or a NumPy type."""
    name = dtype if isinstance(dtype, str) else getattr(
        dtype, "name" if isinstance(dtype, np.dtype) else "__name__", None)
    if name not in ("float32", "float64"):
        raise InputError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    return name


def callbacks(values) -> tuple:
    """``values`` as a tuple of objects with every hook of
    :class:`~xpnet.training.history.Callback`."""
    hooks = [name for name in vars(Callback) if name.startswith("on_")]
    if not isinstance(values, (list, tuple)):
        raise InputError("callbacks must be a list of xpnet.training.loop.Callback objects, got "
                         f"{type(values).__name__}.")
    for cb in values:
        if isinstance(cb, type) or not all(callable(getattr(cb, h, None)) for h in hooks):
            raise InputError("callbacks must be xpnet.training.loop.Callback objects (subclass "
                             f"Callback and override its hooks), got {cb!r}.")
    return tuple(values)


def check_fit_memory(sizes, n_models: int, dtype: str, n_samples: int) -> None:
    """Refuse a fit whose models and data cannot fit in this machine's memory: the
    weights ``(M, d_in, d_out)`` of every layer of ``sizes``, the largest drawn in float64
    on the host, and the samples with their one-hot labels ``(n, d + C)``."""
    itemsize = np.dtype(dtype).itemsize
    largest = max(inputs.weight_count(sizes[i:i + 2]) for i in range(len(sizes) - 1))
    n_bytes = (n_models * inputs.weight_count(sizes) * itemsize + n_models * largest * 8
               + n_samples * (sizes[0] + sizes[-1]) * itemsize)
    inputs.check_memory(n_bytes, f"Training {n_models} model(s) of sizes {sizes} on "
                        f"{n_samples} samples", "use narrower layers, fewer models or fewer "
                        "classes")


def not_fitted(message: str) -> NotFittedError:
    """xpnet's ``NotFittedError``; where scikit-learn is loaded, also scikit-learn's, so
    that code catching ``sklearn.exceptions.NotFittedError`` catches it."""
    sk = sys.modules.get("sklearn.exceptions")
    return (NotFittedError if sk is None else _both_not_fitted(sk.NotFittedError))(message)


@functools.cache
def _both_not_fitted(sklearn_class):
    return type("NotFittedError", (NotFittedError, sklearn_class), {"__module__": __name__})


def classifier_tags():
    """scikit-learn's ``Tags`` of a classifier that needs ``y`` and takes 2-D numbers."""
    from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

    return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                classifier_tags=ClassifierTags(), input_tags=InputTags(),
                array_api_support=True)


def labels(y, n: int, what: str) -> np.ndarray:
    """``y`` as a host array ``(n,)`` of labels, numbers or strings (never a mix of the two,
    as scikit-learn's ``type_of_target`` refuses); a column ``(n, 1)`` is flattened, with
    the warning scikit-learn gives for it."""
    if y is None:
        raise InputError(f"{what} requires y to be passed, but the target y is None; pass "
                         "X, y or an (X, y) pair such as data.train.")
    y = _label_values(y, what)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; it is "
                      "flattened with y.ravel().", _conversion_warning(), stacklevel=3)
        y = y.reshape(-1)
    if y.ndim != 1:
        raise InputError(f"{what}'s y must be one class label per sample, shape (n,), "
                         f"got shape {y.shape}.")
    if y.shape[0] != n:
        raise InputError(f"{what} has {n} samples in X but {y.shape[0]} labels in y.")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise InputError(f"{what}'s y holds NaN or infinite labels; remove those samples.")
    if y.dtype.kind not in "biuOSU" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise InputError(f"{what}'s y must hold class labels (whole numbers or strings), "
                         f"got dtype {y.dtype}; a classifier cannot fit a continuous target.")
    return y


def _label_values(y, what: str) -> np.ndarray:
    """Host labels from ``y``; labels held as objects (and lists, which NumPy would turn
    into strings) must be all numbers or all strings."""
    if isinstance(y, (list, tuple)):  # NumPy would turn a mix into strings: check first
        held = _objects(y)
        if held is not None:
            _label_kinds(held, what)
    y = _host_labels(y, what)
    if y.dtype == object and _label_kinds(y, what) == {"number"}:
        y = np.array(y.tolist())  # numbers held as objects: their NumPy dtype
    return y


def _objects(values) -> np.ndarray | None:
    """A sequence as an array of Python objects; None if it is ragged."""
    try:
        return np.asarray(values, dtype=object)
    except ValueError:
        return None


def _host_labels(y, what: str) -> np.ndarray:
    """``y`` as a host array; ragged rows are refused in one sentence."""
    y = host(y)
    if isinstance(y, np.ndarray):
        return y
    try:
        return np.asarray(y)
    except (ValueError, TypeError):
        raise InputError(f"{what}'s y must be one class label per sample, and NumPy cannot "
                         "make one array of it; give a flat sequence of labels.") from None


def _label_kinds(y: np.ndarray, what: str) -> set[str]:
    """``{"number"}`` or ``{"string"}`` for labels held as objects; refuses a mix of the two
    and anything else (None, lists) in one sentence."""
    kinds = set()
    for value in y.reshape(-1):
        if isinstance(value, (str, bytes)):
            kinds.add("string")
        elif isinstance(value, (int, np.bool_)) or inputs.is_number(value):
            kinds.add("number")
        else:
            raise InputError(f"{what}'s y holds {value!r} ({type(value).__name__}), which is "
                             "neither a number nor a string; give one class label per sample.")
    if len(kinds) > 1:
        raise InputError(f"{what}'s y has a mix of label input types (string and number); "
                         "give labels of one kind, all strings or all numbers.")
    return kinds


def label_kind(y: np.ndarray) -> str:
    """``"string"`` or ``"number"``: what checked labels (from :func:`labels`) hold."""
    if y.dtype.kind in "US":
        return "string"
    return next(iter(_label_kinds(y, "y")), "number") if y.dtype == object else "number"


def check_label_kind(y: np.ndarray, classes, what: str) -> None:
    """Refuse labels ``y`` of another kind (strings, numbers) than the fitted ``classes``,
    as scikit-learn's ``accuracy_score`` does; an unseen label of the same kind is only a
    wrong answer."""
    got, fitted = label_kind(y), label_kind(host(classes))
    if got != fitted:
        raise InputError(f"{what}'s y holds {got}s but the estimator was fitted on {fitted}s "
                         f"(a mix of label input types); give labels like classes_.")


def encode_labels(ys: list[np.ndarray], n_classes: int | None):
    """``(classes_, [codes, ...])``: the sorted distinct labels of all ``ys`` (or
    ``range(n_classes)``) and each ``y`` as int64 codes into them."""
    if len({label_kind(y) for y in ys}) > 1:
        raise InputError("The training labels and val's labels have a mix of label input "
                         "types (string and number); give labels of one kind.")
    if n_classes is not None:
        for y in ys:
            inputs.check_labels(inputs.whole_labels(y, "y"), n_classes, "The data")
        return np.arange(n_classes), [y.astype(np.int64) for y in ys]
    try:
        classes = np.unique(np.concatenate(ys))
    except TypeError:
        raise InputError("y mixes labels that cannot be sorted together (say numbers and "
                         "strings); give labels of one kind.") from None
    if classes.size < 2:
        raise InputError(f"y holds one class only ({classes[0].tolist()!r}); a classifier needs at "
                         "least two classes to fit.")
    return classes, [np.searchsorted(classes, y).astype(np.int64) for y in ys]


def _conversion_warning():
    """scikit-learn's ``DataConversionWarning`` where it is loaded (a ``UserWarning``)."""
    sk = sys.modules.get("sklearn.exceptions")
    return UserWarning if sk is None else sk.DataConversionWarning


def dispatch_on() -> bool:
    """Whether scikit-learn's array API dispatch is on (it cannot be unless the caller
    imported scikit-learn, so this imports nothing)."""
    sk = sys.modules.get("sklearn")
    return sk is not None and bool(sk.get_config().get("array_api_dispatch", False))


def input_namespace(X):
    """``(xp, device)`` of ``X`` when dispatch is on and ``X`` is no NumPy array, else None."""


    if (isinstance(X, np.ndarray) or not array_api_compat.is_array_api_obj(X)
            or not dispatch_on()):
        return None
    xp = array_api_compat.array_namespace(X)
    if array_api_compat.is_numpy_namespace(xp):
        return None
    return xp, array_api_compat.device(X)


def backend_flag(xp, device) -> str:
    """The :func:`~xpnet.backend.devices.get_backend` flag that computes in ``xp`` on ``device``."""


    if array_api_compat.is_torch_namespace(xp):
        return {"cpu": "torch", "cuda": "torch:cuda", "mps": "torch:mps"}.get(
            device.type, "torch")
    if array_api_compat.is_cupy_namespace(xp):
        return "cuda"
    if array_api_compat.is_array_api_strict_namespace(xp):
        name = str(device).partition("'")[2].rpartition("'")[0] or "CPU_DEVICE"
        return "strict" if name == "CPU_DEVICE" else f"strict:{name}"
    raise InputError(f"xpnet cannot compute on {xp.__name__} arrays; pass NumPy, CuPy, "
                     "PyTorch or array_api_strict arrays.")


def same_space(a, b) -> bool:
    """Whether two ``(xp, device)`` pairs (None: NumPy) are the same namespace and device."""
    if a is None or b is None:
        return a is b
    return a[0] is b[0] and a[1] == b[1]


def describe(space) -> str:
    """``"numpy"`` or ``"<namespace> on <device>"``, for messages."""
    return "numpy" if space is None else f"{space[0].__name__} on {space[1]}"


def host(x) -> np.ndarray:
    """Any array (NumPy, CuPy, torch, array_api_strict on any device, a DataFrame) as
    NumPy.  Python lists and tuples are returned as they are: the checks of
    :mod:`xpnet.base.inputs` make them arrays and say what is wrong with a ragged one."""
    if isinstance(x, (np.ndarray, list, tuple)) or (hasattr(x, "toarray") and hasattr(x, "nnz")):
        return x  # SciPy sparse: inputs.features refuses it in one sentence
    return to_numpy(x) if array_api_compat.is_array_api_obj(x) else np.asarray(x)


def to_namespace(values: np.ndarray, space):
    """Host ``values`` in the namespace and device ``space = (xp, device)`` (None: as is).
    Labels that namespace cannot hold (strings) stay NumPy."""
    if space is None or values.dtype.kind not in "biuf":
        return values
    xp, device = space
    return xp.asarray(values, device=device)
