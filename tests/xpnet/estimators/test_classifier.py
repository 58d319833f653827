"""The short API, xpnet.Classifier: NumPy in and out, one model or M per-model models, the
same numbers as the lower layer, checkpoints, and one-sentence errors for bad input.
(Its scikit-learn side, with scikit-learn itself: tests/xpnet/estimators/test_sklearn.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import Classifier, ConstantLR, CyclicalLR, XpnetError, to_numpy
from xpnet.errors import CheckpointError
from xpnet.network.network import Network, NetworkConfig
from xpnet.training import DeviceSplit, TrainConfig, train

D, C = 12, 4


def blobs(n: int, seed: int = 0, d: int = D, classes: int = C):
    """A learnable host data set: ``X`` float32 ``(n, d)`` around one centre per class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = np.random.default_rng(99).standard_normal((classes, d)) * 2
    X = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    return X, y


TRAIN, VAL, TEST = blobs(60, 0), blobs(20, 1), blobs(30, 2)
SHORT = CyclicalLR(1e-3, 1e-1, n_s_epochs=1, cycles=1)  # 6 steps/epoch at batch 10


def small(**kwargs) -> Classifier:
    return Classifier(**{"hidden": (8,), "batch_size": 10, "schedule": SHORT, **kwargs})


def one_sentence(err: pytest.ExceptionInfo, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message and message.endswith("."), message
    assert ". " not in message, f"more than one sentence: {message}"
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


# --------------------------------------------------------------- shapes and types
def test_results_are_numpy_with_the_model_axis_first(fast_backend):
    clf = small(lam=[0.0, 1e-3, 1e-2], device=fast_backend,
                schedule=CyclicalLR(1e-2, 0.5, n_s_epochs=3, cycles=1))
    assert clf.fit(*TRAIN, val=VAL) is clf
    history = clf.history_
    X, y = TEST
    pred, proba, score = clf.predict_all(X), clf.predict_proba_all(X), clf.score_all(TEST)
    assert type(pred) is np.ndarray and pred.shape == (3, 30) and pred.dtype == np.int64
    assert type(proba) is np.ndarray and proba.shape == (3, 30, C)
    assert type(score) is np.ndarray and score.shape == (3,) and score.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.all(proba >= 0)
    np.testing.assert_array_equal(np.argmax(proba, axis=-1), pred)
    np.testing.assert_array_equal(score, np.mean(pred == y, axis=1))
    np.testing.assert_array_equal(clf.score_all(X, y), score)  # score_all(X, y) too
    assert history.metrics["val_accuracy"].shape == (len(history.steps), 3)
    assert clf.n_models == 3 and clf.n_features_in_ == D and clf.n_classes_ == C
    assert score.min() > 0.5  # it learnt the blobs
    for one_model in (clf.predict, clf.predict_proba, lambda X: clf.score(X, y)):
        with pytest.raises(XpnetError) as err:  # which model would answer?
            one_model(X)
        one_sentence(err, "3 models", "_all", "ClassifierCV")


def test_one_model_answers_as_scikit_learn_does_and_the_all_forms_keep_the_axis():
    clf = small().fit(TRAIN)  # an (X, y) pair, as data.train
    X, y = TEST
    pred, proba = clf.predict(X), clf.predict_proba(X)
    assert pred.shape == (30,) and proba.shape == (30, C) and list(clf.classes_) == [0, 1, 2, 3]
    np.testing.assert_array_equal(clf.predict_all(X), pred[None])
    np.testing.assert_array_equal(clf.predict_proba_all(X), proba[None])
    assert type(clf.score(X, y)) is float and clf.score(TEST) == np.mean(pred == y)
    assert clf.score_all(TEST).shape == (1,) and clf.score_all(TEST)[0] == clf.score(X, y)
    weights = (y == 0).astype(float)
    assert clf.score(X, y, sample_weight=weights) == np.mean(pred[y == 0] == 0)


def test_any_labels_are_classes():
    names = np.array(["cat", "dog", "emu", "fox"])
    clf = small().fit(TRAIN[0], names[TRAIN[1]])
    assert list(clf.classes_) == list(names) and clf.n_classes_ == C
    X, y = TEST
    np.testing.assert_array_equal(clf.predict(X), names[small().fit(*TRAIN).predict(X)])
    assert clf.score(X, names[y]) == np.mean(clf.predict(X) == names[y])
    odd = small().fit(TRAIN[0], 10 * TRAIN[1] - 7)  # ints other than 0 .. C - 1
    assert list(odd.classes_) == [-7, 3, 13, 23] and set(odd.predict(X)) <= {-7, 3, 13, 23}


def test_sizes_come_from_the_data():
    X, y = blobs(40, d=7, classes=3)
    clf = small()
    clf.fit(X, y, val=(X[:5], np.array([0, 1, 2, 4, 0])))  # val adds class 4
    assert clf.n_features_in_ == 7 and clf.n_classes_ == 4 and list(clf.classes_) == [0, 1, 2, 4]
    assert clf.network_.config.sizes == (7, 8, 4)
    forced = small(n_classes=6)  # integer labels 0 .. 5, some of them absent
    forced.fit(X, y)
    assert forced.predict_proba(X).shape == (40, 6) and list(forced.classes_) == list(range(6))
    tiny = small(batch_size=100).fit(X, y)  # fewer samples than a batch: full batches
    assert tiny.history_.steps[-1] == 2 * 1 * 1


def test_epochs_resolve_from_training_size_and_batch_size():
    clf = small(batch_size=20, schedule=CyclicalLR(1e-3, 1e-1, n_s_epochs=2, cycles=2))
    history = clf.fit(*TRAIN).history_  # 60 samples: 3 steps an epoch
    assert history.steps[-1] == 2 * 2 * (2 * 3)
    default = small(batch_size=30, schedule=None).fit(*TRAIN).history_
    assert default.steps[-1] == 2 * 2 * (5 * 2)  # the reports' schedule: n_s = 5 epochs, 2 cycles


# ---------------------------------------------------------- per-model hyper-parameters
def test_scalars_broadcast_and_sequences_give_one_value_per_model():
    clf = small(lam=0.01, seeds=[3, 4, 5], bn_eps=[1e-5, 1e-3, 1e-1], momentum=0.5)
    clf.fit(*TRAIN)
    net = clf.network_
    assert net.n_models == 3 and net.seeds == [3, 4, 5]
    np.testing.assert_array_equal(net.lam_host, [0.01] * 3)
    np.testing.assert_array_equal(net.bn_eps_host, [1e-5, 1e-3, 1e-1])
    clf = small(lam=[0.0, 0.1], seeds=7)
    clf.fit(*TRAIN)
    assert clf.network_.seeds == [7, 7] and clf.n_models == 2


def test_per_model_rates_momentum_and_sigma_set_the_model_count():
    rates = ConstantLR(eta=[0.01, 0.05], steps=12, cycle_length=6)
    clf = small(init="normal", sigma=[1e-2, 1e-1], momentum=(0.0, 0.9), schedule=rates)
    clf.fit(*TRAIN, val=VAL)
    assert clf.n_models == 2
    W = to_numpy(clf.network_.params["W1"])
    assert W[0].std() < W[1].std() / 3  # sigma per model
    rates = ConstantLR(eta=(0.01, 0.02, 0.03), steps=6, cycle_length=6)
    assert small(lam=0.0, schedule=rates).fit(*TRAIN).history_.diverged_step.shape == (3,)


def test_the_same_numbers_as_the_lower_layer():
    kwargs = dict(lam=[0.0, 0.01], seeds=[1, 2], momentum=0.5, train_eval_size=None)
    clf = small(**kwargs)
    history = clf.fit(*TRAIN, val=VAL).history_

    net = Network.create(NetworkConfig(d_in=D, hidden=(8,), n_classes=C), seeds=[1, 2],
                         lam=[0.0, 0.01], device="cpu")
    tr = DeviceSplit.from_host(net.backend, *TRAIN, C, "float32")
    va = DeviceSplit.from_host(net.backend, *VAL, C, "float32")
    ref = train(net, CyclicalLR(1e-3, 1e-1, n_s=6, cycles=1), tr, va,
                TrainConfig(batch_size=10, momentum=0.5, train_eval_size=None), progress=False)

    for name, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(clf.network_.params[name]), to_numpy(value))
    for key, value in ref.metrics.items():
        np.testing.assert_array_equal(history.metrics[key], value)
    assert history.steps == ref.steps
    te = DeviceSplit.from_host(net.backend, *TEST, C, "float32")
    accuracy = to_numpy(net.evaluate(te.X, te.y, te.Y)["accuracy"])  # float32 there
    np.testing.assert_allclose(clf.score_all(TEST), accuracy, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict_all(TEST[0]), to_numpy(net.predict(te.X)))


