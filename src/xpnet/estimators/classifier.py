"""The short API: a scikit-learn classifier on :func:`~xpnet.training.loop.train`.

::

    from xpnet import Classifier, CyclicalLR, load_cifar10
    data = load_cifar10("../shared/data")
    net = Classifier(hidden=(50, 50), lam=5e-3,
                     schedule=CyclicalLR(1e-5, 1e-1, n_s_epochs=5, cycles=2))
    net.fit(*data.train, val=data.val)     # returns net; the History is net.history_
    net.score(*data.test)                  # one test accuracy, a float

Two forms.  With scalar hyper-parameters a :class:`Classifier` is one model and a
scikit-learn classifier: ``get_params`` / ``set_params`` / ``clone``, ``fit(X, y)``
returning ``self``, ``predict`` ``(n,)`` in the labels of ``classes_`` (any labels,
strings too), ``predict_proba`` ``(n, C)``, ``score`` the mean accuracy; it works in
``Pipeline``, ``cross_val_score`` and ``GridSearchCV``.  With a per-model sequence
(``lam=[1e-3, 1e-2]``; also ``seeds``, ``sigma``, ``momentum``, the per-model fields of
``NetworkConfig`` and the schedule's rates) it is M models of one architecture trained in
lockstep (see :class:`~xpnet.network.network.Network`), read with the ``*_all`` methods:
``predict_all`` ``(M, n)``, ``predict_proba_all`` ``(M, n, C)``, ``score_all`` ``(M,)``
(which work for M = 1 too); the one-model methods then refuse, since they cannot say
which model answers.  To pick the best of a grid, use
:class:`~xpnet.estimators.classifier_cv.ClassifierCV`.

Inputs are host arrays (or lists); with scikit-learn's array API dispatch on
(``sklearn.set_config(array_api_dispatch=True)``) they may come from CuPy, PyTorch or
array_api_strict, the models then train in that library on the input's device, and
outputs and numeric ``classes_`` follow the input (see :mod:`xpnet.estimators.common`).  The
lower layer (``Network``, ``train``, ``DeviceSplit``, callbacks) stays available as
``clf.network_`` and ``xpnet.training.loop``.  scikit-learn is not needed to use it.
"""

from __future__ import annotations

import importlib
import inspect
import warnings

import numpy as np

from xpnet.backend.devices import get_backend
from xpnet.base import inputs
from xpnet.errors import DivergedError, DivergenceWarning, InputError, XpnetError
from xpnet.estimators import common, files, settings
from xpnet.estimators.keywords import OWN, keywords, network_keywords
from xpnet.estimators.lockstep import LockstepAnswers, diverged_message, models_text
from xpnet.network import config as network_config
from xpnet.network.network import Network
from xpnet.search.halving import Halving
from xpnet.search.pbt import PBT
from xpnet.training import DeviceSplit, train
from xpnet.training.resume import EVERY_S


