"""A grid of hyper-parameters fitted at once, in scikit-learn's ``*CV`` style.

scikit-learn's convention for one estimator that fits a grid of one hyper-parameter is
the ``*CV`` family (``RidgeClassifierCV(alphas=...)``): one ``fit`` tries every value,
the chosen one is kept, and the scores are in ``cv_results_``.  :class:`ClassifierCV`
is that for the lockstep :class:`~xpnet.classifier.Classifier`: every combination of
``lams`` (and the other per-model values of ``param_grid``) times ``seeds`` is one
model of a single lockstep network, trained in one ``fit`` on a training part and
scored on a held-out validation part (or on ``val``).  The seeds play the part of
scikit-learn's splits: a candidate's score is its mean over its seeds.

::

    from xpnet.classifier_cv import ClassifierCV
    search = ClassifierCV(hidden=(50,), lams=(1e-4, 1e-3, 1e-2), seeds=(0, 1))
    search.fit(X, y)                        # 6 models, one network
    search.best_params_                     # {'lam': 0.001}
    pandas.DataFrame(search.cv_results_)    # one row per candidate
    search.predict(X_test)                  # (n,): the best model's labels

Unlike ``GridSearchCV`` there is no refit on all the data: the best model is the one
trained on the training part (its validation score is what chose it).
"""

from __future__ import annotations

import inspect
import itertools
import time

import numpy as np

from xpnet.classifier import Classifier, per_model_keywords
from xpnet.errors import XpnetError


