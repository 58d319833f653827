"""A grid of hyper-parameters fitted at once, in scikit-learn's ``*CV`` style.

scikit-learn's convention for one estimator that fits a grid of one hyper-parameter is
the ``*CV`` family (``RidgeClassifierCV(alphas=...)``): one ``fit`` tries every value,
the chosen one is kept, and the scores are in ``cv_results_``.  :class:`ClassifierCV`
is that for the lockstep :class:`~xpnet.estimators.classifier.Classifier`: every combination of
``lams`` (and the other per-model values of ``param_grid``: ``dropout``, ``bn_eps``,
``momentum``, ...) times ``seeds`` is one model of a single lockstep network, trained in
one ``fit`` on a training part and scored on a held-out validation part (or on ``val``).
The seeds play the part of scikit-learn's splits: a candidate's score is its mean over
its seeds.  With ``halving=Halving(...)`` the losing candidates leave the network at
the rungs (successive halving, :mod:`xpnet.search.halving`), each candidate's seeds together.

::

    from xpnet import ClassifierCV
    search = ClassifierCV(hidden=(50,), lams=(1e-4, 1e-3, 1e-2), seeds=(0, 1))
    search.fit(X, y)                        # 6 models, one network
    search.best_params_                     # {'lam': 0.001}
    pandas.DataFrame(search.cv_results_)    # one row per candidate
    search.predict(X_test)                  # (n,): the best model's labels

Unlike ``GridSearchCV`` there is no refit on all the data: the best model is the one
trained on the training part (its validation score is what chose it).
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import time

import numpy as np

from xpnet.base import inputs
from xpnet.errors import DivergedError, InputError
from xpnet.estimators import common, files, scoring
from xpnet.estimators.classifier import Classifier
from xpnet.estimators.keywords import OWN, keywords, network_keywords, per_model_keywords
from xpnet.search.halving import Halving
from xpnet.search.pbt import PBT

#: ClassifierCV's own keywords and defaults; the rest are Classifier's (but ``lam``,
#: which ``lams`` replaces, and ``seeds`` and ``schedule``, which are among these).
CV_OWN = {"lams": (0.005,), "seeds": (0,), "param_grid": None, "schedule": None,
          "halving": None, "pbt": None, "ensemble": None, "validation_fraction": 0.1,
          "random_state": 0}


def classifier_keywords() -> list[str]:
    """The Classifier keywords ClassifierCV passes on, by name."""
    return [k for k in keywords() if k not in ("lam", "seeds", "schedule")]


class ClassifierCV(common.Params):
    """Every combination of per-model hyper-parameters, trained as one lockstep network.

    Args:
        hidden: widths of the hidden layers.
        lams: the L2 strengths to try.
        seeds: the seeds of every candidate (the "splits" its score is averaged over).
        param_grid: further per-model values to try, ``{name: values}`` with names among
            the Classifier's per-model keywords (``sigma``, ``momentum``, ``dropout``,
            ``bn_eps``, ``leaky_slope``, ...); every combination with ``lams`` is a candidate.
        schedule: a schedule from :mod:`xpnet.training.schedules` (default: the Classifier's).
        halving: a :class:`~xpnet.search.halving.Halving` schedule ranked on the validation part;
            its ``group_size`` becomes the number of seeds, so a candidate's seeds are
            kept or dropped together.  A dropped candidate keeps the validation accuracy
            it had at its rung (``cv_results_["dropped_step"]``) and ranks by it, as
            scikit-learn's ``HalvingGridSearchCV`` ranks every candidate by its score
            whatever the budget it got; the best candidate is the best of those that
            trained to the end, so it need not have rank 1 when a dropped candidate's rung
            score beats every survivor's final one.
        pbt: a :class:`~xpnet.search.pbt.PBT` schedule ranked on the validation part
            (population-based training): the models copy and explore as it says, so a
            candidate is the place a model started in with those values;
            ``classifier_.history_.lineage(m)`` gives the schedule model m followed.
            One of ``halving`` and ``pbt`` at a time.
        ensemble: None, or k: ``predict``, ``predict_proba`` and ``score`` use the mean
            probabilities of the k models with the best validation scores (diverged models
            never; ``ensemble_models_`` names them, indices into ``model_params_``).
        validation_fraction: the share of ``fit``'s samples held out to score on, when
            ``fit`` gets no ``val``.
        random_state: the seed of that hold-out's shuffle.
        **classifier: any other :class:`~xpnet.estimators.classifier.Classifier` keyword (``norm``,
            ``dropout``, ``init``, ``batch_size``, ``optimizer``, ``device``, ``dtype``, ...),
            one value for every candidate.

    The arguments are checked at construction and in ``set_params`` (one-sentence
    :class:`~xpnet.errors.InputError`), as :class:`~xpnet.estimators.classifier.Classifier`'s are.

    After :meth:`fit`: ``classes_``, ``n_features_in_``, ``cv_results_``, ``best_index_``,
    ``best_params_``, ``best_score_``, ``best_model_index_`` (the best candidate's
    best-scoring seed, an index into ``model_params_``), ``model_params_`` (every model's
    values, in model order), ``val_scores_`` ``(M,)`` (each model's validation accuracy
    at the end; NaN if halving dropped it or it diverged: its rung score is in
    ``cv_results_``),
    ``survivors_`` (the models still in the network) and ``classifier_`` (that network).

    Diverged candidates.  A candidate with a seed whose training diverged (non-finite or
    exploding loss) scores NaN, ranks last (as a failed fit does in scikit-learn's
    searches) and is never the best; ``fit`` names such candidates in a
    :class:`~xpnet.errors.DivergenceWarning`.  The diverged models leave the network at
    the end of ``fit``, as halving's dropped ones do (``survivors_`` lists the others),
    so ``predict_all`` answers for the models that can.  When no candidate that trained
    to the end is free of divergence, ``fit`` raises :class:`~xpnet.errors.DivergedError`
    after setting ``cv_results_``, ``val_scores_`` and ``classifier_`` (the figures stay
    readable), and ``predict`` / ``score`` raise it too.
    """

    def __init__(self, hidden=(50, 50), **kwargs):
        names = self._param_names()
        if "batch_norm" in kwargs:  # Classifier's legacy keyword
            kwargs["norm"] = "batch" if kwargs.pop("batch_norm") else None
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            hint = " (ClassifierCV takes lams=...)" if unknown[0] == "lam" else ""
            raise InputError(f"ClassifierCV got an unknown keyword {unknown[0]!r}{hint}; use "
                             f"one of: {', '.join(names)}.")
        self.hidden = hidden
        for name, default in _defaults().items():
            setattr(self, name, kwargs.get(name, default))
        self._check_params()

    @classmethod
    def _param_names(cls) -> list[str]:
        return ["hidden", *_defaults()]

    def _check_params(self) -> None:
        """Every argument, checked: the grid's shape here, its values by the Classifier
        that would train them all."""
        self._classifier(n_classes=None)
        if self.halving is not None and not isinstance(self.halving, Halving):
            raise InputError("halving must be a schedule such as xpnet.Halving(rungs=...) or "
                             f"None, got {type(self.halving).__name__}.")
        if self.pbt is not None and not isinstance(self.pbt, PBT):
            raise InputError("pbt must be a schedule such as xpnet.PBT(interval=...) or None, "
                             f"got {type(self.pbt).__name__}.")
        if self.pbt is not None and self.halving is not None:
            raise InputError("ClassifierCV takes one population schedule at a time; pass "
                             "halving or pbt, not both.")
        if self.ensemble is not None:
            inputs.whole("ensemble", self.ensemble, 1)
        fraction = self.validation_fraction
        if not (inputs.is_number(fraction) and 0 < fraction < 1):
            raise InputError(f"validation_fraction must be between 0 and 1, got {fraction!r}.")
        if self.random_state is not None:
            inputs.whole("random_state", self.random_state, 0)

    # ------------------------------------------------------------------ fitting
    def candidates(self) -> list[dict]:
        """Every candidate's values, ``[{"lam": ..., name: ...}, ...]``, ``lams`` slowest."""
        grid = self.param_grid if self.param_grid is not None else {}
        if not isinstance(grid, dict):
            raise InputError("param_grid must be a dict of value lists such as "
                             f"{{'dropout': (0.0, 0.5)}}, got {type(grid).__name__}.")
        allowed = ", ".join(n for n in per_model_keywords() if n not in ("lam", "seeds"))
        for name in grid:
            if name in ("lam", "seeds"):
                own = "lams" if name == "lam" else "seeds"
                raise InputError(f"param_grid cannot vary {name!r}; give its values as "
                                 f"ClassifierCV({own}=(...)).")
            if name not in per_model_keywords():
                raise InputError(f"param_grid cannot vary {name!r}; it takes {allowed}.")
        grid = {"lam": _value_list("lams", self.lams),
                **{name: _value_list(f"param_grid[{name!r}]", v) for name, v in grid.items()}}
        return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]

    def _seeds(self) -> tuple[int, ...]:
        return tuple(inputs.per_model_value("seeds", _value_list("seeds", self.seeds),
                                            whole=True))

    def _classifier(self, n_classes) -> tuple[Classifier, list[dict]]:
        """The Classifier of every candidate x seed, one lockstep network (its constructor
        checks every value), and each model's values (``model_params_``)."""
        candidates, seeds = self.candidates(), self._seeds()
        model_params = [{**c, "seeds": s} for c in candidates for s in seeds]
        per_model = {name: tuple(p[name] for p in model_params) for name in model_params[0]}
        shared = {name: getattr(self, name) for name in classifier_keywords()}
        return Classifier(**{**shared, "n_classes": n_classes, "schedule": self.schedule,
                             **per_model}), model_params

    def fit(self, X, y, val=None) -> ClassifierCV:
        """Train every candidate x seed as one network; score each on the validation part.

        Args:
            X: training samples ``(n, d)`` (with array API dispatch on, any array library's).
            y: their labels ``(n,)``: any values ``numpy.unique`` can sort (ints, strings).
            val: an optional ``(X_val, y_val)`` pair to score on; default a shuffled
                ``validation_fraction`` of ``X, y``, the rest trains.

        Returns:
            ``self``.  Candidates that diverged are named in a
            :class:`~xpnet.errors.DivergenceWarning`; :class:`~xpnet.errors.DivergedError`
            if no candidate that trained to the end is free of divergence.
        """
        self._check_params()
        for name in ("best_index_", "best_params_", "best_score_", "best_model_index_"):
            self.__dict__.pop(name, None)  # a refit that finds no best leaves none
        dtype = common.dtype_name(self.dtype)
        space = common.input_namespace(X)
        X = inputs.features(common.host(X), "The training data's X", dtype)
        y = common.labels(y, len(X), "The training data")
        if val is None:
            (X_tr, y_tr), (X_val, y_val) = scoring.holdout(X, y, self.validation_fraction,
                                                   self.random_state)
        else:
            X_tr, y_tr = X, y
            X_val, y_val = inputs.pair(val, "val")
            X_val = inputs.features(common.host(X_val), "val's X", dtype)
            y_val = common.labels(y_val, len(X_val), "val")
        classes, (codes_tr, codes_val) = common.encode_labels([y_tr, y_val], None)
        candidates, seeds = self.candidates(), self._seeds()
        clf, self.model_params_ = self._classifier(n_classes=len(classes))
        halving = self.halving
        if halving is not None:
            halving = dataclasses.replace(halving, group_size=len(seeds))
        start = time.perf_counter()
        fit_X = X_tr if space is None else space[0].asarray(X_tr, device=space[1])
        ranked = halving is not None or self.pbt is not None  # needs the validation part
        clf._fit(fit_X, codes_tr, val=(X_val, codes_val) if ranked else None,
                 progress=False, callbacks=(), halving=halving, pbt=self.pbt, warn=False)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        self.val_scores_ = scoring.final_scores(clf, common.to_namespace(X_val, space),
                                                codes_val)
        score_s = time.perf_counter() - start
        healthy = np.flatnonzero(clf._diverged_steps() < 0)
        if 0 < healthy.size < clf.n_models:  # the diverged leave, as halving's dropped do
            clf._keep_models(healthy)
        self.classifier_, self.survivors_ = clf, common.host(clf.survivors_)
        self.classes_ = common.to_namespace(classes, space)
        self.n_features_in_ = X.shape[1]
        self._summarise(candidates, seeds, len(codes_val), fit_s, score_s)
        return self

    def _summarise(self, candidates: list[dict], seeds: tuple, n_val: int, fit_s: float,
                   score_s: float) -> None:
        """``cv_results_`` and the ``best_*`` attributes from ``val_scores_`` (and, for
        the candidates halving dropped, their scores at their rungs)."""
        scores = scoring.rung_scores(self.classifier_.history_, self.val_scores_,
                                     n_val).reshape(len(candidates), len(seeds))
        mean = scores.mean(axis=1)  # NaN where a seed diverged
        ranked = np.where(np.isnan(mean), -np.inf, mean)  # diverged candidates rank last
        # rank 1 is the best; equal means share the lowest rank, as in scikit-learn
        rank = np.array([1 + int(np.sum(ranked > m)) for m in ranked], dtype=np.int32)
        n = len(candidates)
        results = {"params": candidates,
                   **{f"param_{name}": np.array([c[name] for c in candidates], dtype=object)
                      for name in candidates[0]},
                   **{f"split{k}_test_score": scores[:, k] for k in range(len(seeds))},
                   "mean_test_score": mean, "std_test_score": scores.std(axis=1),
                   "rank_test_score": rank,
                   # one lockstep fit trains every candidate: each shows the whole time
                   "mean_fit_time": np.full(n, fit_s), "std_fit_time": np.zeros(n),
                   "mean_score_time": np.full(n, score_s), "std_score_time": np.zeros(n)}
        history = self.classifier_.history_
        finished = np.ones(n, dtype=bool)
        if history.dropped_step is not None:  # halving: the step each left at (-1: it stayed)
            results["dropped_step"] = history.dropped_step.reshape(n, len(seeds))[:, 0].copy()
            finished = results["dropped_step"] < 0
        self.cv_results_ = results
        diverged = np.isnan(mean)
        if diverged.any():
            scoring.warn_diverged(candidates, history.diverged_step.reshape(n, len(seeds)),
                                  seeds)
        eligible = finished & ~diverged
        if not eligible.any():
            still = " still training at the end" if not finished.all() else ""
            raise DivergedError(f"Every candidate{still} diverged in training (a model of each "
                                "had a non-finite or exploding loss), so there is no best "
                                "model; lower the learning rate (cv_results_ holds the "
                                "scores).")
        self.best_index_ = int(np.argmax(np.where(eligible, mean, -np.inf)))
        self.best_params_ = dict(candidates[self.best_index_])
        self.best_score_ = float(mean[self.best_index_])
        self.best_model_index_ = (self.best_index_ * len(seeds)
                                  + int(np.argmax(scores[self.best_index_])))

    # ---------------------------------------------------------------- inference
    def predict(self, X):
        """The best model's labels for ``X`` ``(n, d)`` (with ``ensemble``, the ensemble's):
        ``(n,)``, values of ``classes_``."""
        row = self._best()
        if self.ensemble is not None:
            codes = np.argmax(common.host(self.predict_proba(X)), axis=1)
        else:
            codes = common.host(self.classifier_._labels_all(X, "predict"))[row]
        return common.to_namespace(common.host(self.classes_)[codes],
                                      common.input_namespace(X))

    def predict_proba(self, X):
        """The best model's class probabilities ``(n, C)`` (with ``ensemble``, the mean of
        the ensemble's), columns in ``classes_`` order."""
        row = self._best()
        if self.ensemble is not None:
            rows = [int(np.flatnonzero(self.survivors_ == m)[0]) for m in self.ensemble_models_]
            return self.classifier_.predict_proba_ensemble(X, rows)
        return common.to_namespace(self.classifier_._proba_all(X, "predict_proba")[row],
                                      common.input_namespace(X))

    @property
    def ensemble_models_(self) -> np.ndarray:
        """The ``ensemble`` models with the best validation scores, best first (indices
        into ``model_params_``; ties: the lower index); all that answer if fewer."""
        self._fitted()
        return scoring.best_models(self.val_scores_, self.survivors_, self.ensemble or 1)

    def predict_all(self, X):
        """The labels ``(M', n)`` of every model still in the network (all M unless halving
        dropped some or some diverged), rows in ``survivors_`` order (indices into
        ``model_params_``); after a fit where every model diverged,
        :class:`~xpnet.errors.DivergedError` (as
        :meth:`Classifier.predict_all <xpnet.estimators.classifier.Classifier.predict_all>`)."""
        self._fitted()
        codes = common.host(self.classifier_.predict_all(X))
        labels = common.host(self.classes_)[codes]
        return common.to_namespace(labels, common.input_namespace(X))

    def predict_proba_all(self, X):
        """Every remaining model's probabilities ``(M', n, C)``, rows as :meth:`predict_all`'s
        (NaN rows after a fit where every model diverged)."""
        self._fitted()
        return self.classifier_.predict_proba_all(X)

    def score(self, X, y, sample_weight=None) -> float:
        """The best model's accuracy on ``X, y``, weighted by ``sample_weight`` ``(n,)`` if
        given."""
        pred = common.host(self.predict(X))
        y = common.labels(y, len(pred), "The data to score")
        common.check_label_kind(y, self.classes_, "The data to score")
        weights = (None if sample_weight is None
                   else inputs.sample_weights(common.host(sample_weight), len(pred)))
        return float(np.average(pred == y, weights=weights))

    def _fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise common.not_fitted("This ClassifierCV is not fitted yet; call fit(X, y) "
                                       "first.")

    def _best(self) -> int:
        """The best model's row in the network (its position among ``survivors_``)."""
        self._fitted()
        if not hasattr(self, "best_model_index_"):
            raise DivergedError("Every candidate of the last fit diverged in training, so "
                                "there is no best model to answer; fit again with a lower "
                                "learning rate.")
        return int(np.flatnonzero(self.survivors_ == self.best_model_index_)[0])

    def __sklearn_tags__(self):
        return common.classifier_tags()

    def __repr__(self) -> str:
        """The parameters that differ from their defaults, as scikit-learn shows them."""
        defaults = {"hidden": (50, 50), **_defaults()}
        changed = [f"{k}={v!r}" for k, v in self.get_params(deep=False).items()
                   if repr(v) != repr(defaults[k])]
        return f"ClassifierCV({', '.join(changed)})"

    # -------------------------------------------------------------- checkpoints
    def save(self, path) -> None:
        """Write the fitted search to a ``.npz`` file (no pickle inside): the network of
        every model it holds, ``classes_`` and its results; see
        :func:`xpnet.estimators.files.save_search`."""
        files.save_search(self, path)

    @classmethod
    def load(cls, path, device="cpu") -> ClassifierCV:
        """A fitted ClassifierCV from a file written by :meth:`save`, every array and
        result checked; see :func:`xpnet.estimators.files.load_search`."""
        return files.load_search(cls, Classifier, path, device)


def _defaults() -> dict:
    """Every keyword but ``hidden``, with its default: ClassifierCV's, then Classifier's."""
    own = {**network_keywords(), **OWN}
    return {**CV_OWN, **{k: own[k] for k in classifier_keywords() if k != "hidden"}}


def _signature() -> inspect.Signature:
    P = inspect.Parameter
    return inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD), P("hidden", P.POSITIONAL_OR_KEYWORD, default=(50, 50))]
        + [P(name, P.KEYWORD_ONLY, default=d) for name, d in _defaults().items()])


ClassifierCV.__init__.__signature__ = _signature()


def _value_list(name: str, values) -> tuple:
    """``values`` as a non-empty tuple: the values a grid axis tries."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        example = "(0, 1)" if name == "seeds" else "(0.1, 0.01)"
        raise InputError(f"{name} must be a sequence of values to try, such as {example}, "
                         f"got {values!r}.")
    values = tuple(values)
    if not values:
        raise InputError(f"{name} must hold one value at least.")
    return values