def test_fit_starts_afresh():
    clf = small(seeds=[0, 1])
    first = clf.fit(*TRAIN).history_.metrics["train_loss"]
    np.testing.assert_array_equal(clf.fit(*TRAIN).history_.metrics["train_loss"], first)


# ------------------------------------------------------------------- checkpoints
def test_save_and_load_round_trip(tmp_path):
    clf = small(lam=[1e-3, 1e-2], seeds=[4, 5], momentum=0.3, batch_size=15, dtype="float64")
    clf.fit(*TRAIN)
    path = tmp_path / "clf.npz"
    clf.save(path)
    back = Classifier.load(path)
    np.testing.assert_array_equal(back.predict_proba_all(TEST[0]),
                                  clf.predict_proba_all(TEST[0]))
    np.testing.assert_array_equal(back.score_all(TEST), clf.score_all(TEST))
    params = back.get_params()
    assert params["lam"] == (1e-3, 1e-2) and params["seeds"] == (4, 5)
    assert params["momentum"] == 0.3 and params["batch_size"] == 15
    assert params["dtype"] == "float64" and params["hidden"] == (8,)
    assert back.history_ is None and back.n_classes_ == C
    with np.load(path, allow_pickle=False) as f:  # plain arrays, no pickle
        assert all(f[k].dtype != object for k in f.files)
    # The file is a Network checkpoint; a plain Network checkpoint loads as a Classifier.
    Network.load(path).save(tmp_path / "net.npz")
    plain = Classifier.load(tmp_path / "net.npz")
    np.testing.assert_array_equal(plain.predict_all(TEST[0]), clf.predict_all(TEST[0]))
    assert plain.get_params()["batch_size"] == 100  # not stored there: the default
    names = np.array(["cat", "dog", "emu", "fox"])
    small().fit(TRAIN[0], names[TRAIN[1]]).save(tmp_path / "named.npz")
    assert list(Classifier.load(tmp_path / "named.npz").classes_) == list(names)


