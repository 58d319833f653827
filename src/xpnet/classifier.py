"""The short API: a scikit-learn / Keras style classifier on top of :func:`~xpnet.training.train`.

::

    from xpnet import Classifier, CyclicalLR, load_cifar10
    data = load_cifar10("../shared/data")
    net = Classifier(hidden=(50, 50), lam=[1e-3, 5e-3, 1e-2], seeds=0)
    history = net.fit(data.train, CyclicalLR(1e-5, 1e-1, n_s_epochs=5, cycles=2), val=data.val)
    net.score(data.test)                   # (3,): one test accuracy per model

A :class:`Classifier` is M models of one architecture trained in lockstep (see
:class:`~xpnet.network.Network`); M is the length of the per-model hyper-parameters
(``lam``, ``seeds``, ``sigma``, ``bn_eps``, ``momentum``, the schedule's rates), each a
scalar or a length-M sequence.  NumPy in, NumPy out: inputs ``X`` ``(n, d)`` and integer
labels ``y`` ``(n,)`` go in as host arrays, device arrays stay inside, and every result
carries the model axis first (``predict`` ``(M, n)``, ``predict_proba`` ``(M, n, C)``,
``score`` ``(M,)``), M = 1 included.  The input size ``d`` and the class count ``C``
come from the data at :meth:`Classifier.fit`.  The lower layer (``Network``, ``train``,
``DeviceSplit``, callbacks) stays available as ``clf.network_`` and ``xpnet.training``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from xpnet.atomic import atomic_write
from xpnet.backend import to_numpy
from xpnet.errors import CheckpointError, XpnetError
from xpnet.init import INITS
from xpnet.network import Network, NetworkConfig
from xpnet.schedules import CyclicalLR
from xpnet.training import DeviceSplit, History, TrainConfig, train

#: Constructor arguments that take one value for all models or one per model.
PER_MODEL = ("lam", "seeds", "sigma", "bn_eps", "momentum")

#: Constructor arguments a checkpoint stores beside the network (which holds the rest).
_SAVED = ("sigma", "momentum", "batch_size", "n_classes", "evals_per_cycle",
          "train_eval_size", "dtype")

#: Samples per forward pass in predict / predict_proba.
CHUNK = 10000


def default_schedule() -> CyclicalLR:
    """The reports' schedule: eta 1e-5 .. 1e-1, n_s = 5 epochs, 2 cycles."""
    return CyclicalLR(1e-5, 1e-1, n_s_epochs=5, cycles=2)


