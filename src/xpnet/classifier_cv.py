"""A grid of hyper-parameters fitted at once, in scikit-learn's ``*CV`` style.

scikit-learn's convention for one estimator that fits a grid of one hyper-parameter is
the ``*CV`` family (``RidgeClassifierCV(alphas=...)``): one ``fit`` tries every value,
the chosen one is kept, and the scores are in ``cv_results_``.  :class:`ClassifierCV`
is that for the lockstep :class:`~xpnet.classifier.Classifier`: every combination of
``lams`` (and the other per-model values of ``param_grid``: ``dropout``, ``bn_eps``,
``momentum``, ...) times ``seeds`` is one model of a single lockstep network, trained in
one ``fit`` on a training part and scored on a held-out validation part (or on ``val``).
The seeds play the part of scikit-learn's splits: a candidate's score is its mean over
its seeds.  With ``halving=Halving(...)`` the losing candidates leave the network at
the rungs (successive halving, :mod:`xpnet.halving`), each candidate's seeds together.

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

from xpnet import estimator
from xpnet.classifier import OWN, Classifier, keywords, network_keywords, per_model_keywords
from xpnet.errors import InputError

#: ClassifierCV's own keywords and defaults; the rest are Classifier's (but ``lam``,
#: which ``lams`` replaces, and ``seeds`` and ``schedule``, which are among these).
CV_OWN = {"lams": (0.005,), "seeds": (0,), "param_grid": None, "schedule": None,
          "halving": None, "validation_fraction": 0.1, "random_state": 0}


def classifier_keywords() -> list[str]:
    """The Classifier keywords ClassifierCV passes on, by name."""
    return [k for k in keywords() if k not in ("lam", "seeds", "schedule")]


class ClassifierCV(estimator.Params):
    """Every combination of per-model hyper-parameters, trained as one lockstep network.

    Args:
        hidden: widths of the hidden layers.
        lams: the L2 strengths to try.
        seeds: the seeds of every candidate (the "splits" its score is averaged over).
        param_grid: further per-model values to try, ``{name: values}`` with names among
            the Classifier's per-model keywords (``sigma``, ``momentum``, ``dropout``,
            ``bn_eps``, ``leaky_slope``, ...); every combination with ``lams`` is a candidate.
        schedule: a schedule from :mod:`xpnet.schedules` (default: the Classifier's).
        halving: a :class:`~xpnet.halving.Halving` schedule ranked on the validation part;
            its ``group_size`` becomes the number of seeds, so a candidate's seeds are
            kept or dropped together.  A dropped candidate scores NaN and ranks last.
        validation_fraction: the share of ``fit``'s samples held out to score on, when
            ``fit`` gets no ``val``.
        random_state: the seed of that hold-out's shuffle.
        **classifier: any other :class:`~xpnet.classifier.Classifier` keyword (``norm``,
            ``dropout``, ``init``, ``batch_size``, ``optimizer``, ``device``, ``dtype``, ...),
            one value for every candidate.

    After :meth:`fit`: ``classes_``, ``n_features_in_``, ``cv_results_``, ``best_index_``,
    ``best_params_``, ``best_score_``, ``best_model_index_`` (the best candidate's
    best-scoring seed, an index into ``model_params_``), ``model_params_`` (every model's
    values, in model order), ``val_scores_`` ``(M,)`` (NaN: dropped by halving),
    ``survivors_`` (the models still in the network) and ``classifier_`` (that network).
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

    @classmethod
    def _param_names(cls) -> list[str]:
        return ["hidden", *_defaults()]

    # ------------------------------------------------------------------ fitting
    def candidates(self) -> list[dict]:
        """Every candidate's values, ``[{"lam": ..., name: ...}, ...]``, ``lams`` slowest."""
        grid = {"lam": tuple(self.lams), **{k: tuple(v) for k, v in
                                            (self.param_grid or {}).items()}}
        unknown = [name for name in grid if name not in per_model_keywords() or name == "seeds"]
        if unknown:
            allowed = ", ".join(n for n in per_model_keywords() if n not in ("lam", "seeds"))
            raise InputError(f"param_grid cannot vary {unknown[0]!r}; it takes {allowed}.")
        if any(len(values) == 0 for values in grid.values()) or len(tuple(self.seeds)) == 0:
            raise InputError("Every value list of the grid, and seeds, needs one value at least.")
        return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]

    def fit(self, X, y, val=None) -> ClassifierCV:
        """Train every candidate x seed as one network; score each on the validation part.

        Args:
            X: training samples ``(n, d)`` (with array API dispatch on, any array library's).
            y: their labels ``(n,)``: any values ``numpy.unique`` can sort (ints, strings).
            val: an optional ``(X_val, y_val)`` pair to score on; default a shuffled
                ``validation_fraction`` of ``X, y``, the rest trains.

        Returns:
            ``self``.
        """
        space = estimator.input_namespace(X)
        X = estimator.host(X)
        y = estimator.labels(y, len(X), "The training data")
        if val is None:
            (X_tr, y_tr), (X_val, y_val) = holdout(X, y, self.validation_fraction,
                                                   self.random_state)
        else:
            X_tr, y_tr = X, y
            X_val = estimator.host(val[0])
            y_val = estimator.labels(val[1], len(X_val), "val")
        classes, (codes_tr, codes_val) = estimator.encode_labels([y_tr, y_val], None)
        candidates = self.candidates()
        seeds = tuple(int(s) for s in self.seeds)
        self.model_params_ = [{**c, "seeds": s} for c in candidates for s in seeds]
        per_model = {name: tuple(p[name] for p in self.model_params_)
                     for name in self.model_params_[0]}
        shared = {name: getattr(self, name) for name in classifier_keywords()}
        clf = Classifier(**{**shared, "n_classes": len(classes), "schedule": self.schedule,
                            **per_model})
        halving = self.halving
        if halving is not None:
            halving = dataclasses.replace(halving, group_size=len(seeds))
        start = time.perf_counter()
        fit_X = X_tr if space is None else space[0].asarray(X_tr, device=space[1])
        clf.fit(fit_X, codes_tr, val=None if halving is None else (X_val, codes_val),
                halving=halving)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        self.val_scores_ = np.full(len(self.model_params_), np.nan)
        survivors = estimator.host(clf.survivors_)
        self.val_scores_[survivors] = clf.score_all(estimator.to_namespace(X_val, space),
                                                    codes_val)
        score_s = time.perf_counter() - start
        self.classifier_, self.survivors_ = clf, survivors
        self.classes_ = estimator.to_namespace(classes, space)
        self.n_features_in_ = X.shape[1]
        self._summarise(candidates, seeds, fit_s, score_s)
        return self

    def _summarise(self, candidates: list[dict], seeds: tuple, fit_s: float,
                   score_s: float) -> None:
        """``cv_results_`` and the ``best_*`` attributes from ``val_scores_``."""
        scores = self.val_scores_.reshape(len(candidates), len(seeds))
        mean = scores.mean(axis=1)
        ranked = np.where(np.isnan(mean), -np.inf, mean)  # dropped candidates rank last
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
        dropped = self.classifier_.history_.dropped_step
        if dropped is not None:  # halving: the step each candidate left at (-1: it stayed)
            results["dropped_step"] = dropped.reshape(n, len(seeds))[:, 0].copy()
        self.cv_results_ = results
        self.best_index_ = int(np.argmax(ranked))
        self.best_params_ = dict(candidates[self.best_index_])
        self.best_score_ = float(mean[self.best_index_])
        best_seed = np.where(np.isnan(scores[self.best_index_]), -np.inf,
                             scores[self.best_index_])
        self.best_model_index_ = self.best_index_ * len(seeds) + int(np.argmax(best_seed))

    # ---------------------------------------------------------------- inference
    def predict(self, X):
        """The best model's labels for ``X`` ``(n, d)``: ``(n,)``, values of ``classes_``."""
        return self.predict_all(X)[self._best(), ...]

    def predict_proba(self, X):
        """The best model's class probabilities ``(n, C)``, columns in ``classes_`` order."""
        return self.predict_proba_all(X)[self._best(), ...]

    def predict_all(self, X):
        """The labels ``(M', n)`` of every model still in the network (all M unless halving
        dropped some), rows in ``survivors_`` order (indices into ``model_params_``)."""
        self._best()
        codes = estimator.host(self.classifier_.predict_all(X))
        labels = estimator.host(self.classes_)[codes]
        return estimator.to_namespace(labels, estimator.input_namespace(X))

    def predict_proba_all(self, X):
        """Every remaining model's probabilities ``(M', n, C)``, rows as :meth:`predict_all`'s."""
        self._best()
        return self.classifier_.predict_proba_all(X)

    def score(self, X, y) -> float:
        """The best model's accuracy on ``X, y``."""
        pred = estimator.host(self.predict(X))
        return float(np.mean(pred == estimator.labels(y, len(pred), "The data to score")))

    def _best(self) -> int:
        """The best model's row in the network (its position among ``survivors_``)."""
        if not hasattr(self, "classifier_"):
            raise estimator.not_fitted("This ClassifierCV is not fitted yet; call fit(X, y) "
                                       "first.")
        return int(np.flatnonzero(self.survivors_ == self.best_model_index_)[0])

    def __sklearn_tags__(self):
        return estimator.classifier_tags()

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
        :func:`xpnet.classifier_file.save_search`."""
        from xpnet import classifier_file  # (kept out of the imports: an appended method)

        classifier_file.save_search(self, path)

    @classmethod
    def load(cls, path, device="cpu") -> ClassifierCV:
        """A fitted ClassifierCV from a file written by :meth:`save`, every array and
        result checked; see :func:`xpnet.classifier_file.load_search`."""
        from xpnet import classifier_file

        return classifier_file.load_search(cls, path, device)


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


def holdout(X: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """``((X_train, y_train), (X_val, y_val))``: a shuffled ``fraction`` held out."""
    if not 0 < fraction < 1:
        raise InputError(f"validation_fraction must be between 0 and 1, got {fraction!r}.")
    n_val = int(round(fraction * len(X)))
    if not 1 <= n_val < len(X):
        raise InputError(f"validation_fraction={fraction} of {len(X)} samples leaves no "
                         "validation or no training samples; pass val=(X_val, y_val).")
    order = np.random.default_rng(seed).permutation(len(X))
    val, train = order[:n_val], order[n_val:]
    return (X[train], y[train]), (X[val], y[val])
