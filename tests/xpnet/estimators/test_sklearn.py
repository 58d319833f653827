"""xpnet.Classifier as a scikit-learn classifier: scikit-learn's own estimator checks, the
model-selection tools on its bundled digits, array API dispatch, and life without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from tests.conftest import block_import, in_ci
from xpnet import Classifier, ClassifierCV, CyclicalLR, XpnetError

if not in_ci():  # the dev extra installs scikit-learn: in CI its absence is a failure
    pytest.importorskip("sklearn", reason='scikit-learn is not installed; '
                        'pip install ".[sklearn]"')
import sklearn  # noqa: E402
import sklearn.base  # noqa: E402
import sklearn.datasets  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    StratifiedKFold,
    cross_val_score,
    train_test_split,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

#: Small enough that the whole check suite trains in seconds, large enough that
#: check_classifiers_train's blobs reach its 0.83 training accuracy.
CHECKED = Classifier(hidden=(16,), batch_size=16, dtype="float64", evals_per_cycle=1,
                     train_eval_size=None, schedule=CyclicalLR(1e-3, 0.2, n_s_epochs=5, cycles=1))

#: The checks Classifier fails on purpose, each with its reason.
EXPECTED_FAILED_CHECKS = {
    "check_do_not_raise_errors_in_init_or_set_params":
        "Classifier checks its arguments at construction and in set_params, so that a "
        "mistake is one sentence at once rather than at fit.",
    "check_dtype_object":
        "A dict among X's values is refused in one sentence (xpnet's InputError, a "
        "ValueError) where the check wants NumPy's TypeError; the rest of the check (numbers "
        "held as objects, in X and in y) is test_numbers_held_as_objects_are_numbers.",
}


@parametrize_with_checks([CHECKED], expected_failed_checks=lambda _: EXPECTED_FAILED_CHECKS)
def test_scikit_learns_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------------- model selection on digits
DIGITS_SETTINGS = dict(hidden=(64,), batch_size=16, train_eval_size=None, evals_per_cycle=1,
                       schedule=CyclicalLR(1e-3, 0.1, n_s_epochs=2, cycles=2))
#: Shuffled folds: digits is ordered by writer, and its last writers are the hard ones.
FOLDS = StratifiedKFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = sklearn.datasets.load_digits(return_X_y=True)  # (1797, 64) pixels 0..16, 10 classes
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_pipeline_with_a_scaler(digits):
    X_tr, X_te, y_tr, y_te = digits
    pipe = make_pipeline(StandardScaler(), Classifier(**DIGITS_SETTINGS))
    pipe.fit(X_tr, y_tr)
    accuracy = pipe.score(X_te, y_te)
    print(f"Pipeline(StandardScaler, Classifier) test accuracy: {accuracy:.4f}")
    assert accuracy > 0.93  # chance: 0.1
    assert pipe.predict(X_te).shape == (450,)
    assert pipe.predict_proba(X_te).shape == (450, 10)


def test_cross_val_score(digits):
    X_tr, _, y_tr, _ = digits
    scores = cross_val_score(make_pipeline(StandardScaler(), Classifier(**DIGITS_SETTINGS)),
                             X_tr, y_tr, cv=FOLDS)
    print(f"cross_val_score (3 folds): {np.round(scores, 4)}, mean {scores.mean():.4f}")
    assert scores.shape == (3,) and scores.min() > 0.9


def test_grid_search_cv(digits):
    X_tr, X_te, y_tr, y_te = digits
    search = GridSearchCV(make_pipeline(StandardScaler(), Classifier(**DIGITS_SETTINGS)),
                          {"classifier__lam": [1e-4, 3.0], "classifier__hidden": [(8,), (64,)]},
                          cv=FOLDS)
    search.fit(X_tr, y_tr)
    test = search.score(X_te, y_te)
    print(f"GridSearchCV best {search.best_params_}, cv {search.best_score_:.4f}, "
          f"test {test:.4f}")
    means = search.cv_results_["mean_test_score"]
    print(f"GridSearchCV mean_test_score per candidate: {np.round(means, 4)}")
    assert search.best_params_["classifier__lam"] == 1e-4  # lam 3 all but stops learning
    assert search.best_score_ > 0.9 and test > 0.93
    assert len(search.cv_results_["params"]) == 4


def test_clone_round_trips_every_keyword():
    clf = Classifier(hidden=[8, 4], lam=[1e-3, 1e-2], norm=None, seeds=(1, 2),
                     schedule=CyclicalLR(1e-3, 0.1, n_s_epochs=1))
    copy = sklearn.base.clone(clf)  # which checks that __init__ keeps every value as given
    params = clf.get_params(deep=True)
    assert copy is not clf and copy.get_params() == params and params["hidden"] == [8, 4]
    assert set(params) == set(Classifier.__init__.__signature__.parameters) - {"self"}
    assert sklearn.base.is_classifier(clf) and sklearn.base.is_classifier(ClassifierCV())
    assert clf.set_params(lam=0.1, seeds=0) is clf and clf.n_models == 1
    with pytest.raises(ValueError, match="no parameter 'lamb'"):
        clf.set_params(lamb=0.1)
    with pytest.raises(ValueError, match="disagree"):
        clf.set_params(lam=[0.1, 0.2, 0.3], seeds=[0, 1])
    assert clf.get_params()["lam"] == 0.1  # a refused change leaves the parameters


def test_an_unfitted_classifier_raises_scikit_learns_not_fitted_error():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        Classifier().predict(np.zeros((2, 3)))


# ------------------------------------------------------------------- array API
def test_without_dispatch_other_arrays_go_in_and_numpy_comes_out():
    torch = pytest.importorskip("torch")
    X, y = _blobs()
    clf = Classifier(hidden=(8,), batch_size=10, schedule=CyclicalLR(n_s_epochs=1))
    clf.fit(torch.asarray(X), torch.asarray(y))
    assert clf.network_.backend.flag == "cpu"
    assert type(clf.predict(torch.asarray(X))) is np.ndarray and type(clf.classes_) is np.ndarray


DISPATCH = """
import numpy as np, sklearn, torch, array_api_strict as xps
from array_api_compat import array_namespace, device
from xpnet import Classifier, ClassifierCV, CyclicalLR
from xpnet.backend.devices import to_numpy
rng = np.random.default_rng(0)
y = np.arange(60) % 3
X = np.eye(3)[y] @ rng.standard_normal((3, 5)) * 3 + rng.standard_normal((60, 5))
settings = dict(hidden=(8,), batch_size=10, dtype="float64", schedule=CyclicalLR(n_s_epochs=2))
ref = Classifier(**settings).fit(X, y)
sklearn.set_config(array_api_dispatch=True)
for xp, dev, flag in [(xps, xps.Device("device1"), "strict:device1"),
                      (torch, torch.device("cpu"), "torch")]:
    Xd, yd = xp.asarray(X, device=dev), xp.asarray(y, device=dev)
    clf = Classifier(**settings).fit(Xd, yd)
    assert clf.network_.backend.flag == flag, clf.network_.backend.flag
    outputs = [clf.classes_, clf.predict(Xd), clf.predict_proba(Xd), clf.predict_all(Xd)]
    for out in outputs:
        assert array_namespace(out) is array_namespace(Xd) and device(out) == dev, out
    np.testing.assert_allclose(to_numpy(clf.predict_proba(Xd)), ref.predict_proba(X),
                               rtol=1e-8, atol=1e-10)
    assert type(clf.score(Xd, yd)) is float and clf.score(Xd, yd) == ref.score(X, y)
    try:  # another library's input than fit's is refused, as scikit-learn's rule says
        clf.predict(X)
        raise AssertionError("predict took NumPy from a Classifier fitted on another library")
    except ValueError as err:
        assert "must use the same namespace" in str(err), err
    search = ClassifierCV(lams=(1e-3, 1e-1), **settings).fit(Xd, yd)
    assert search.classifier_.network_.backend.flag == flag
    assert array_namespace(search.predict(Xd)) is array_namespace(Xd)
    assert device(search.classes_) == dev