class ClassifierCV:
    """Every combination of per-model hyper-parameters, trained as one lockstep network.

    Args:
        hidden: widths of the hidden layers.
        lams: the L2 strengths to try.
        seeds: the seeds of every candidate (the "splits" its score is averaged over).
        param_grid: further per-model values to try, ``{name: values}`` with names among
            ``sigma``, ``bn_eps``, ``momentum``; every combination with ``lams`` is a
            candidate.
        schedule: a schedule from :mod:`xpnet.schedules` (default: the Classifier's).
        validation_fraction: the share of ``fit``'s samples held out to score on, when
            ``fit`` gets no ``val``.
        random_state: the seed of that hold-out's shuffle.
        **classifier: any other :class:`~xpnet.classifier.Classifier` argument
            (``batch_norm``, ``init``, ``batch_size``, ``device``, ``dtype``, ...).

    After :meth:`fit`: ``classes_``, ``n_features_in_``, ``cv_results_``, ``best_index_``,
    ``best_params_``, ``best_score_``, ``best_model_index_`` (the best candidate's
    best-scoring seed on the model axis), ``model_params_`` (every model's values, in
    model order), ``val_scores_`` ``(M,)`` and ``classifier_`` (all M models).
    """

    def __init__(self, hidden=(50, 50), *, lams=(0.005,), seeds=(0,), param_grid=None,
                 schedule=None, validation_fraction: float = 0.1, random_state: int = 0,
                 **classifier):
        self.hidden = hidden
        self.lams = lams
        self.seeds = seeds
        self.param_grid = param_grid
        self.schedule = schedule
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.classifier = classifier

    # ------------------------------------------------------------------ params
    def get_params(self, deep: bool = True) -> dict:
        """The constructor arguments (the Classifier's among them, by name)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters
                 if p not in ("self", "classifier")]
        return {**{name: getattr(self, name) for name in names}, **self.classifier}

    def set_params(self, **params) -> ClassifierCV:
        """Change constructor arguments; returns ``self``."""
        own = set(self.get_params()) - set(self.classifier)
        for name, value in params.items():
            if name in own:
                setattr(self, name, value)
            else:
                self.classifier[name] = value
        return self

    # ------------------------------------------------------------------ fitting
    def candidates(self) -> list[dict]:
        """Every candidate's values, ``[{"lam": ..., name: ...}, ...]``, ``lams`` slowest."""
        grid = {"lam": tuple(self.lams), **{k: tuple(v) for k, v in
                                            (self.param_grid or {}).items()}}
        unknown = [name for name in grid if name not in per_model_keywords() or name == "seeds"]
        if unknown:
            allowed = ", ".join(n for n in per_model_keywords() if n not in ("lam", "seeds"))
            raise XpnetError(f"param_grid cannot vary {unknown[0]!r}; it takes {allowed}.")
        if any(len(values) == 0 for values in grid.values()) or len(tuple(self.seeds)) == 0:
            raise XpnetError("Every value list of the grid, and seeds, needs one value at least.")
        return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]

    def fit(self, X, y, val=None) -> ClassifierCV:
        """Train every candidate x seed as one network; score each on the validation part.

        Args:
            X: training samples ``(n, d)``.
            y: their labels ``(n,)``: any values ``numpy.unique`` can sort (ints, strings).
            val: an optional ``(X_val, y_val)`` pair to score on; default a shuffled
                ``validation_fraction`` of ``X, y``, the rest trains.

        Returns:
            ``self``.
        """
        X = np.asarray(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise XpnetError(f"y must hold one label per sample of X ({len(X)}), got shape "
                             f"{y.shape}.")
        if val is None:
            (X_tr, y_tr), (X_val, y_val) = holdout(X, y, self.validation_fraction,
                                                   self.random_state)
        else:
            X_tr, y_tr = X, y
            X_val, y_val = np.asarray(val[0]), np.asarray(val[1])
        self.classes_ = np.unique(np.concatenate([y_tr, y_val]))
        codes_tr, codes_val = (np.searchsorted(self.classes_, v) for v in (y_tr, y_val))
        candidates = self.candidates()
        seeds = tuple(int(s) for s in self.seeds)
        self.model_params_ = [{**c, "seeds": s} for c in candidates for s in seeds]
        per_model = {name: tuple(p[name] for p in self.model_params_)
                     for name in self.model_params_[0]}
        clf = Classifier(self.hidden, n_classes=max(2, len(self.classes_)),
                         **{**self.classifier, **per_model})
        start = time.perf_counter()
        clf.fit((X_tr, codes_tr), self.schedule)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        self.val_scores_ = clf.score((X_val, codes_val))
        score_s = time.perf_counter() - start
        self.classifier_ = clf
        self.n_features_in_ = X.shape[1]
        self._summarise(candidates, seeds, fit_s, score_s)
        return self

    def _summarise(self, candidates: list[dict], seeds: tuple, fit_s: float,
                   score_s: float) -> None:
        """``cv_results_`` and the ``best_*`` attributes from ``val_scores_``."""
        scores = self.val_scores_.reshape(len(candidates), len(seeds))
        mean = scores.mean(axis=1)
        # rank 1 is the best; equal means share the lowest rank, as in scikit-learn
        rank = np.array([1 + int(np.sum(mean > m)) for m in mean], dtype=np.int32)
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
        self.cv_results_ = results
        self.best_index_ = int(np.argmax(mean))
        self.best_params_ = dict(candidates[self.best_index_])
        self.best_score_ = float(mean[self.best_index_])
        self.best_model_index_ = (self.best_index_ * len(seeds)
                                  + int(np.argmax(scores[self.best_index_])))

    # ---------------------------------------------------------------- inference
    def predict(self, X) -> np.ndarray:
        """The best model's labels for ``X`` ``(n, d)``: ``(n,)``, values of ``classes_``."""
        return self.predict_all(X)[self._best()]

    def predict_proba(self, X) -> np.ndarray:
        """The best model's class probabilities ``(n, C)``, columns in ``classes_`` order."""
        return self.predict_proba_all(X)[self._best()]

    def predict_all(self, X) -> np.ndarray:
        """Every model's labels ``(M, n)``, models in :attr:`model_params_` order."""
        self._best()
        return self.classes_[self.classifier_.predict(X)]

    def predict_proba_all(self, X) -> np.ndarray:
        """Every model's probabilities ``(M, n, C)``."""
        self._best()
        return self.classifier_.predict_proba(X)[..., :len(self.classes_)]

    def score(self, X, y) -> float:
        """The best model's accuracy on ``X, y``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def _best(self) -> int:
        if not hasattr(self, "classifier_"):
            raise XpnetError("This ClassifierCV is not fitted yet; call fit(X, y) first.")
        return self.best_model_index_


def holdout(X: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """``((X_train, y_train), (X_val, y_val))``: a shuffled ``fraction`` held out."""
    if not 0 < fraction < 1:
        raise XpnetError(f"validation_fraction must be between 0 and 1, got {fraction!r}.")
    n_val = int(round(fraction * len(X)))
    if not 1 <= n_val < len(X):
        raise XpnetError(f"validation_fraction={fraction} of {len(X)} samples leaves no "
                         "validation or no training samples; pass val=(X_val, y_val).")
    order = np.random.default_rng(seed).permutation(len(X))
    val, train = order[:n_val], order[n_val:]
    return (X[train], y[train]), (X[val], y[val])
