"""The short API, xpnet.Classifier: NumPy in and out, per-model hyper-parameters, the same
numbers as the lower layer, checkpoints, and one-sentence errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import Classifier, ConstantLR, CyclicalLR, XpnetError, to_numpy
from xpnet.errors import CheckpointError
from xpnet.network import Network, NetworkConfig
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
    return Classifier(**{"hidden": (8,), "batch_size": 10, **kwargs})


def one_sentence(err: pytest.ExceptionInfo, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message and message.endswith("."), message
    assert ". " not in message, f"more than one sentence: {message}"
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


# --------------------------------------------------------------- shapes and types
def test_results_are_numpy_with_the_model_axis_first(fast_backend):
    clf = small(lam=[0.0, 1e-3, 1e-2], device=fast_backend)
    history = clf.fit(TRAIN, CyclicalLR(1e-2, 0.5, n_s_epochs=3, cycles=1), val=VAL)
    X, y = TEST
    pred, proba, score = clf.predict(X), clf.predict_proba(X), clf.score(TEST)
    assert type(pred) is np.ndarray and pred.shape == (3, 30) and pred.dtype == np.int64
    assert type(proba) is np.ndarray and proba.shape == (3, 30, C)
    assert type(score) is np.ndarray and score.shape == (3,) and score.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.all(proba >= 0)
    np.testing.assert_array_equal(np.argmax(proba, axis=-1), pred)
    np.testing.assert_array_equal(score, np.mean(pred == y, axis=1))
    np.testing.assert_array_equal(clf.score(X, y), score)  # scikit-learn's score(X, y) too
    assert history.metrics["val_accuracy"].shape == (len(history.steps), 3)
    assert clf.n_models == 3 and clf.n_features_in_ == D and clf.n_classes_ == C
    assert clf.history_ is history and score.min() > 0.5  # it learnt the blobs


def test_one_model_still_has_the_model_axis():
    clf = small()
    clf.fit(TRAIN, SHORT)
    assert clf.predict(TEST[0]).shape == (1, 30) and clf.score(TEST).shape == (1,)


def test_sizes_come_from_the_data():
    X, y = blobs(40, d=7, classes=3)
    clf = small()
    clf.fit((X, y), SHORT, val=(X[:5], np.array([0, 1, 2, 4, 0])))  # val adds class 4
    assert clf.n_features_in_ == 7 and clf.n_classes_ == 5
    assert clf.network_.config.sizes == (7, 8, 5)
    forced = small(n_classes=6)
    forced.fit((X, y), SHORT)
    assert forced.predict_proba(X).shape == (1, 40, 6)


def test_epochs_resolve_from_training_size_and_batch_size():
    clf = small(batch_size=20)  # 60 samples: 3 steps an epoch
    history = clf.fit(TRAIN, CyclicalLR(1e-3, 1e-1, n_s_epochs=2, cycles=2))
    assert history.steps[-1] == 2 * 2 * (2 * 3)
    default = small(batch_size=30).fit(TRAIN)  # the reports' schedule: n_s = 5 epochs, 2 cycles
    assert default.steps[-1] == 2 * 2 * (5 * 2)


# ---------------------------------------------------------- per-model hyper-parameters
def test_scalars_broadcast_and_sequences_give_one_value_per_model():
    clf = small(lam=0.01, seeds=[3, 4, 5], bn_eps=[1e-5, 1e-3, 1e-1], momentum=0.5)
    clf.fit(TRAIN, SHORT)
    net = clf.network_
    assert net.n_models == 3 and net.seeds == [3, 4, 5]
    np.testing.assert_array_equal(net.lam_host, [0.01] * 3)
    np.testing.assert_array_equal(net.bn_eps_host, [1e-5, 1e-3, 1e-1])
    clf = small(lam=[0.0, 0.1], seeds=7)
    clf.fit(TRAIN, SHORT)
    assert clf.network_.seeds == [7, 7] and clf.n_models == 2


def test_per_model_rates_momentum_and_sigma_set_the_model_count():
    rates = ConstantLR(eta=[0.01, 0.05], steps=12, cycle_length=6)
    clf = small(init="normal", sigma=[1e-2, 1e-1], momentum=(0.0, 0.9))
    clf.fit(TRAIN, rates, val=VAL)
    assert clf.n_models == 2
    W = to_numpy(clf.network_.params["W1"])
    assert W[0].std() < W[1].std() / 3  # sigma per model
    assert small(lam=0.0).fit(TRAIN, ConstantLR(eta=(0.01, 0.02, 0.03), steps=6,
                                                 cycle_length=6)).diverged_step.shape == (3,)


def test_the_same_numbers_as_the_lower_layer():
    kwargs = dict(lam=[0.0, 0.01], seeds=[1, 2], momentum=0.5, train_eval_size=None)
    clf = small(**kwargs)
    history = clf.fit(TRAIN, SHORT, val=VAL)

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
    np.testing.assert_allclose(clf.score(TEST), accuracy, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(TEST[0]), to_numpy(net.predict(te.X)))


def test_fit_starts_afresh():
    clf = small(seeds=[0, 1])
    first = clf.fit(TRAIN, SHORT).metrics["train_loss"]
    np.testing.assert_array_equal(clf.fit(TRAIN, SHORT).metrics["train_loss"], first)


# ------------------------------------------------------------------- checkpoints
def test_save_and_load_round_trip(tmp_path):
    clf = small(lam=[1e-3, 1e-2], seeds=[4, 5], momentum=0.3, batch_size=15, dtype="float64")
    clf.fit(TRAIN, SHORT)
    path = tmp_path / "clf.npz"
    clf.save(path)
    back = Classifier.load(path)
    np.testing.assert_array_equal(back.predict_proba(TEST[0]), clf.predict_proba(TEST[0]))
    np.testing.assert_array_equal(back.score(TEST), clf.score(TEST))
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
    np.testing.assert_array_equal(plain.predict(TEST[0]), clf.predict(TEST[0]))
    assert plain.get_params()["batch_size"] == 100  # not stored there: the default


def test_a_damaged_checkpoint_is_one_sentence(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        Classifier.load(path)
    one_sentence(err, str(path))


# ------------------------------------------------------------------------ errors
def test_using_an_unfitted_classifier(tmp_path):
    clf = small()
    for use in (lambda: clf.predict(TEST[0]), lambda: clf.predict_proba(TEST[0]),
                lambda: clf.score(TEST), lambda: clf.save(tmp_path / "x.npz"),
                lambda: clf.n_classes_):
        with pytest.raises(XpnetError) as err:
            use()
        one_sentence(err, "not fitted", "fit")


def test_wrong_feature_count():
    clf = small()
    clf.fit(TRAIN, SHORT)
    with pytest.raises(XpnetError) as err:
        clf.predict(np.zeros((3, D + 1)))
    one_sentence(err, f"{D + 1} features", str(D))
    with pytest.raises(XpnetError) as err:
        small().fit(TRAIN, SHORT, val=(np.zeros((3, 5)), np.zeros(3, dtype=int)))
    one_sentence(err, "5 features")


@pytest.mark.parametrize("bad_y, words", [
    (np.r_[np.arange(59) % C, -1], ["label -1"]),
    (np.arange(60) % C + 0.5, ["whole-number"]),
    (np.eye(C)[np.arange(60) % C], ["shape (n,)"]),
    (np.arange(50) % C, ["60 samples", "50 labels"]),
])
def test_bad_training_labels(bad_y, words):
    with pytest.raises(XpnetError) as err:
        small().fit((TRAIN[0], bad_y), SHORT)
    one_sentence(err, *words)


def test_labels_out_of_range():
    clf = small(n_classes=3)
    with pytest.raises(XpnetError) as err:
        clf.fit(TRAIN, SHORT)  # labels go up to 3
    one_sentence(err, "label 3", "0 to 2")
    clf = small()
    clf.fit(TRAIN, SHORT)
    with pytest.raises(XpnetError) as err:
        clf.score(TEST[0], TEST[1] + 1)
    one_sentence(err, f"label {C}")


@pytest.mark.parametrize("args, words", [
    ((TRAIN[0], TRAIN[1]), ["(X, y) pair", "ndarray"]),  # Keras' fit(X, y) habit
    ((TRAIN, np.ones(3)), ["schedule", "ndarray"]),
    (((TRAIN[0][:, :, None], TRAIN[1]), SHORT), ["2-D", "(60, 12, 1)"]),
    (((np.where(TRAIN[0] > 2, np.nan, TRAIN[0]), TRAIN[1]), SHORT), ["NaN"]),
])
def test_bad_fit_arguments(args, words):
    with pytest.raises(XpnetError) as err:
        small().fit(*args)
    one_sentence(err, *words)


def test_per_model_lengths_must_agree():
    with pytest.raises(XpnetError) as err:
        small(lam=[1e-3, 1e-2], seeds=[0, 1, 2])
    one_sentence(err, "lam has 2", "seeds has 3")
    with pytest.raises(XpnetError) as err:
        small(lam=[1e-3, 1e-2]).fit(TRAIN, CyclicalLR((1e-3,) * 3, 0.1, n_s_epochs=1))
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
    clf = Classifier(hidden=30, lam=np.array([1e-3, 1e-2]), seeds=np.int64(3),
                     batch_size=np.int64(50))
    assert clf.hidden == (30,) and clf.lam == (1e-3, 1e-2) and clf.seeds == 3
    assert type(clf.batch_size) is int and clf.n_models == 2
    assert Classifier(hidden=()).hidden == ()  # a linear classifier