sklearn.set_config(array_api_dispatch=False)
from sklearn.utils.estimator_checks import check_estimator
checked = Classifier(hidden=(16,), batch_size=16, dtype="float64", evals_per_cycle=1,
                     train_eval_size=None, schedule=CyclicalLR(1e-3, 0.2, n_s_epochs=5, cycles=1))
results = [r for r in check_estimator(checked, on_fail=None)
           if r["check_name"].startswith("check_array_api")]
failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
assert not failed, failed
print("array API checks passed:", sum(r["status"] == "passed" for r in results))
print("dispatch ok")
"""


def test_array_api_dispatch_follows_the_input_on_array_api_strict_and_torch():
    """With dispatch on, the models train in the input's library and device, and fitted
    arrays and outputs follow it.  scikit-learn allows dispatch only where SciPy's own
    array API support was switched on before SciPy was imported, so this runs in a
    process of its own with SCIPY_ARRAY_API=1."""
    pytest.importorskip("torch")
    pytest.importorskip("array_api_strict")
    src = str(Path(xpnet.__file__).resolve().parents[1])
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", DISPATCH], capture_output=True, text=True,
                          env=env, timeout=300)  # run() ends the child on a timeout
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("dispatch ok")
    passed = int(done.stdout.split("array API checks passed:")[1].split()[0])
    assert passed >= 4, done.stdout  # scikit-learn's own: strict and torch on the CPU at least


# ------------------------------------------------------------- without sklearn
def test_the_classifier_works_without_scikit_learn(monkeypatch):
    block_import(monkeypatch, "sklearn")
    with pytest.raises(ImportError):
        import sklearn.base  # noqa: F401  (blocked)
    X, y = _blobs()
    clf = Classifier(hidden=(8,), batch_size=10, schedule=CyclicalLR(n_s_epochs=2))
    params = clf.get_params()
    assert type(clf)(**params).get_params() == params
    with pytest.raises(XpnetError, match="not fitted"):
        clf.predict(X)
    with pytest.warns(UserWarning, match="column-vector"):
        clf.fit(X, y[:, None])
    assert clf.predict(X).shape == (60,) and clf.score(X, y) > 0.5
    search = ClassifierCV(hidden=(8,), lams=(1e-3, 1e-1), batch_size=10,
                          schedule=CyclicalLR(n_s_epochs=2)).fit(X, y)
    assert len(search.cv_results_["params"]) == 2


def _blobs():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    return np.eye(3)[y] @ rng.standard_normal((3, 5)) * 3 + rng.standard_normal((60, 5)), y