def test_a_damaged_checkpoint_is_one_sentence(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        Classifier.load(path)
    one_sentence(err, str(path))


# ------------------------------------------------------------------------ errors
def test_using_an_unfitted_classifier(tmp_path):
    clf = small()
    for use in (lambda: clf.predict(TEST[0]), lambda: clf.predict_proba_all(TEST[0]),
                lambda: clf.score(TEST), lambda: clf.save(tmp_path / "x.npz")):
        with pytest.raises(XpnetError) as err:
            use()
        one_sentence(err, "not fitted", "fit")


def test_wrong_feature_count():
    clf = small()
    clf.fit(*TRAIN)
    with pytest.raises(XpnetError) as err:
        clf.predict(np.zeros((3, D + 1)))
    one_sentence(err, f"{D + 1} features", str(D))
    with pytest.raises(XpnetError) as err:
        small().fit(*TRAIN, val=(np.zeros((3, 5)), np.zeros(3, dtype=int)))
    one_sentence(err, "5 features")


@pytest.mark.parametrize("bad_y, words", [
    (np.arange(60) % C + 0.5, ["class labels", "continuous"]),
    (np.eye(C)[np.arange(60) % C], ["shape (n,)"]),
    (np.arange(50) % C, ["60 samples", "50 labels"]),
    (np.zeros(60), ["one class", "two classes"]),
    (None, ["requires y"]),
])
def test_bad_training_labels(bad_y, words):
    with pytest.raises(XpnetError) as err:
        small().fit(TRAIN[0], bad_y)
    one_sentence(err, *words)


def test_labels_out_of_range():
    clf = small(n_classes=3)
    with pytest.raises(XpnetError) as err:
        clf.fit(*TRAIN)  # labels go up to 3
    one_sentence(err, "label 3", "0 to 2")
    with pytest.raises(XpnetError) as err:
        small(n_classes=4).fit(TRAIN[0], np.array(list("abcd"))[TRAIN[1]])
    one_sentence(err, "whole-number", "n_classes")
    clf = small().fit(*TRAIN)  # an unseen label only counts as a wrong answer
    assert clf.score(TEST[0], TEST[1] + C) == 0.0


@pytest.mark.parametrize("args, words", [
    ((TRAIN, SHORT), ["Classifier(schedule=...)"]),  # the schedule's place before
    ((TRAIN[0][:, :, None], TRAIN[1]), ["2-D", "(60, 12, 1)"]),
    ((TRAIN[0][:, 0], TRAIN[1]), ["2-D", "Reshape"]),
    ((np.where(TRAIN[0] > 2, np.nan, TRAIN[0]), TRAIN[1]), ["NaN"]),
    ((TRAIN[0][:, :0], TRAIN[1]), ["0 feature"]),
])
def test_bad_fit_arguments(args, words):
    with pytest.raises(XpnetError) as err:
        small().fit(*args)
    one_sentence(err, *words)
    with pytest.raises(XpnetError) as err:
        small(schedule=np.ones(3))
    one_sentence(err, "schedule", "ndarray")


def test_per_model_lengths_must_agree():
    with pytest.raises(XpnetError) as err:
        small(lam=[1e-3, 1e-2], seeds=[0, 1, 2])
    one_sentence(err, "lam has 2", "seeds has 3")
    with pytest.raises(XpnetError) as err:
        small(lam=[1e-3, 1e-2], schedule=CyclicalLR((1e-3,) * 3, 0.1, n_s_epochs=1))
    one_sentence(err, "lam has 2", "the schedule has 3")


@pytest.mark.parametrize("kwargs, word", [
    ({"seeds": 0.5}, "seeds"), ({"seeds": [-1, 2]}, "seeds"), ({"seeds": None}, "seeds"),
    ({"lam": [[1e-3]]}, "lam"), ({"lam": []}, "lam"), ({"lam": "big"}, "lam"),
    ({"momentum": [0.1, [0.2]]}, "momentum"), ({"bn_eps": True}, "bn_eps"),
    ({"hidden": [50, 0]}, "hidden"), ({"hidden": "50"}, "hidden"),
    ({"batch_size": 0.5}, "batch_size"), ({"n_classes": 1}, "n_classes"),
    ({"init": "glorot"}, "init"), ({"dtype": "float16"}, "dtype"),
    ({"bn_momentum": 1.5}, "bn_momentum"),
])
def test_bad_constructor_arguments(kwargs, word):
    with pytest.raises(XpnetError) as err:
        small(**kwargs)
    one_sentence(err, word)


def test_friendly_constructor_arguments():
    lam = np.array([1e-3, 1e-2])
    clf = Classifier(hidden=30, lam=lam, seeds=np.int64(3), batch_size=np.int64(20),
                     schedule=SHORT)
    assert clf.get_params()["lam"] is lam and clf.hidden == 30  # kept as given, for clone
    assert clf.n_models == 2
    assert clf.fit(*TRAIN).network_.config.hidden == (30,)
    assert clf.network_.seeds == [3, 3]
    np.testing.assert_array_equal(clf.network_.lam_host, lam)
    assert Classifier(hidden=()).fit(*TRAIN).network_.config.sizes == (D, C)  # linear
    assert Classifier(batch_norm=False).norm is None  # the legacy keyword
