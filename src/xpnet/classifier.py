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

import dataclasses
import inspect
import json
import os

import numpy as np

from xpnet import inputs, network, optim, options
from xpnet.atomic import atomic_write
from xpnet.backend import to_numpy
from xpnet.errors import CheckpointError, XpnetError
from xpnet.network import Network
from xpnet.schedules import CyclicalLR
from xpnet.training import DeviceSplit, History, TrainConfig, train

#: Classifier's own keywords and their defaults; the network's come from the fields of
#: :class:`~xpnet.network.NetworkConfig` (:func:`network_keywords`), never listed here.
OWN = {"lam": 0.005, "seeds": 0, "sigma": None, "momentum": 0.0, "optimizer": None,
       "batch_size": 100, "n_classes": None, "evals_per_cycle": 10,
       "train_eval_size": 10000, "device": "cpu", "dtype": "float32"}

#: Own keywords that take one value for all models or one per model.
OWN_PER_MODEL = ("lam", "seeds", "sigma", "momentum")

#: Own keywords a checkpoint stores beside the network (which holds the network's).
_SAVED = ("sigma", "momentum", "optimizer", "batch_size", "n_classes", "evals_per_cycle",
          "train_eval_size", "dtype")


def network_keywords() -> dict:
    """The network options ``Classifier`` takes, with their defaults: every field of
    ``NetworkConfig`` but the sizes, which come from the data (and ``hidden``)."""
    return {f.name: f.default for f in dataclasses.fields(network.NetworkConfig)
            if f.name not in ("d_in", "hidden", "n_classes")}


def keywords() -> list[str]:
    """Every constructor argument, in order: what ``get_params`` returns."""
    return ["hidden", *network_keywords(), *OWN]


def per_model_keywords() -> tuple[str, ...]:
    """Constructor arguments that take one value for all models or one per model."""
    return (*OWN_PER_MODEL, *options.per_model_names(network.NetworkConfig))


#: Samples per forward pass in predict / predict_proba.
CHUNK = 10000


def default_schedule() -> CyclicalLR:
    """The reports' schedule: eta 1e-5 .. 1e-1, n_s = 5 epochs, 2 cycles."""
    return CyclicalLR(1e-5, 1e-1, n_s_epochs=5, cycles=2)


