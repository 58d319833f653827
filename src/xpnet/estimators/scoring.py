"""How a :class:`~xpnet.estimators.classifier_cv.ClassifierCV` scores its candidates: the
held-out split, each model's validation accuracy at the end or at its halving rung, and the
warning that names diverged candidates."""

from __future__ import annotations

import warnings

import numpy as np

from xpnet.errors import DivergenceWarning, InputError
from xpnet.estimators import common


def final_scores(clf, X_val, codes_val: np.ndarray) -> np.ndarray:
    """Each model's validation accuracy at the end ``(M,)`` (``clf``: the search's fitted
    :class:`~xpnet.estimators.classifier.Classifier`): NaN for a model halving
    dropped or one that diverged."""
    history = clf.history_
    scores = np.full(history.diverged_step.size, np.nan)
    pred = common.host(clf._labels_all(X_val, "fit"))  # labels are codes here
    scores[common.host(clf.survivors_)] = np.mean(pred == codes_val[None, :], axis=1)
    scores[history.diverged_step >= 0] = np.nan
    return scores


def best_models(val_scores, survivors, k: int) -> np.ndarray:
    """The ``k`` models of ``survivors`` with the best finite ``val_scores`` (``(M,)``),
    best first (ties: the lower index), as int64 ``(<= k,)``."""
    scores = np.asarray(val_scores, dtype=np.float64)
    healthy = np.array([m for m in common.host(survivors) if np.isfinite(scores[m])],
                       dtype=np.int64)
    return healthy[np.argsort(-scores[healthy], kind="stable")][:k]


def rung_scores(history, final: np.ndarray, n_val: int) -> np.ndarray:
    """``final`` ``(M,)`` with each model halving dropped given its validation accuracy
    at its rung, from the History (NaN still if it diverged).  The History's accuracy is
    the training dtype's hits / n_val: rounded to the hit count, it is exactly the
    float64 accuracy ``final`` holds for the others."""
    scores = final.copy()
    if history.dropped_step is not None:
        dropped = np.flatnonzero((history.dropped_step >= 0) & (history.diverged_step < 0))
        rows = [history.steps.index(int(history.dropped_step[m])) for m in dropped]
        hits = np.round(history.metrics["val_accuracy"][rows, dropped] * n_val)
        scores[dropped] = hits / n_val
    return scores


def warn_diverged(candidates: list[dict], steps: np.ndarray, seeds: tuple,
                   shown: int = 4) -> None:
    """Name the candidates with a diverged seed (``steps`` ``(n, k)``, -1: did not)."""
    bad = np.flatnonzero(np.any(steps >= 0, axis=1))
    parts = []
    for c in bad[:shown]:
        which = ", ".join(f"seed {seeds[j]} at step {steps[c, j]}"
                          for j in np.flatnonzero(steps[c] >= 0))
        parts.append(f"{candidates[c]} ({which})")
    more = f" and {bad.size - shown} more" if bad.size > shown else ""
    warnings.warn(f"{bad.size} of {len(candidates)} candidates diverged in training and rank "
                  f"last: {'; '.join(parts)}{more}.", DivergenceWarning, stacklevel=4)


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