class Classifier:
    """M fully connected softmax classifiers with optional batch norm, trained in lockstep.

    Args:
        hidden: widths of the hidden layers (``()``: a linear classifier).
        batch_norm: batch norm between each hidden layer's affine map and its ReLU.
        init: ``"he"``, ``"xavier"`` or ``"normal"`` (then ``sigma`` is the weights' std).
        lam: L2 strength (:mod:`xpnet.l2`); per model.
        seeds: initial weights and batch orders of model m come from ``seeds[m]``; per model.
        sigma: weight std for ``init="normal"``; per model.
        bn_eps: batch norm's epsilon; per model.
        bn_momentum: weight of the old running average in batch norm (one for all).
        momentum: SGD momentum in [0, 1); per model.
        batch_size: samples per step; an epoch is ``n_train // batch_size`` steps.
        n_classes: C; by default one more than the largest label seen by :meth:`fit`.
        evals_per_cycle, train_eval_size: record points per schedule cycle, and how many
            training samples the recorded training metrics use (see ``TrainConfig``).
        device: ``"cpu"`` (NumPy), ``"cuda"`` (CuPy), ... or a ``Backend``.
        dtype: ``"float32"`` (default) or ``"float64"``.

    After :meth:`fit` (or :meth:`load`): ``network_`` (the lower-layer ``Network``),
    ``history_`` (the ``History`` of the last fit; None after load), ``n_models``,
    ``n_features_in_`` and ``n_classes_``; after fit, ``survivors_``: the indices of the
    fitted models among those fit started with (all of them unless ``halving`` dropped some).
    """

    def __init__(self, hidden=(50, 50), *, batch_norm: bool = True, init: str = "he",
                 lam=0.005, seeds=0, sigma=None, bn_eps=1e-5, bn_momentum: float = 0.9,
                 momentum=0.0, batch_size: int = 100, n_classes: int | None = None,
                 evals_per_cycle: int = 10, train_eval_size: int | None = 10000,
                 device="cpu", dtype: str = "float32"):
        if init not in INITS:
            raise XpnetError(f"Unknown init {init!r}; use one of: {', '.join(INITS)}.")
        if dtype not in ("float32", "float64"):
            raise XpnetError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
        if not (_is_number(bn_momentum) and 0 <= bn_momentum <= 1):
            raise XpnetError(f"bn_momentum must be in [0, 1], got {bn_momentum!r}.")
        self.hidden = _widths(hidden)
        self.batch_norm = bool(batch_norm)
        self.init = init
        self.lam = _per_model_value("lam", lam)
        self.seeds = _per_model_value("seeds", seeds, whole=True)
        self.sigma = None if sigma is None else _per_model_value("sigma", sigma)
        self.bn_eps = _per_model_value("bn_eps", bn_eps)
        self.bn_momentum = float(bn_momentum)
        self.momentum = _per_model_value("momentum", momentum)
        self.batch_size = _whole("batch_size", batch_size, 1)
        self.n_classes = None if n_classes is None else _whole("n_classes", n_classes, 2)
        self.evals_per_cycle = _whole("evals_per_cycle", evals_per_cycle, 1)
        self.train_eval_size = (None if train_eval_size is None
                                else _whole("train_eval_size", train_eval_size, 1))
        self.device = device
        self.dtype = dtype
        self.network_: Network | None = None
        self.history_: History | None = None
        _models_from({name: getattr(self, name) for name in PER_MODEL})  # lengths agree

    def get_params(self) -> dict:
        """The constructor arguments, as given (per-model sequences as tuples)."""
        names = ("hidden", "batch_norm", "init", "lam", "seeds", "sigma", "bn_eps",
                 "bn_momentum", "momentum", "batch_size", "n_classes", "evals_per_cycle",
                 "train_eval_size", "device", "dtype")
        return {name: getattr(self, name) for name in names}

    # ------------------------------------------------------------------ training
    def fit(self, train_data, schedule=None, *, val=None, progress: bool = False,
            callbacks=(), halving=None) -> History:
        """Initialise the M models and train them; returns the run's ``History``.

        Args:
            train_data: the training set as an ``(X, y)`` pair (``data.train``, or a tuple
                of arrays): ``X`` ``(n, d)``, integer labels ``y`` ``(n,)``.
            schedule: a schedule from :mod:`xpnet.schedules`, lengths in steps or epochs;
                default :func:`default_schedule`.
            val: an optional ``(X, y)`` pair whose metrics are recorded during training.
            progress: show a progress bar over the steps.
            callbacks: :class:`~xpnet.training.Callback` objects for ``train``.
            halving: a :class:`~xpnet.halving.Halving` schedule (needs ``val`` to rank by
                validation accuracy): the losing models leave the network at its rungs,
                so afterwards ``n_models`` is the survivors' count, ``predict`` and
                ``score`` answer for them only, and ``survivors_`` holds their indices
                among the M models fit started with (``history.metrics`` keeps all M).

        Returns:
            the ``History``: ``history.metrics["val_accuracy"]`` is ``(n_points, M)``, ...
        """
        X, y = _pair(train_data, None, "The training data")
        val_pair = None if val is None else _pair(val, None, "val")
        schedule = default_schedule() if schedule is None else schedule
        if not hasattr(schedule, "rates"):
            raise XpnetError("The schedule must be one from xpnet.schedules (CyclicalLR, "
                             f"ConstantLR, ...), got {type(schedule).__name__}.")
        net = self._new_network(X.shape[1], self._class_count(X, y, val_pair), schedule)
        C = net.config.n_classes
        train_split = DeviceSplit.from_host(net.backend, X, y, C, self.dtype)
        val_split = None if val_pair is None else DeviceSplit.from_host(
            net.backend, *val_pair, C, self.dtype)
        train_config = TrainConfig(batch_size=self.batch_size, momentum=self.momentum,
                                   evals_per_cycle=self.evals_per_cycle,
                                   train_eval_size=self.train_eval_size)
        history = train(net, schedule, train_split, val_split, train_config,
                        callbacks=callbacks, progress=progress, halving=halving)
        self.network_, self.history_ = net, history
        self.survivors_ = (np.arange(net.n_models) if history.survivors is None
                           else history.survivors)
        return history

    def _class_count(self, X, y, val_pair) -> int:
        """C: ``n_classes``, else one more than the largest label; checks val against it."""
        splits = {"The training data": (X, y), **({"val": val_pair} if val_pair else {})}
        n_classes = self.n_classes if self.n_classes is not None else max(
            2, 1 + max(int(y_.max()) for _, y_ in splits.values()))
        for name, (X_, y_) in splits.items():
            _check_labels(y_, n_classes, name)
            if X_.shape[1] != X.shape[1]:
                raise XpnetError(f"val has {X_.shape[1]} features but the training data "
                                 f"has {X.shape[1]}.")
        return n_classes

    def _new_network(self, d_in: int, n_classes: int, schedule) -> Network:
        """M freshly initialised models, M from the per-model values and the schedule."""
        per_model = {name: getattr(self, name) for name in PER_MODEL}
        M = _models_from({**per_model, "the schedule": getattr(schedule, "n_models", None)})
        config = NetworkConfig(
            d_in=d_in, hidden=self.hidden, n_classes=n_classes, batch_norm=self.batch_norm,
            init=self.init, bn_momentum=self.bn_momentum,
            **({} if isinstance(self.bn_eps, tuple) else {"bn_eps": self.bn_eps}))
        return Network.create(config, n_models=M, seeds=self.seeds, lam=self.lam,
                              sigma=self.sigma, bn_eps=self.bn_eps, device=self.device,
                              dtype=self.dtype)

    # ---------------------------------------------------------------- inference
    def predict(self, X) -> np.ndarray:
        """Each model's predicted class for each sample: int64 ``(M, n)`` for ``X`` ``(n, d)``."""
        net = self._fitted()
        Xd = net.backend.asarray(self._inputs(X), dtype=net.dtype)
        return to_numpy(net.predict(Xd, chunk=CHUNK)).astype(np.int64)

    def predict_proba(self, X) -> np.ndarray:
        """Each model's softmax probabilities: ``(M, n, C)`` for ``X`` ``(n, d)``, rows sum to 1."""
        net = self._fitted()
        xp = net.xp
        X = self._inputs(X)
        parts = []
        for start in range(0, X.shape[0], CHUNK):
            Xd = net.backend.asarray(X[start:start + CHUNK], dtype=net.dtype)
            scores, _ = net.forward(Xd, train=False)
            exp = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
            parts.append(to_numpy(exp / xp.sum(exp, axis=-1, keepdims=True)))
        return np.concatenate(parts, axis=1)

    def score(self, data, y=None) -> np.ndarray:
        """Accuracy of each model, float64 ``(M,)``, on an ``(X, y)`` pair (or on ``X, y``)."""
        X, y = _pair(data, y, "The data to score")
        self._fitted()
        _check_labels(y, self.n_classes_, "The data to score")
        return np.mean(self.predict(X) == y[None, :], axis=1, dtype=np.float64)

    # -------------------------------------------------------------- checkpoints
    def save(self, path) -> None:
        """Write the fitted models and these settings to a ``.npz`` file (no pickle inside).

        The file is a :meth:`Network.save <xpnet.network.Network.save>` checkpoint with
        one more entry, so ``Network.load`` reads it too.
        """
        state = self._fitted().state_dict()
        settings = {name: getattr(self, name) for name in _SAVED}
        state["classifier"] = np.array(json.dumps(settings))
        with atomic_write(path) as f:
            np.savez(f, **state)

    @classmethod
    def load(cls, path, device="cpu") -> Classifier:
        """A fitted Classifier from a file written by :meth:`save` (or ``Network.save``).

        It predicts and scores at once; ``fit`` retrains from scratch with the stored
        settings (architecture, ``lam``, ``seeds``, ``bn_eps``, momentum, batch size, ...).
        """
        net = Network.load(path, device=device)
        with np.load(os.fspath(path), allow_pickle=False) as f:
            stored = str(f["classifier"]) if "classifier" in f.files else "{}"
        try:
            settings = json.loads(stored)
        except ValueError:
            raise CheckpointError(f"{path} has damaged classifier settings; pass a file "
                                  "written by Classifier.save.") from None
        c = net.config
        clf = cls(hidden=c.hidden, batch_norm=c.batch_norm, init=c.init,
                  bn_momentum=c.bn_momentum, lam=tuple(net.lam_host.tolist()),
                  seeds=0 if net.seeds is None else tuple(net.seeds),
                  bn_eps=tuple(net.bn_eps_host.tolist()), device=device,
                  **{k: v for k, v in settings.items() if k in _SAVED})
        clf.network_ = net
        return clf

    # ------------------------------------------------------------------ helpers
    @property
    def n_models(self) -> int:
        """M, the number of models (fitted: the network's; else from the hyper-parameters)."""
        if self.network_ is not None:
            return self.network_.n_models
        return _models_from({name: getattr(self, name) for name in PER_MODEL})

    @property
    def n_features_in_(self) -> int:
        return self._fitted().config.d_in

    @property
    def n_classes_(self) -> int:
        return self._fitted().config.n_classes

    def _fitted(self) -> Network:
        if self.network_ is None:
            raise XpnetError("This Classifier is not fitted yet; call fit(...) or "
                             "Classifier.load(path) first.")
        return self.network_

    def _inputs(self, X) -> np.ndarray:
        """``X`` as a checked host array ``(n, d)`` with the fitted feature count."""
        X = _features(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise XpnetError(f"X has {X.shape[1]} features but the classifier was fitted "
                             f"on {self.n_features_in_}.")
        return X

    def __repr__(self) -> str:
        state = "fitted" if self.network_ is not None else "not fitted"
        return (f"Classifier(hidden={self.hidden}, batch_norm={self.batch_norm}, "
                f"lam={self.lam}, seeds={self.seeds}, device={self.device!r}, "
                f"n_models={self.n_models}, {state})")


# ---------------------------------------------------------------------- input checks
def _is_number(value) -> bool:
    """Whether ``value`` is one real number (not a bool, a string or a sequence)."""
    return np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf"


def _numbers(value) -> np.ndarray | None:
    """``value`` as float64 ``()`` or ``(k,)``; None unless a number or a flat sequence of them."""
    arr = np.asarray(value, dtype=object)  # a ragged sequence stays 1-D instead of failing
    if arr.ndim > 1 or not all(_is_number(v) for v in arr.reshape(-1)):
        return None
    return arr.astype(np.float64)


def _widths(hidden) -> tuple[int, ...]:
    """Hidden widths as a tuple of positive ints (one int: one hidden layer)."""
    arr = _numbers(hidden)
    if arr is None or not np.all((arr == np.round(arr)) & (arr >= 1)):
        raise XpnetError(f"hidden must be a sequence of positive whole widths such as "
                         f"(50, 50), got {hidden!r}.")
    return tuple(int(h) for h in arr.reshape(-1).tolist())


def _whole(name: str, value, minimum: int) -> int:
    """``value`` as an int, which must be a whole number at least ``minimum``."""
    if not (_is_number(value) and value == np.round(value) and value >= minimum):
        raise XpnetError(f"{name} must be a whole number of at least {minimum}, got {value!r}.")
    return int(value)


def _per_model_value(name: str, value, whole: bool = False):
    """A scalar stays a scalar (float, or int if ``whole``); a sequence becomes a tuple."""
    arr = _numbers(value)
    if arr is None or arr.size == 0:
        raise XpnetError(f"{name} must be a number or a sequence of one number per model, "
                         f"got {value!r}.")
    if whole and not np.all((arr == np.round(arr)) & (arr >= 0)):
        raise XpnetError(f"{name} must be non-negative whole numbers, got {value!r}.")
    cast = int if whole else float
    return cast(arr) if arr.ndim == 0 else tuple(cast(v) for v in arr.tolist())


def _models_from(values: dict) -> int:
    """M from per-model values (tuples count, scalars and None do not); checks they agree."""
    lengths = {name: (len(v) if isinstance(v, tuple) else v) for name, v in values.items()
               if isinstance(v, tuple) or (name == "the schedule" and v is not None)}
    if len(set(lengths.values())) > 1:
        described = " and ".join(f"{name} has {n}" for name, n in lengths.items())
        raise XpnetError(f"The per-model values disagree on the number of models ({described}); "
                         "give one value per model or one for all.")
    return next(iter(lengths.values()), 1)


def _pair(data, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked host arrays ``X`` ``(n, d)`` and ``y`` ``(n,)`` from a pair, or from ``X, y``."""
    if y is None:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise XpnetError(f"{what} must be an (X, y) pair such as data.train or (X, y), "
                             f"got {type(data).__name__}.")
        data, y = data
    X = _features(data, f"{what}'s X")
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


def _features(X, what: str) -> np.ndarray:
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


def _check_labels(y: np.ndarray, n_classes: int, what: str) -> None:
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise XpnetError(f"{what}'s y holds the label {bad}, outside the classes 0 to "
                         f"{n_classes - 1}.")