class Classifier:
    """M fully connected softmax classifiers with optional batch norm, trained in lockstep.

    The keywords are this class's own (below) and every field of
    :class:`~xpnet.network.NetworkConfig` but the sizes (``norm``, ``activation``,
    ``dropout``, ``init``, ``bn_momentum``, ``bn_eps``, ...: see its docstring), derived
    from it; its per-model fields take one value or one per model here too.  The legacy
    ``batch_norm=True/False`` means ``norm="batch"/None``.

    Args:
        hidden: widths of the hidden layers (``()``: a linear classifier).
        lam: L2 strength (:mod:`xpnet.l2`); per model.
        seeds: initial weights and batch orders of model m come from ``seeds[m]``; per model.
        sigma: weight std for ``init="normal"``; per model.
        momentum: SGD momentum in [0, 1); per model.
        optimizer: options from :mod:`xpnet.optim` (``Adam()``, ``AdamW(...)``); None: SGD
            with ``momentum``.
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

    def __init__(self, hidden=(50, 50), **kwargs):
        unknown = set(kwargs) - set(keywords()) - {"batch_norm"}
        if unknown:
            raise XpnetError(f"Classifier got an unknown keyword {sorted(unknown)[0]!r}; "
                             f"use one of: {', '.join(keywords())}.")
        if "batch_norm" in kwargs:  # the keyword before norm existed
            kwargs["norm"] = "batch" if kwargs.pop("batch_norm") else None
        given = {**network_keywords(), **OWN, **kwargs}
        if given["dtype"] not in ("float32", "float64"):
            raise XpnetError(f"dtype must be 'float32' or 'float64', got {given['dtype']!r}.")
        self.hidden = inputs.widths(hidden)
        # The network's options, checked (and per-model tuples normalised) by the config.
        probe = network.NetworkConfig(d_in=1, hidden=self.hidden, n_classes=2,
                                      **{k: given[k] for k in network_keywords()})
        for name in network_keywords():
            setattr(self, name, getattr(probe, name))
        self.lam = inputs.per_model_value("lam", given["lam"])
        self.seeds = inputs.per_model_value("seeds", given["seeds"], whole=True)
        sigma = given["sigma"]
        self.sigma = None if sigma is None else inputs.per_model_value("sigma", sigma)
        self.momentum = inputs.per_model_value("momentum", given["momentum"])
        self.batch_size = inputs.whole("batch_size", given["batch_size"], 1)
        n_classes, size = given["n_classes"], given["train_eval_size"]
        self.n_classes = None if n_classes is None else inputs.whole("n_classes", n_classes, 2)
        self.evals_per_cycle = inputs.whole("evals_per_cycle", given["evals_per_cycle"], 1)
        self.train_eval_size = (None if size is None
                                else inputs.whole("train_eval_size", size, 1))
        self.optimizer = given["optimizer"]
        self._train_config()  # checks the optimizer with the momentum
        self.device = given["device"]
        self.dtype = given["dtype"]
        self.network_: Network | None = None
        self.history_: History | None = None
        self._model_count()  # lengths agree

    def get_params(self) -> dict:
        """The constructor arguments, as given (per-model sequences as tuples)."""
        return {name: getattr(self, name) for name in keywords()}

    def _train_config(self) -> TrainConfig:
        return TrainConfig(batch_size=self.batch_size, momentum=self.momentum,
                           evals_per_cycle=self.evals_per_cycle,
                           train_eval_size=self.train_eval_size, optimizer=self.optimizer)

    def _model_count(self, schedule=None) -> int:
        """M from the per-model values (and ``schedule``'s); checks that they agree."""
        values = {name: getattr(self, name) for name in per_model_keywords()}
        opt = self.optimizer
        for name in () if opt is None else opt.per_model_fields():
            values[name] = getattr(opt, name)
        return inputs.models_from({**values, "the schedule": getattr(schedule, "n_models", None)})

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
        X, y = inputs.pair(train_data, None, "The training data")
        val_pair = None if val is None else inputs.pair(val, None, "val")
        schedule = default_schedule() if schedule is None else schedule
        if not hasattr(schedule, "rates"):
            raise XpnetError("The schedule must be one from xpnet.schedules (CyclicalLR, "
                             f"ConstantLR, ...), got {type(schedule).__name__}.")
        net = self._new_network(X.shape[1], self._class_count(X, y, val_pair), schedule)
        C = net.config.n_classes
        train_split = DeviceSplit.from_host(net.backend, X, y, C, self.dtype)
        val_split = None if val_pair is None else DeviceSplit.from_host(
            net.backend, *val_pair, C, self.dtype)
        history = train(net, schedule, train_split, val_split, self._train_config(),
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
            inputs.check_labels(y_, n_classes, name)
            if X_.shape[1] != X.shape[1]:
                raise XpnetError(f"val has {X_.shape[1]} features but the training data "
                                 f"has {X.shape[1]}.")
        return n_classes

    def _new_network(self, d_in: int, n_classes: int, schedule) -> Network:
        """M freshly initialised models, M from the per-model values and the schedule."""
        M = self._model_count(schedule)
        shared = {name: getattr(self, name) for name in network_keywords()}
        per_model = {name: shared.pop(name) for name in list(shared)
                     if isinstance(shared[name], tuple)}
        config = network.NetworkConfig(d_in=d_in, hidden=self.hidden, n_classes=n_classes,
                                       **shared)
        return Network.create(config, n_models=M, seeds=self.seeds, lam=self.lam,
                              sigma=self.sigma, device=self.device, dtype=self.dtype,
                              **per_model)

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
        X, y = inputs.pair(data, y, "The data to score")
        self._fitted()
        inputs.check_labels(y, self.n_classes_, "The data to score")
        return np.mean(self.predict(X) == y[None, :], axis=1, dtype=np.float64)

    # -------------------------------------------------------------- checkpoints
    def save(self, path) -> None:
        """Write the fitted models and these settings to a ``.npz`` file (no pickle inside).

        The file is a :meth:`Network.save <xpnet.network.Network.save>` checkpoint with
        one more entry, so ``Network.load`` reads it too.
        """
        state = self._fitted().state_dict()
        settings = {name: getattr(self, name) for name in _SAVED}
        settings["optimizer"] = optim.to_dict(self.optimizer)
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
        if settings.get("optimizer") is not None:
            settings["optimizer"] = optim.from_dict(settings["optimizer"])
        c = net.config
        stored = {name: getattr(c, name) for name in network_keywords()}
        for name, values in net.per_model_host.items():  # one value per model, or one for all
            stored[name] = float(values[0]) if np.all(values == values[0]) else tuple(
                values.tolist())
        clf = cls(hidden=c.hidden, lam=tuple(net.lam_host.tolist()),
                  seeds=0 if net.seeds is None else tuple(net.seeds), device=device,
                  **stored, **{k: v for k, v in settings.items() if k in _SAVED})
        clf.network_ = net
        return clf

    # ------------------------------------------------------------------ helpers
    @property
    def n_models(self) -> int:
        """M, the number of models (fitted: the network's; else from the hyper-parameters)."""
        if self.network_ is not None:
            return self.network_.n_models
        return self._model_count()

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
        X = inputs.features(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise XpnetError(f"X has {X.shape[1]} features but the classifier was fitted "
                             f"on {self.n_features_in_}.")
        return X

    def __repr__(self) -> str:
        state = "fitted" if self.network_ is not None else "not fitted"
        return (f"Classifier(hidden={self.hidden}, norm={self.norm!r}, "
                f"lam={self.lam}, seeds={self.seeds}, device={self.device!r}, "
                f"n_models={self.n_models}, {state})")


def _signature() -> inspect.Signature:
    """``Classifier.__init__``'s signature, derived like its keywords (for ``help`` and
    tools that read signatures)."""
    P = inspect.Parameter
    params = [P("self", P.POSITIONAL_OR_KEYWORD),
              P("hidden", P.POSITIONAL_OR_KEYWORD, default=(50, 50))]
    params += [P(name, P.KEYWORD_ONLY, default=default)
               for name, default in {**network_keywords(), **OWN}.items()]
    return inspect.Signature(params)


Classifier.__init__.__signature__ = _signature()
