"""What a fitted lockstep classifier answers for each of its M models (the ``*_all``
methods), and how it names the models that diverged.

:class:`LockstepAnswers` is a mixin of :class:`~xpnet.estimators.classifier.Classifier`: it
relies on its ``_fitted()`` (the network), ``_diverged_steps()`` (``(M,)``, -1 for a model
that did not diverge), ``_output_space``, ``_inputs`` and ``classes_``.
"""

from __future__ import annotations

import warnings

import numpy as np

from xpnet.backend.devices import to_numpy
from xpnet.base import inputs
from xpnet.errors import DivergedError, DivergenceWarning, InputError
from xpnet.estimators import common

#: Samples per forward pass in predict / predict_proba.
CHUNK = 10000


class LockstepAnswers:
    """``predict_all``, ``predict_proba_all`` and ``score_all`` over the M models, and the
    models as an ensemble: ``predict_proba_ensemble``, ``predict_ensemble``."""

    def predict_all(self, X):
        """Each model's predicted labels: ``(M, n)`` for ``X`` ``(n, d)``.

        Raises :class:`~xpnet.errors.DivergedError` when a model diverged: a label cannot
        say "no answer", so use :meth:`predict_proba_all` (NaN rows for such models) or
        :meth:`score_all` (NaN for them) instead.
        """
        self._fitted()
        steps = self._diverged_steps()
        if np.any(steps >= 0):
            raise DivergedError(f"{models_text(steps)} diverged in training, and predict_all "
                                "has no label that says so; use predict_proba_all or "
                                "score_all, which answer NaN for a diverged model.")
        return self._labels_all(X, "predict_all")

    def predict_proba_all(self, X):
        """Each model's softmax probabilities: ``(M, n, C)`` for ``X`` ``(n, d)``, rows sum
        to 1; a model that diverged has NaN rows (and a
        :class:`~xpnet.errors.DivergenceWarning` names it)."""
        proba = self._proba_all(X, "predict_proba_all")
        self._blank_diverged(proba, "predict_proba_all")
        return common.to_namespace(proba, self._output_space(X, "predict_proba_all"))

    def predict_proba_ensemble(self, X, models=None):
        """The ensemble's class probabilities ``(n, C)``: the mean of the probabilities of
        ``models`` (row indices of :meth:`predict_proba_all`; default every model that did
        not diverge).  :class:`~xpnet.errors.DivergedError` if a chosen model diverged or
        every model did."""
        steps = self._diverged_steps()
        rows = np.flatnonzero(steps < 0) if models is None else _rows(models, steps.size)
        if rows.size == 0:
            raise DivergedError("Every model diverged in training, so there is no ensemble "
                                "to answer; fit again with a lower learning rate.")
        bad = rows[steps[rows] >= 0]
        if bad.size:
            raise DivergedError(f"Model {bad[0]} diverged in training (step {steps[bad[0]]}) "
                                "and has no answer to average; leave it out of models.")
        proba = self._proba_all(X, "predict_proba_ensemble")[rows].mean(axis=0)
        return common.to_namespace(proba, self._output_space(X, "predict_proba_ensemble"))

    def predict_ensemble(self, X, models=None):
        """The ensemble's labels ``(n,)``: the class of the highest mean probability (see
        :meth:`predict_proba_ensemble`)."""
        proba = common.host(self.predict_proba_ensemble(X, models))
        labels = common.host(self.classes_)[np.argmax(proba, axis=1)]
        return common.to_namespace(labels, self._output_space(X, "predict_ensemble"))

    def _labels_all(self, X, method: str):
        """Every model's labels ``(M, n)``, diverged models' too (in the output's space)."""
        net = self._fitted()
        space = self._output_space(X, method)
        Xd = net.backend.asarray(self._inputs(X), dtype=net.dtype)
        with np.errstate(invalid="ignore", over="ignore"):  # a diverged model's NaN
            codes = to_numpy(net.predict(Xd, chunk=CHUNK))
        return common.to_namespace(common.host(self.classes_)[codes], space)

    def _proba_all(self, X, method: str) -> np.ndarray:
        """Every model's probabilities ``(M, n, C)`` on the host, diverged models' too."""
        net = self._fitted()
        xp = net.xp
        self._output_space(X, method)
        X = self._inputs(X)
        parts = []
        for start in range(0, X.shape[0], CHUNK):
            Xd = net.backend.asarray(X[start:start + CHUNK], dtype=net.dtype)
            with np.errstate(invalid="ignore", over="ignore"):  # a diverged model's NaN
                scores, _ = net.forward(Xd, train=False)
                exp = xp.exp(scores - xp.max(scores, axis=-1, keepdims=True))
                parts.append(to_numpy(exp / xp.sum(exp, axis=-1, keepdims=True)))
        return np.concatenate(parts, axis=1)

    def score_all(self, X, y=None) -> np.ndarray:
        """Accuracy of each model, float64 ``(M,)``, on ``X, y`` (or an ``(X, y)`` pair);
        NaN for a model that diverged (and a :class:`~xpnet.errors.DivergenceWarning`
        names it)."""
        X, y = inputs.split_pair(X, y, "The data to score")
        pred = common.host(self._labels_all(X, "score_all"))
        y = self._score_labels(y, pred.shape[1])
        scores = np.mean(pred == y[None, :], axis=1, dtype=np.float64)
        self._blank_diverged(scores, "score_all")
        return scores

    def _score_labels(self, y, n: int) -> np.ndarray:
        """Labels to score against: ``(n,)`` of the kind of ``classes_``."""
        y = common.labels(y, n, "The data to score")
        common.check_label_kind(y, self.classes_, "The data to score")
        return y

    def _blank_diverged(self, values: np.ndarray, method: str) -> None:
        """NaN in the rows (axis 0) of diverged models, with a warning naming them."""
        steps = self._diverged_steps()
        if np.any(steps >= 0):
            values[steps >= 0, ...] = np.nan
            warnings.warn(f"{models_text(steps)} diverged in training, so {method} answers "
                          "NaN for them.", DivergenceWarning, stacklevel=3)


