"""ClassifierCV: a grid fitted as one lockstep network, read as scikit-learn's *CV estimators.

On scikit-learn's bundled digits (8 x 8 images, 10 classes), labelled with letters so
that labels other than 0..C-1 are exercised.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import in_ci
from xpnet import Classifier, ClassifierCV, CyclicalLR, Halving
from xpnet.errors import XpnetError
from xpnet.estimators.scoring import holdout

if not in_ci():  # the dev extra installs scikit-learn: in CI its absence is a failure
    pytest.importorskip("sklearn", reason='scikit-learn is not installed; '
                        'pip install ".[sklearn]"')
import sklearn.base  # noqa: E402
import sklearn.datasets  # noqa: E402

SCHEDULE = CyclicalLR(1e-4, 1e-1, n_s_epochs=2, cycles=1)
SETTINGS = dict(hidden=(16,), schedule=SCHEDULE, dtype="float64", train_eval_size=None)


@pytest.fixture(scope="module")
def digits():
    X, y = sklearn.datasets.load_digits(return_X_y=True)
    return X / 16.0, np.array(list("abcdefghij"))[y]


@pytest.fixture(scope="module")
def search(digits):
    return ClassifierCV(lams=(1e-4, 1e-2, 0.3), seeds=(0, 1), **SETTINGS).fit(*digits)


def test_the_best_candidate_is_the_best_of_separately_trained_models(digits, search):
    X, y = digits
    (X_tr, y_tr), (X_val, y_val) = holdout(X, y, 0.1, 0)
    alone = []
    for params in search.model_params_:
        clf = Classifier((16,), lam=params["lam"], seeds=params["seeds"], dtype="float64",
                         train_eval_size=None, schedule=SCHEDULE)
        clf.fit(X_tr, y_tr)  # the caller's labels, as they are
        alone.append(clf.score(X_val, y_val))
    np.testing.assert_allclose(search.val_scores_, alone, atol=1e-12)
    means = np.array(alone).reshape(3, 2).mean(axis=1)
    assert search.best_params_ == {"lam": (1e-4, 1e-2, 0.3)[int(np.argmax(means))]}
    assert search.best_score_ == pytest.approx(means.max())
    best = search.best_model_index_
    assert search.model_params_[best]["lam"] == search.best_params_["lam"]
    assert alone[best] == max(alone[2 * search.best_index_:2 * search.best_index_ + 2])


def test_cv_results_have_scikit_learns_layout(search):
    results = search.cv_results_
    assert [p["lam"] for p in results["params"]] == [1e-4, 1e-2, 0.3]
    assert list(results["param_lam"]) == [1e-4, 1e-2, 0.3]
    scores = np.stack([results["split0_test_score"], results["split1_test_score"]], axis=1)
    np.testing.assert_allclose(results["mean_test_score"], scores.mean(axis=1))
    np.testing.assert_allclose(results["std_test_score"], scores.std(axis=1))
    assert results["rank_test_score"][search.best_index_] == 1
    assert sorted(results["rank_test_score"]) == sorted(
        1 + np.sum(results["mean_test_score"] > m) for m in results["mean_test_score"])
    for key in ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"):
        assert results[key].shape == (3,)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(results)
    assert len(frame) == 3 and frame.loc[search.best_index_, "rank_test_score"] == 1


def test_predictions_are_the_best_models_in_the_callers_labels(digits, search):
    X, y = digits
    assert list(search.classes_) == list("abcdefghij") and search.n_features_in_ == 64
    labels = search.predict(X[:50])
    assert labels.shape == (50,) and set(labels) <= set(search.classes_)
    every = search.predict_all(X[:50])
    assert every.shape == (6, 50)
    np.testing.assert_array_equal(labels, every[search.best_model_index_])
    proba = search.predict_proba(X[:50])
    assert proba.shape == (50, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(search.classes_[proba.argmax(axis=1)], labels)
    assert search.predict_proba_all(X[:50]).shape == (6, 50, 10)
    assert search.score(X, y) == pytest.approx(np.mean(search.predict(X) == y))
    assert search.score(X, y) > 0.5  # it learnt the digits (chance: 0.1)


def test_a_grid_over_more_values_and_a_given_validation_set(digits):
    X, y = digits
    search = ClassifierCV(lams=(1e-3, 1e-2), seeds=(0,), param_grid={"bn_eps": (1e-3, 1e-5)},
                          **SETTINGS).fit(X[:1500], y[:1500], val=(X[1500:], y[1500:]))
    assert search.cv_results_["params"] == [
        {"lam": 1e-3, "bn_eps": 1e-3}, {"lam": 1e-3, "bn_eps": 1e-5},
        {"lam": 1e-2, "bn_eps": 1e-3}, {"lam": 1e-2, "bn_eps": 1e-5}]
    assert list(search.cv_results_["param_bn_eps"]) == [1e-3, 1e-5, 1e-3, 1e-5]
    np.testing.assert_array_equal(search.classifier_.network_.per_model_host["bn_eps"],
                                  [1e-3, 1e-5, 1e-3, 1e-5])
    expected = np.mean(search.predict_all(X[1500:]) == y[1500:], axis=1)
    np.testing.assert_allclose(search.val_scores_, expected)
    assert ClassifierCV(param_grid={"dropout": (0.0, 0.5), "momentum": (0.0, 0.9)},
                        lams=(0.1,)).candidates()[-1] == {"lam": 0.1, "dropout": 0.5,
                                                          "momentum": 0.9}


def test_a_grid_over_dropout_with_the_other_network_options_shared(digits):
    """Any per-model keyword is a grid axis; every other Classifier keyword (norm,
    activation, ...) is shared by all candidates."""
    X, y = digits
    search = ClassifierCV(lams=(1e-3,), seeds=(0,), param_grid={"dropout": (0.0, 0.3)},
                          norm="layer", activation="tanh", **SETTINGS).fit(X, y)
    net = search.classifier_.network_
    assert net.config.norm == "layer" and net.config.activation == "tanh"
    np.testing.assert_array_equal(net.per_model_host["dropout"], [0.0, 0.3])
    assert list(search.cv_results_["param_dropout"]) == [0.0, 0.3]
    assert search.best_score_ > 0.5


def test_halving_drops_candidates_with_their_seeds(digits):
    X, y = digits
    lams = (1e-4, 1e-2, 3.0, 10.0)  # the two strong penalties learn little
    halving = Halving(rungs=(1,), unit="epochs", eta=2)
    search = ClassifierCV(lams=lams, seeds=(0, 1), halving=halving,
                          evals_per_cycle=4, batch_size=50, **SETTINGS).fit(X, y)
    kept = search.survivors_
    assert len(kept) == 4 and np.all(kept // 2 == kept[::2].repeat(2) // 2)  # pairs of seeds
    results = search.cv_results_
    dropped = results["dropped_step"] >= 0
    assert dropped.sum() == 2 and np.all(results["rank_test_score"][dropped] > 2)
    # A dropped candidate keeps the validation accuracy it had at its rung, and every
    # candidate ranks by its score, as in scikit-learn's HalvingGridSearchCV.
    history = search.classifier_.history_
    for c in np.flatnonzero(dropped):
        row = history.steps.index(int(results["dropped_step"][c]))
        at_rung = history.metrics["val_accuracy"][row, 2 * c:2 * c + 2]  # float32 hits / n
        at_rung = np.round(at_rung * 180) / 180  # validation_fraction 0.1 of 1797 digits
        assert np.all(np.isnan(search.val_scores_[2 * c:2 * c + 2]))  # no score at the end
        assert results["mean_test_score"][c] == at_rung.mean()
        assert results["split0_test_score"][c] == at_rung[0]
    means = results["mean_test_score"]
    assert np.all(np.isfinite(means))
    np.testing.assert_array_equal(results["rank_test_score"],
                                  [1 + np.sum(means > m) for m in means])
    assert not dropped[search.best_index_]  # the best is one that trained to the end
    assert search.best_params_["lam"] in (1e-4, 1e-2)
    assert search.predict_all(X[:5]).shape == (4, 5)
    row = int(np.flatnonzero(kept == search.best_model_index_)[0])
    np.testing.assert_array_equal(search.predict(X[:50]), search.predict_all(X[:50])[row])


def test_parameters_round_trip_through_clone():
    search = ClassifierCV(hidden=(8,), lams=(0.1,), seeds=(3, 4), norm=None, dropout=0.1)
    params = search.get_params()
    assert params["lams"] == (0.1,) and params["norm"] is None and params["dropout"] == 0.1
    assert set(params) == {"hidden", *ClassifierCV.__init__.__signature__.parameters} - {"self"}
    copy = sklearn.base.clone(search)
    assert copy.get_params() == params and copy is not search
    assert search.set_params(lams=(0.2,), init="xavier") is search
    assert search.get_params()["lams"] == (0.2,) and search.get_params()["init"] == "xavier"
    with pytest.raises(XpnetError, match="lams="):
        ClassifierCV(lam=0.1)
    assert repr(search) == ("ClassifierCV(hidden=(8,), lams=(0.2,), seeds=(3, 4), norm=None, "
                            "dropout=0.1, init='xavier')")  # the changed parameters


def test_mistakes_are_one_sentence(digits):
    X, y = digits
    with pytest.raises(XpnetError, match="cannot vary 'seeds'"):
        ClassifierCV(param_grid={"seeds": (0, 1)}).candidates()
    with pytest.raises(XpnetError, match="not fitted yet"):
        ClassifierCV().predict(X)
    with pytest.raises(XpnetError, match="validation_fraction must be between 0 and 1"):
        ClassifierCV(validation_fraction=1.5, **SETTINGS).fit(X, y)
    with pytest.raises(XpnetError, match="1797 samples in X but 10 labels"):
        ClassifierCV(**SETTINGS).fit(X, y[:10])
