"""A hostile user of the Python API (issue 34): every bad argument or input to Classifier,
ClassifierCV, Halving and the schedules is one sentence (an XpnetError) at construction,
in set_params or at fit / predict / score, before anything is trained or allocated;
nothing odd is taken silently (NaN-bound inputs, mixed label kinds, absurd widths).

The data are tiny blobs (60 samples, 6 features, 3 classes), trained for a few steps.
The divergence cases are in tests/robustness/test_divergence.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.problems import blobs
from xpnet import Classifier, ClassifierCV, ConstantLR, CyclicalLR, Halving, XpnetError
from xpnet.base import inputs
from xpnet.search import sweep
from xpnet.training.schedules import Epochs, RangeTestLR

X, Y = blobs(60, 6, 3, seed=0, spread=3.0)
NAMES = np.array(["ant", "bee", "cat"])
SHORT = ConstantLR(eta=0.05, steps=12, cycle_length=6)


def small(**kwargs) -> Classifier:
    return Classifier(**{"hidden": (4,), "batch_size": 10, "schedule": SHORT, **kwargs})


def search(**kwargs) -> ClassifierCV:
    return ClassifierCV(**{"hidden": (4,), "batch_size": 10, "schedule": SHORT, **kwargs})


@pytest.fixture(scope="module")
def fitted() -> Classifier:
    return small().fit(X, Y)


@pytest.fixture
def refused(one_sentence):
    """Return a checker: ``call()`` raises an XpnetError of one sentence with ``words``."""

    def check(call, *words):
        with pytest.raises(XpnetError) as err:
            call()
        return one_sentence(str(err.value), *words)

    return check


# ------------------------------------------------------ constructor and set_params
@pytest.mark.parametrize("kwargs, words", [
    ({"lam": -1}, ["lam", "at least 0"]), ({"lam": float("nan")}, ["lam"]),
    ({"lam": float("inf")}, ["lam"]), ({"lam": [0.1, -1]}, ["lam"]),
    ({"sigma": -1}, ["sigma", "above 0"]), ({"sigma": 0}, ["sigma"]),
    ({"sigma": float("nan")}, ["sigma"]),
    ({"device": "tpu"}, ["device", "'tpu'"]), ({"device": 5}, ["device"]),
    ({"schedule": CyclicalLR}, ["schedule", "the class CyclicalLR"]),
    ({"hidden": (10**13,)}, ["memory", "narrower"]),
    ({"hidden": (10**7, 10**7)}, ["memory", "narrower"]),
])
def test_bad_classifier_arguments_are_refused_at_construction_and_in_set_params(
        refused, kwargs, words):
    refused(lambda: small(**kwargs), *words)
    clf = small()
    before = clf.get_params()
    refused(lambda: clf.set_params(**kwargs), *words)
    assert clf.get_params() == before  # a refused change leaves the parameters


def test_dtype_may_be_a_numpy_dtype_or_type():
    for dtype in (np.dtype("float32"), np.float64):
        clf = small(dtype=dtype).fit(X, Y)
        assert clf.get_params()["dtype"] is dtype  # kept as given, for clone
        assert clf.score(X, Y) > 0.5


@pytest.mark.parametrize("key", ["lam__x", "schedule__eta", "optimizer__beta1"])
def test_nested_set_params_of_a_value_that_is_no_estimator_is_one_sentence(refused, key):
    from xpnet import Adam

    clf = small(optimizer=Adam())
    refused(lambda: clf.set_params(**{key: 0.5}), repr(key), "not an estimator")
    refused(lambda: clf.set_params(lam=0.5, **{key: 0.5}))
    assert clf.lam == 0.005  # nothing was set: the check comes before any change
    refused(lambda: search().set_params(halving__eta=2), "'halving__eta'")


# -------------------------------------------------------- schedules and Halving
@pytest.mark.parametrize("make, words", [
    (lambda: CyclicalLR(eta_max="a"), ["eta_max"]),
    (lambda: ConstantLR(eta={"a": 1}), ["eta"]),
    (lambda: CyclicalLR(cycles=True), ["cycles"]),
    (lambda: CyclicalLR(n_s_epochs="abc"), ["epochs"]),
    (lambda: CyclicalLR(n_s_epochs="5"), ["epochs"]),
    (lambda: CyclicalLR(n_s_epochs=True), ["epochs"]),
    (lambda: Epochs("x"), ["epochs"]),
    (lambda: RangeTestLR(spacing=5), ["spacing"]),
    (lambda: Halving(rungs="abc"), ["rungs"]),
    (lambda: Halving(rungs={1: 2}), ["rungs"]),
    (lambda: Halving(rungs=[[1, 2]]), ["rungs"]),
    (lambda: Halving(rungs=(6,), metric="val_acc"), ["'val_acc'", "val_accuracy"]),
])
def test_bad_schedules_and_halving_are_one_sentence(refused, make, words):
    refused(make, *words)


def test_whole_numbers_given_as_floats_are_whole_numbers():
    assert Halving(rungs=(6,), eta=2.0, min_models=1.0).eta == 2
    assert CyclicalLR(n_s=10.0, cycles=2.0).n_s == 10


def test_schedules_in_epochs_work_wherever_a_schedule_goes():
    from xpnet import DeviceSplit, Network, NetworkConfig, get_backend
    from xpnet.search.sweep import train_lockstep
    from xpnet.training import TrainConfig, train

    epochs = CyclicalLR(1e-3, 0.1, n_s_epochs=1, cycles=1)  # 6 steps an epoch: 12 steps
    assert small(schedule=epochs).fit(X, Y).history_.steps[-1] == 12
    cv = search(schedule=epochs, lams=(1e-3, 1e-2)).fit(X[:50], Y[:50], val=(X[50:], Y[50:]))
    assert cv.classifier_.history_.steps[-1] == 2 * 5
    halved = search(schedule=CyclicalLR(n_s_epochs=2, cycles=1), lams=(0.0, 0.1),
                    halving=Halving(rungs=(1,), unit="epochs", eta=2)).fit(X, Y)
    assert list(halved.cv_results_["dropped_step"] >= 0).count(True) == 1
    data = DeviceSplit.from_host(get_backend("cpu"), X, Y, 3, "float32")
    config = NetworkConfig(d_in=6, hidden=(4,), n_classes=3)
    history = train(Network.create(config), epochs, data, config=TrainConfig(batch_size=10),
                    progress=False)
    assert history.steps[-1] == 12
    _, history = train_lockstep(config, epochs, data, train_config=TrainConfig(batch_size=10),
                                lam=[0.0, 0.1], progress=False)
    assert history.steps[-1] == 12


# -------------------------------------------------------------------- fit inputs
def _frame_with(column):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X)
    frame[6] = column
    return frame


@pytest.mark.parametrize("bad_X, words", [
    (lambda: np.array([["a", 1.0]] * 60, dtype=object), ["strings such as 'a'", "encode"]),
    (lambda: [[1.0, 2.0], [3.0]] * 30, ["rectangular", "different lengths"]),
    (lambda: {"a": 1}, ["a dict where a number should be"]),
    (lambda: [[10**400, 1]] * 60, ["integer of 1329 bits"]),
    (lambda: _frame_with("x"), ["strings such as 'x'"]),
    (lambda: _frame_with(__import__("pandas").array([1.0] * 59 + [None], dtype="Float64")),
     ["missing values (<NA>)", "impute"]),
    (lambda: X * 1e39, ["holds values up to", "float32", "StandardScaler", "dtype='float64'"]),
])
def test_bad_training_X_is_one_sentence_in_both_estimators(refused, bad_X, words):
    refused(lambda: small().fit(bad_X(), Y), "The training data's X", *words)
    refused(lambda: search().fit(bad_X(), Y), "The training data's X", *words)


def test_numbers_held_as_objects_are_numbers():
    """What scikit-learn's check_dtype_object asks besides its TypeError: numbers held
    as Python objects, in X and in y, fit as numbers."""
    clf = small().fit(X.astype(object), Y.astype(object))
    assert clf.classes_.dtype.kind == "i" and clf.score(X.astype(object), Y) > 0.5


def test_float64_training_takes_what_float32_cannot():
    big = X * 1e39
    clf = small(dtype="float64").fit(big, Y)
    assert clf.predict(big).shape == (60,)
    assert np.all(np.isfinite(clf.predict_proba(big)))


def test_classifier_cv_checks_the_callers_X_before_holding_out(refused):
    refused(lambda: search().fit(X[:, :, None], Y), "(60, 6, 1)")
    refused(lambda: search().fit(__import__("scipy.sparse").sparse.csr_matrix(X), Y),
            "sparse", "toarray")
    refused(lambda: search().fit(X, None), "requires y")


@pytest.mark.parametrize("bad_y, words", [
    ([1, "a", "b"] * 20, ["mix of label input types (string and number)"]),
    (np.array([1, "a", "b"] * 20, dtype=object), ["mix of label input types"]),
    (np.array([0, 1, np.nan] * 20, dtype=object), ["NaN"]),
    (np.array([0, 1, None] * 20, dtype=object), ["None", "neither a number nor a string"]),
])
def test_labels_of_mixed_or_missing_kinds_are_refused(refused, bad_y, words):
    refused(lambda: small().fit(X, bad_y), *words)
    refused(lambda: search().fit(X, bad_y), *words)


def test_val_must_be_a_pair_of_the_training_labels_kind(refused):
    for val in ((X,), X, (X, Y, Y)):
        refused(lambda val=val: small().fit(X, Y, val=val), "val must be an (X, y) pair")
    refused(lambda: search().fit(X, Y, val=X), "val must be an (X, y) pair")
    refused(lambda: small().fit(X, Y, val=(X, NAMES[Y])), "mix of label input types")
    refused(lambda: small().fit(X, Y, val=(X * 1e39, Y)), "val's X", "float32")


def test_bad_callbacks_and_halving_are_refused_before_training(refused):
    refused(lambda: small().fit(X, Y, callbacks=[1]), "Callback")
    refused(lambda: small().fit(X, Y, callbacks=1), "list of", "Callback")
    refused(lambda: small(lam=[0, 1]).fit(X, Y, val=(X, Y), halving="yes"),
            "xpnet.Halving", "str")
    refused(lambda: small(lam=[0, 1]).fit(X, Y, halving=Halving(rungs=(6,))),
            "needs validation data")
    refused(lambda: small(lam=[0, 1, 2]).fit(X, Y, val=(X, Y),
                                             halving=Halving(rungs=(6,), group_size=2)),
            "group_size 2", "3 models")


def test_models_and_data_that_cannot_fit_in_memory_are_refused_before_allocating(
        refused, monkeypatch):
    refused(lambda: small(n_classes=10**9).fit(X, Y), "memory", "fewer classes")
    monkeypatch.setattr(inputs, "physical_memory", lambda: 2**20)  # a machine of 1 MiB
    clf = small(hidden=(100,), lam=[0.0] * 8)  # 8 models of 6 -> 100 -> 3: 28 KiB of weights
    assert clf.fit(X, Y).n_models == 8
    many = np.tile(X, (500, 1))  # 30000 samples and their one-hot labels: 1.03 MiB
    refused(lambda: clf.fit(many, np.tile(Y, 500)), "8 model(s) of sizes (6, 100, 3)",
            "30000 samples", "memory")
    refused(lambda: small(hidden=(2**17,)), "weights", "memory")  # 1 MiB of float32 weights
    monkeypatch.setattr(inputs, "physical_memory", lambda: None)  # the OS does not say
    assert small(hidden=(2**17,)).n_models == 1


# --------------------------------------------------------------- predict and score
@pytest.mark.parametrize("use, words", [
    (lambda c: c.predict(X * 1e39), ["float32"]),
    (lambda c: c.predict_proba_all(X * 1e39), ["float32"]),
    (lambda c: c.predict((X, Y)), ["rectangular"]),
    (lambda c: c.score(X, Y, sample_weight=[1, 2]), ["shape (60,)"]),
    (lambda c: c.score(X, Y, sample_weight=np.zeros(60)), ["not all zero"]),
    (lambda c: c.score(X, Y, sample_weight=-np.ones(60)), ["non-negative"]),
    (lambda c: c.score(X, Y, sample_weight=np.full(60, np.nan)), ["finite"]),
    (lambda c: c.score(X, Y, sample_weight=np.ones((60, 1))), ["shape (60, 1)"]),
    (lambda c: c.score(X, Y, sample_weight=["a"] * 60), ["numbers"]),
    (lambda c: c.score(X, NAMES[Y]), ["holds strings", "fitted on numbers"]),
    (lambda c: c.score_all(X, NAMES[Y]), ["holds strings"]),
    (lambda c: c.score(X, [1, "a", "b"] * 20), ["mix of label input types"]),
])
def test_bad_inputs_to_predict_and_score(refused, fitted, use, words):
    refused(lambda: use(fitted), *words)


def test_sample_weights_weigh(fitted):
    pred = fitted.predict(X)
    assert fitted.score(X, Y, sample_weight=(Y == 0) * 1.0) == np.mean(pred[Y == 0] == 0)
    assert fitted.score(X, Y, sample_weight=2.0) == fitted.score(X, Y)
    cv = search().fit(X, Y)
    assert cv.score(X, Y, sample_weight=(Y == 1) * 3) == np.mean(cv.predict(X)[Y == 1] == 1)


# ------------------------------------------------------------------------ sweep
@pytest.mark.parametrize("call, words", [
    (lambda: sweep.log_uniform_grid(-5, -1, "8"), ["n", "whole number"]),
    (lambda: sweep.log_uniform_grid(-5, -1, 2.5), ["n", "whole number"]),
    (lambda: sweep.log_uniform_grid(-5, np.inf, 3), ["finite exponents"]),
    (lambda: sweep.log_uniform_grid(-5, -1, 10**12), ["1000000000000 values", "memory"]),
    (lambda: sweep.grid_spacing([]), ["positive numbers"]),
    (lambda: sweep.grid_spacing([-1, 1]), ["positive numbers"]),
    (lambda: sweep.fine_grid(0.1, np.nan), ["spacing"]),
    (lambda: sweep.best_index([]), ["one score"]),
    (lambda: sweep.best_value([1, 2], [0.1, 0.5, 0.9]), ["2 values but 3 scores"]),
    (lambda: sweep.search_scores(["a"]), ["numbers"]),
])
def test_bad_search_arguments_are_one_sentence(refused, call, words):
    refused(call, *words)


def test_search_scores_read_stored_nones_and_an_all_diverged_search_says_so():
    from xpnet.errors import DivergedError

    scores = sweep.search_scores([0.1, None, 0.3], [-1, -1, 2])  # None: a stored NaN
    assert scores[0] == 0.1 and np.all(np.isnan(scores[1:]))
    with pytest.raises(DivergedError, match="Every value of the search diverged"):
        sweep.best_index([np.nan, None])


# --------------------------------------------------------------- ClassifierCV args
@pytest.mark.parametrize("kwargs, words", [
    ({"lams": 0.1}, ["lams", "sequence"]), ({"lams": ()}, ["lams", "one value"]),
    ({"lams": "abc"}, ["lams"]), ({"lams": (-1,)}, ["lam", "at least 0"]),
    ({"seeds": 0}, ["seeds", "(0, 1)"]), ({"seeds": (-1,)}, ["seeds"]),
    ({"param_grid": [1, 2]}, ["param_grid", "dict"]),
    ({"param_grid": {"dropout": 0.5}}, ["param_grid['dropout']", "sequence"]),
    ({"param_grid": {"dropout": (1.5,)}}, ["dropout", "[0, 1)"]),
    ({"param_grid": {"lam": (0.1,)}}, ["'lam'", "lams="]),
    ({"param_grid": {"hidden": ((4,),)}}, ["'hidden'"]),
    ({"validation_fraction": "0.1"}, ["validation_fraction"]),
    ({"random_state": -1}, ["random_state"]), ({"random_state": "x"}, ["random_state"]),
    ({"halving": "x"}, ["halving", "xpnet.Halving"]),
    ({"sigma": -1}, ["sigma"]), ({"hidden": (10**13,)}, ["memory"]),
])
def test_bad_classifier_cv_arguments_are_refused_at_construction_and_in_set_params(
        refused, kwargs, words):
    refused(lambda: search(**kwargs), *words)
    cv = search()
    before = cv.get_params()
    refused(lambda: cv.set_params(**kwargs), *words)
    assert cv.get_params() == before


def test_classifier_cv_takes_random_state_none():
    assert 0.0 <= search(random_state=None).fit(X, Y).best_score_ <= 1.0