def _rows(models, n_models: int) -> np.ndarray:
    """``models`` as distinct row indices ``(k,)`` of the ``n_models`` models, checked."""
    rows = inputs.numbers(models)
    if (rows is None or rows.size == 0 or np.any(rows != np.round(rows)) or np.any(rows < 0)
            or np.any(rows >= n_models) or np.unique(rows).size != rows.size):
        raise InputError(f"models must be distinct indices of the {n_models} models, "
                         f"got {models!r}.")
    return rows.astype(np.int64).reshape(-1)


def diverged_message(diverged_step) -> str:
    """The warning for models that diverged in a fit (``""`` if none did), from the
    History's ``diverged_step`` ``(M,)`` (-1: did not)."""
    steps = np.asarray(diverged_step, dtype=np.int64)
    if not np.any(steps >= 0):
        return ""
    if steps.size == 1:
        return (f"The model diverged at step {steps[0]} (its loss became non-finite or "
                "exploded), so predict, predict_proba and score will refuse it; fit again "
                "with a lower learning rate.")
    return (f"{models_text(steps)} of {steps.size} diverged in training (their loss became "
            "non-finite or exploded) and give no predictions; lower their learning rate.")


def models_text(steps: np.ndarray, shown: int = 8) -> str:
    """``"Model 2 (step 14)"`` / ``"Models 0 (step 3), 2 (step 14)"`` for the rows of
    ``steps`` that diverged (-1: did not)."""
    bad = np.flatnonzero(np.asarray(steps) >= 0)
    parts = [f"{m} (step {steps[m]})" for m in bad[:shown]]
    more = f" and {bad.size - shown} more" if bad.size > shown else ""
    return f"Model{'s' if bad.size > 1 else ''} {', '.join(parts)}{more}"