class Classifier(LockstepAnswers, common.Params):
    """Fully connected softmax classifiers with optional batch norm: one, or M in lockstep.

    The keywords are this class's own (below) and every field of
    :class:`~xpnet.network.config.NetworkConfig` but the sizes (``norm``, ``activation``,
    ``dropout``, ``init``, ``bn_momentum``, ``bn_eps``, ...: see its docstring), derived
    from it; its per-model fields take one value or one per model here too.  The legacy
    ``batch_norm=True/False`` means ``norm="batch"/None``.  The arguments are stored as
    given (``get_params`` returns them, as ``clone`` needs) and checked at once, so a
    mistake is a one-sentence error here rather than at ``fit``.

    Args:
        hidden: widths of the hidden layers (``()``: a linear classifier).
        lam: L2 strength (:mod:`xpnet.nn.l2`); per model.
        seeds: initial weights and batch orders of model m come from ``seeds[m]``; per model.
        sigma: weight std for ``init="normal"``; per model.
        momentum: SGD momentum in [0, 1); per model.
        optimizer: options from :mod:`xpnet.training.optim` (``Adam()``, ``AdamW(...)``); None: SGD
            with ``momentum``.
        schedule: the learning rates, a schedule from :mod:`xpnet.training.schedules` with lengths
            in steps or epochs; None: :func:`~xpnet.estimators.settings.default_schedule`.
        batch_size: samples per step (at most the training set's size: a smaller set
            trains in full batches); an epoch is ``n_train // batch_size`` steps.
        n_classes: C, for integer labels ``0 .. C - 1`` some of which the training data may
            lack (``classes_`` is then ``0 .. C - 1``); None: ``classes_`` are the sorted
            distinct labels of ``fit``'s ``y`` (and ``val``'s), of any kind.
        evals_per_cycle, train_eval_size: record points per schedule cycle, and how many
            training samples the recorded training metrics use (see ``TrainConfig``).
        device: ``"cpu"`` (NumPy), ``"cuda"`` (CuPy), ... or a ``Backend``; with
            scikit-learn's array API dispatch on, a non-NumPy input's library and device win.
        dtype: ``"float32"`` (default) or ``"float64"``.

    After :meth:`fit` (or :meth:`load`): ``network_`` (the lower-layer ``Network``),
    ``history_`` (the ``History`` of the last fit; None after load), ``classes_`` ``(C,)``,
    ``n_features_in_``, ``n_classes_`` and ``n_models``; after fit, ``survivors_``: the
    indices of the fitted models among those fit started with (all of them unless
    ``halving`` dropped some), and ``diverged_step_``: for each of them, the step it
    diverged at (-1: it did not).

    Diverged models.  A model whose training loss became non-finite or exploded stops
    training at that step (``history_.diverged_step``); ``fit`` says so in a
    :class:`~xpnet.errors.DivergenceWarning` naming the models and steps.  Such a model has
    no answer: ``predict``, ``predict_proba`` and ``score`` raise
    :class:`~xpnet.errors.DivergedError` for it, ``predict_proba_all`` and ``score_all``
    give NaN in its row (with a warning), and ``predict_all`` raises, since a label cannot
    say "no answer"; :meth:`save` refuses it, so a loaded model never diverged.
    """

    def __init__(self, hidden=(50, 50), **kwargs):
        unknown = set(kwargs) - set(keywords()) - {"batch_norm"}
        if unknown:
            raise InputError(f"Classifier got an unknown keyword {sorted(unknown)[0]!r}; "
                             f"use one of: {', '.join(keywords())}.")
        if "batch_norm" in kwargs:  # the keyword before norm existed
            kwargs["norm"] = "batch" if kwargs.pop("batch_norm") else None
        self.hidden = hidden
        for name, default in {**network_keywords(), **OWN}.items():
            setattr(self, name, kwargs.get(name, default))
        self._check_params()

    @classmethod
    def _param_names(cls) -> list[str]:
        return keywords()

    def _check_params(self) -> None:
        self._settings()

    def _settings(self) -> dict:
        """Every argument checked and in its normal form (per-model sequences as tuples)."""
        try:
            return settings.checked(self)
        except InputError:
            raise
        except XpnetError as err:  # scikit-learn expects a ValueError for a bad parameter
            raise InputError(str(err)) from None

    def __sklearn_tags__(self):
        return common.classifier_tags()

    # ------------------------------------------------------------------ training
    def fit(self, X, y=None, *, val=None, progress: bool = False, callbacks=(),
            halving=None, pbt=None, checkpoint=None,
            checkpoint_every: float = EVERY_S) -> Classifier:
        """Initialise the M models and train them on ``X, y``; returns ``self``.

        Args:
            X: training samples ``(n, d)``; or an ``(X, y)`` pair (``data.train``) with
                ``y`` left out.
            y: their labels ``(n,)``: any values ``numpy.unique`` can sort (ints, strings).
            val: an optional ``(X, y)`` pair whose metrics are recorded during training.
            progress: show a progress bar over the steps.
            callbacks: :class:`~xpnet.training.loop.Callback` objects for ``train``.
            halving: a :class:`~xpnet.search.halving.Halving` schedule (needs ``val`` to rank by
                validation accuracy): the losing models leave the network at its rungs,
                so afterwards ``n_models`` is the survivors' count, the ``*_all`` methods
                answer for them only, and ``survivors_`` holds their indices among the M
                models fit started with (``history_.metrics`` keeps all M).
            pbt: a :class:`~xpnet.search.pbt.PBT` schedule (population-based training;
                needs ``val`` to rank by validation accuracy): at its action points the
                worst models take the best ones' state and explore their hyper-parameters;
                ``history_.lineage(m)`` gives model m's ancestry and hyper-parameter
                schedule.  One of ``halving`` and ``pbt`` at a time.
            checkpoint: a file path for a long fit: its whole state is saved there at
                record points, at most every ``checkpoint_every`` seconds; after a stop,
                ``fit`` with the same data, settings and path goes on from the last save to
                the same numbers; the file goes once the fit ends
                (:mod:`xpnet.training.resume`).

        Returns:
            ``self``; ``self.history_`` is the run's ``History``
            (``history_.metrics["val_accuracy"]`` is ``(n_points, M)``, ...).  Models that
            diverged are named in a :class:`~xpnet.errors.DivergenceWarning`.
        """
        return self._fit(X, y, val=val, progress=progress, callbacks=callbacks,
                         halving=halving, pbt=pbt, warn=True, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every)

    def _fit(self, X, y, *, val, progress, callbacks, halving, warn: bool, pbt=None,
             checkpoint=None, checkpoint_every: float = EVERY_S) -> Classifier:
        """:meth:`fit`; ``warn=False`` leaves the divergence warning to the caller."""
        if hasattr(y, "rates"):
            raise InputError("fit(X, y) takes the data only; pass the schedule as "
                             "Classifier(schedule=...).")
        s = self._settings()
        callbacks = common.callbacks(callbacks)
        if halving is not None:
            if not isinstance(halving, Halving):
                raise InputError("halving must be a schedule such as xpnet.Halving(rungs=...) "
                                 f"or None, got {type(halving).__name__}.")
            halving.check(settings.model_count(s), has_val=val is not None)
        if pbt is not None:
            if not isinstance(pbt, PBT):
                raise InputError("pbt must be a schedule such as xpnet.PBT(interval=...) or "
                                 f"None, got {type(pbt).__name__}.")
            if halving is not None:
                raise InputError("fit takes one population schedule at a time; pass halving "
                                 "or pbt, not both.")
            pbt.check(settings.model_count(s), has_val=val is not None)
        space = common.input_namespace(X)
        X, y = self._data(X, y, "The training data", s["dtype"])
        splits = [(X, y)] if val is None else [
            (X, y), self._data(*inputs.pair(val, "val"), "val", s["dtype"])]
        if val is not None and splits[1][0].shape[1] != X.shape[1]:
            raise InputError(f"val has {splits[1][0].shape[1]} features but the training "
                             f"data has {X.shape[1]}.")
        n_samples = sum(len(y_) for _, y_ in splits)
        if s["n_classes"] is not None:  # before classes_ = arange(n_classes) is allocated
            common.check_fit_memory(self._config(s, X.shape[1], s["n_classes"]).sizes,
                                       settings.model_count(s), s["dtype"], n_samples)
        classes, codes = common.encode_labels([y_ for _, y_ in splits], s["n_classes"])
        device = s["device"] if space is None else get_backend(common.backend_flag(*space))
        net = self._new_network(s, X.shape[1], len(classes), device, n_samples)
        C, dtype = len(classes), s["dtype"]
        train_split = DeviceSplit.from_host(net.backend, X, codes[0], C, dtype)
        val_split = None if val is None else DeviceSplit.from_host(
            net.backend, splits[1][0], codes[1], C, dtype)
        history = train(net, s["schedule"], train_split, val_split,
                        settings.train_config(s, min(s["batch_size"], X.shape[0])),
                        callbacks=callbacks, progress=progress, halving=halving, pbt=pbt,
                        checkpoint=checkpoint, checkpoint_every=checkpoint_every)
        self.network_, self.history_ = net, history
        survivors = np.arange(net.n_models) if history.survivors is None else history.survivors
        self.survivors_ = common.to_namespace(survivors, space)
        self.diverged_step_ = common.to_namespace(
            np.asarray(history.diverged_step, dtype=np.int64)[survivors], space)
        self._fitted_attributes(classes, space)
        if warn:
            message = diverged_message(history.diverged_step)
            if message:
                warnings.warn(message, DivergenceWarning, stacklevel=3)
        return self

    def _fitted_attributes(self, classes: np.ndarray, space) -> None:
        self._space = space  # fit's (namespace, device); None: NumPy
        self.classes_ = common.to_namespace(classes, space)
        self.n_features_in_ = self.network_.config.d_in
        self.n_classes_ = self.network_.config.n_classes

    def _keep_models(self, keep: np.ndarray) -> None:
        """Keep only the network's models ``keep`` (host int64 ``(k,)``, increasing), as
        halving does: ``survivors_`` and ``diverged_step_`` follow."""
        space = getattr(self, "_space", None)
        self.network_.take_models(keep)
        for name in ("survivors_", "diverged_step_"):
            setattr(self, name, common.to_namespace(
                np.asarray(common.host(getattr(self, name)))[keep], space))

    def _diverged_steps(self) -> np.ndarray:
        """``diverged_step_`` on the host: int64 ``(M,)``, -1 for a model that did not
        diverge (as none did after :meth:`load`, which sets no ``diverged_step_``)."""
        net = self._fitted()
        steps = getattr(self, "diverged_step_", None)
        if steps is None:
            return np.full(net.n_models, -1, dtype=np.int64)
        return np.asarray(common.host(steps), dtype=np.int64)

    @staticmethod
    def _data(X, y, what: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        """Checked host arrays ``X`` ``(n, d)`` (within ``dtype``'s range) and labels
        ``y`` ``(n,)``."""
        X, y = inputs.split_pair(X, y, what)
        X = inputs.features(common.host(X), f"{what}'s X", dtype)
        return X, common.labels(y, X.shape[0], what)

    def _new_network(self, s: dict, d_in: int, n_classes: int, device,
                     n_samples: int = 0) -> Network:
        """M freshly initialised models, M from the per-model values and the schedule;
        refused in one sentence first if they and ``n_samples`` of data cannot fit in
        this machine's memory."""
        M = settings.model_count(s)
        config = self._config(s, d_in, n_classes)
        common.check_fit_memory(config.sizes, M, s["dtype"], n_samples)
        per_model = {name: s[name] for name in network_keywords() if isinstance(s[name], tuple)}
        return Network.create(config, n_models=M, seeds=s["seeds"], lam=s["lam"],
                              sigma=s["sigma"], device=device, dtype=s["dtype"], **per_model)

    @staticmethod
    def _config(s: dict, d_in: int, n_classes: int) -> network_config.NetworkConfig:
        """The architecture; per-model options (tuples) are passed to ``Network.create``."""
        shared = {name: s[name] for name in network_keywords() if not isinstance(s[name], tuple)}
        return network_config.NetworkConfig(d_in=d_in, hidden=s["hidden"],
                                            n_classes=n_classes, **shared)

    # ---------------------------------------------------------------- inference
    def predict(self, X):
        """The predicted label of each sample: ``(n,)`` for ``X`` ``(n, d)`` (one model;
        :class:`~xpnet.errors.DivergedError` if it diverged)."""
        return self._one("predict")._labels_all(X, "predict")[0, ...]

    def predict_proba(self, X):
        """Class probabilities ``(n, C)``, columns in ``classes_`` order (one model;
        :class:`~xpnet.errors.DivergedError` if it diverged)."""
        return common.to_namespace(self._one("predict_proba")._proba_all(
            X, "predict_proba")[0], self._output_space(X, "predict_proba"))

    def score(self, X, y=None, sample_weight=None) -> float:
        """Mean accuracy on ``X, y`` (or on an ``(X, y)`` pair), weighted by
        ``sample_weight`` ``(n,)`` if given (one model; :class:`~xpnet.errors.DivergedError`
        if it diverged)."""
        X, y = inputs.split_pair(X, y, "The data to score")
        pred = common.host(self._one("score")._labels_all(X, "score"))[0]
        y = self._score_labels(y, pred.shape[0])
        weights = (None if sample_weight is None
                   else inputs.sample_weights(common.host(sample_weight), pred.shape[0]))
        return float(np.average(pred == y, weights=weights))

    # -------------------------------------------------------------- checkpoints
    def save(self, path) -> None:
        """Write the fitted models, these settings and ``classes_`` to a ``.npz`` file (no
        pickle inside); see :func:`xpnet.estimators.files.save`.  A model that diverged
        has nothing to restore: :class:`~xpnet.errors.DivergedError`, before writing."""
        steps = self._diverged_steps()
        if np.any(steps >= 0):
            raise DivergedError(f"{models_text(steps)} diverged in training, and a checkpoint "
                                "holds only models that answer; fit again with a lower "
                                "learning rate (history_ keeps this run's figures).")
        files.save(self, path)

    @classmethod
    def load(cls, path, device="cpu") -> Classifier:
        """A fitted Classifier from a file written by :meth:`save` (or ``Network.save``);
        see :func:`xpnet.estimators.files.load`."""
        return files.load(cls, path, device)

    # ------------------------------------------------------------------ helpers
    @property
    def n_models(self) -> int:
        """M, the number of models (fitted: the network's; else from the hyper-parameters)."""
        if getattr(self, "network_", None) is not None:
            return self.network_.n_models
        return settings.model_count(self._settings())

    def _one(self, method: str) -> Classifier:
        """``self`` if it holds one model that did not diverge; else a one-sentence error
        naming the way out."""
        self._fitted()
        if self.n_models != 1:
            raise XpnetError(f"This Classifier holds {self.n_models} models (per-model "
                             f"hyper-parameters) and {method} answers for one; use "
                             f"{method}_all for every model's, or ClassifierCV to keep the best.")
        step = int(self._diverged_steps()[0])
        if step >= 0:
            raise DivergedError(f"This Classifier's model diverged in training at step {step}, "
                                f"so {method} has no answer; fit again with a lower learning "
                                "rate.")
        return self

    def _fitted(self) -> Network:
        if getattr(self, "network_", None) is None:
            raise common.not_fitted("This Classifier is not fitted yet; call fit(X, y) or "
                                 "Classifier.load(path) first.")
        return self.network_

    def _output_space(self, X, method: str):
        """Where ``method``'s output goes: ``X``'s (namespace, device), None for NumPy.
        With dispatch on, that must be where fit's input was (scikit-learn's rule)."""
        space = common.input_namespace(X)
        fitted = getattr(self, "_space", None)
        if common.dispatch_on() and not common.same_space(space, fitted):
            raise InputError(f"Inputs passed to Classifier.{method}() must use the same "
                             f"namespace and device as those passed to fit() "
                             f"({common.describe(fitted)}), got {common.describe(space)}.")
        return space

    def _inputs(self, X) -> np.ndarray:
        """``X`` as a checked host array ``(n, d)`` with the fitted feature count."""
        X = inputs.features(common.host(X), "X", str(self.network_.dtype).rpartition(".")[2])
        if X.shape[1] != self.n_features_in_:
            raise InputError(f"X has {X.shape[1]} features, but Classifier is expecting "
                             f"{self.n_features_in_} features as input.")
        return X

    def __getstate__(self) -> dict:
        # scikit-learn's joblib workers and clone-by-pickle need a fitted Classifier to
        # pickle: the network pickles itself (Network.__getstate__), the array-API
        # namespace of the inputs travels as its module's name.
        state = dict(self.__dict__)
        if state.get("_space") is not None:
            state["_space"] = (state["_space"][0].__name__, state["_space"][1])
        return state

    def __setstate__(self, state: dict) -> None:
        if state.get("_space") is not None:
            state["_space"] = (importlib.import_module(state["_space"][0]), state["_space"][1])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        state = "fitted" if getattr(self, "network_", None) is not None else "not fitted"
        return (f"Classifier(hidden={self.hidden}, norm={self.norm!r}, "
                f"lam={self.lam}, seeds={self.seeds}, device={self.device!r}, "
                f"n_models={self.n_models}, {state})")


def _signature() -> inspect.Signature:
    """``Classifier.__init__``'s signature, derived like its keywords (for ``help``, and
    for scikit-learn, which reads the parameter names from it)."""
    P = inspect.Parameter
    params = [P("self", P.POSITIONAL_OR_KEYWORD),
              P("hidden", P.POSITIONAL_OR_KEYWORD, default=(50, 50))]
    params += [P(name, P.KEYWORD_ONLY, default=default)
               for name, default in {**network_keywords(), **OWN}.items()]
    return inspect.Signature(params)


Classifier.__init__.__signature__ = _signature()
