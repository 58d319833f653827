"""The short API of population-based training and of the population as an ensemble:
``Classifier.fit(..., pbt=)``, ``ClassifierCV(pbt=, ensemble=)``, ``predict_*_ensemble``."""

from __future__ import annotations

import numpy as np
import pytest

from tests.problems import blobs
from xpnet import PBT, Classifier, ClassifierCV, ConstantLR, Halving
from xpnet.errors import DivergedError, InputError, XpnetError
from xpnet.estimators.scoring import best_models

SCHEDULE = ConstantLR(eta=0.05, steps=40, cycle_length=40)
SETTINGS = dict(hidden=(8,), schedule=SCHEDULE, batch_size=20, evals_per_cycle=8,
                dtype="float64")


@pytest.fixture(scope="module")
def data():
    X, y = blobs(200, 10, 3, 0, spread=2.5)
    Xv, yv = blobs(60, 10, 3, 1, spread=2.5)
    return (X, y), (Xv, yv)


def test_classifier_fit_with_pbt_records_the_lineage(data):
    (X, y), val = data
    clf = Classifier(lam=(1e-4, 1e-3, 1e-2, 1e-1), seeds=(0, 1, 2, 3), **SETTINGS)
    clf.fit(X, y, val=val, pbt=PBT(10, fraction=0.25, seed=2))
    history = clf.history_
    assert history.pbt_steps == [10, 20, 30]
    assert len(history.pbt_events) == 3 and clf.n_models == 4
    line = history.lineage(history.pbt_events[-1]["child"])
    assert line["lam"][-1] == clf.network_.lam_host[history.pbt_events[-1]["child"]]
    with pytest.raises(InputError, match="pbt must be a schedule"):
        clf.fit(X, y, val=val, pbt=0.25)
    with pytest.raises(InputError, match="one population schedule at a time"):
        clf.fit(X, y, val=val, pbt=PBT(10), halving=Halving(rungs=(10,)))
    with pytest.raises(XpnetError, match="needs validation data"):
        clf.fit(X, y, pbt=PBT(10))


def test_the_ensemble_is_the_mean_of_its_models(data):
    (X, y), (Xv, yv) = data
    clf = Classifier(lam=(1e-4, 1e-3, 1e-2), seeds=(0, 1, 2), **SETTINGS).fit(X, y)
    proba = clf.predict_proba_all(Xv)
    np.testing.assert_allclose(clf.predict_proba_ensemble(Xv), proba.mean(axis=0))
    np.testing.assert_allclose(clf.predict_proba_ensemble(Xv, models=[2, 0]),
                               proba[[0, 2]].mean(axis=0))
    np.testing.assert_array_equal(clf.predict_ensemble(Xv, models=[1]), clf.predict_all(Xv)[1])
    with pytest.raises(InputError, match="distinct indices of the 3 models"):
        clf.predict_ensemble(Xv, models=[0, 0])
    clf.diverged_step_ = np.array([-1, 7, -1])  # as a fit where model 1 diverged leaves it
    np.testing.assert_allclose(clf.predict_proba_ensemble(Xv), proba[[0, 2]].mean(axis=0))
    with pytest.raises(DivergedError, match="Model 1 diverged"):
        clf.predict_proba_ensemble(Xv, models=[0, 1])


def test_best_models_never_choose_a_diverged_one():
    scores = np.array([0.5, np.nan, 0.9, 0.5, 0.7])
    np.testing.assert_array_equal(best_models(scores, [0, 1, 2, 3, 4], 3), [2, 4, 0])
    np.testing.assert_array_equal(best_models(scores, [0, 1, 3], 4), [0, 3])


def test_classifier_cv_with_pbt_and_an_ensemble(data, tmp_path):
    (X, y), val = data
    search = ClassifierCV(lams=(1e-4, 1e-3, 1e-2, 1e-1), seeds=(0, 1),
                          pbt=PBT(10, fraction=0.25), ensemble=3, **SETTINGS)
    search.fit(X, y, val=val)
    history = search.classifier_.history_
    assert history.pbt_steps == [10, 20, 30] and len(history.pbt_events) == 3 * 2
    chosen = search.ensemble_models_
    assert len(chosen) == 3 and np.all(np.diff(search.val_scores_[chosen]) <= 0)
    proba = search.classifier_.predict_proba_all(val[0])
    np.testing.assert_allclose(search.predict_proba(val[0]), proba[chosen].mean(axis=0))
    assert search.score(*val) == np.mean(search.predict(val[0]) == val[1])
    search.save(tmp_path / "search.npz")
    again = ClassifierCV.load(tmp_path / "search.npz")
    assert again.ensemble == 3 and again.pbt is None
    np.testing.assert_allclose(again.predict_proba(val[0]), search.predict_proba(val[0]))
    with pytest.raises(InputError, match="ensemble must be"):
        ClassifierCV(ensemble=0)
    with pytest.raises(InputError, match="not both"):
        ClassifierCV(pbt=PBT(10), halving=Halving(rungs=(10,)))
