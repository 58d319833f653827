"""Successive halving inside the lockstep network (issue 27): the schedule's choices, the
compaction of the network and optimiser on every array library of the matrix, and that
a surviving model trains exactly as it would alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.problems import blobs
from xpnet import ConstantLR, CyclicalLR, Halving, Network, NetworkConfig, to_numpy
from xpnet.backend.devices import get_backend
from xpnet.errors import XpnetError
from xpnet.search.halving import geometric_rungs
from xpnet.training import DeviceSplit, History, TrainConfig, record_steps, train
from xpnet.training.optim import SGDUpdate


def _blobs(n=120, d=12, classes=4, seed=0):
    return blobs(n, d, classes, seed, spread=1.5)


# ---------------------------------------------------------------- the schedule
def test_select_keeps_the_best_third_ties_by_index_nan_last():
    h = Halving(rungs=(10,), eta=3)
    scores = np.array([0.5, np.nan, 0.7, 0.5, 0.1, 0.7, 0.2, 0.5, 0.9])
    np.testing.assert_array_equal(h.select(scores), [2, 5, 8])  # 0.9, 0.7, 0.7
    np.testing.assert_array_equal(Halving(rungs=(10,), eta=2).select(scores), [0, 2, 3, 5, 8])
    assert h.ranks(scores)[1] == 8  # NaN (a diverged model) ranks last
    # Lower is better for a loss; min_models is a floor.
    loss = Halving(rungs=(10,), eta=3, metric="val_loss", min_models=2)
    np.testing.assert_array_equal(loss.select([3.0, 1.0, 2.0, 0.5]), [1, 3])


def test_groups_are_ranked_by_their_mean_and_kept_whole():
    h = Halving(rungs=(10,), eta=3, group_size=2)
    scores = [0.2, 0.4, 0.9, 0.1, 0.6, 0.6, 0.3, np.nan, 0.1, 0.1, 0.0, 0.2]
    np.testing.assert_array_equal(h.select(scores), [2, 3, 4, 5])  # means 0.5 and 0.6
    np.testing.assert_array_equal(Halving(rungs=(1,), eta=2, group_size=2).select(scores),
                                  [0, 1, 2, 3, 4, 5])
    assert "mean val_accuracy 0.5 ranked 2 of 6 configurations, 2 kept" in h.reason(
        scores, 2, 1, 10)
    assert "NaN (diverged)" in h.reason(scores, 7, 1, 10)


@pytest.mark.parametrize("kwargs", [dict(rungs=()), dict(rungs=(5, 3)), dict(rungs=(2.5,)),
                                    dict(rungs=(4,), eta=1), dict(rungs=(4,), unit="cycles"),
                                    dict(rungs=(4,), min_models=0), dict(rungs=(-1,))])
def test_bad_schedules_are_user_errors(kwargs):
    with pytest.raises(XpnetError):
        Halving(**kwargs)


def test_rungs_must_be_record_points_or_snap_from_epochs():
    record_at = record_steps(60, 20, 4)  # every 5 steps
    assert Halving(rungs=(10, 30)).rung_steps(record_at, 12) == [10, 30]
    with pytest.raises(XpnetError, match="records every 5 steps"):
        Halving(rungs=(12,)).rung_steps(record_at, 12)
    with pytest.raises(XpnetError, match="before the last step"):
        Halving(rungs=(60,)).rung_steps(record_at, 12)
    # 1.1 epochs of 12 steps = 13 steps -> record point 15; 0.2 epochs -> 2 -> 5.
    assert Halving(rungs=(0.2, 1.1), unit="epochs").rung_steps(record_at, 12) == [5, 15]
    assert geometric_rungs(record_steps(270, 270, 27), 3, 3) == (10, 30, 90)
    assert geometric_rungs(record_at, 3, 3) == (5, 10, 20)


# ------------------------------------------------------------- compaction
def test_network_take_models_on_the_matrix(backend):
    config = NetworkConfig(d_in=6, hidden=(5, 4), n_classes=3)
    net = Network.create(config, seeds=[3, 1, 4, 1, 5], lam=[0.1, 0.2, 0.3, 0.4, 0.5],
                         bn_eps=[1e-5, 2e-5, 3e-5, 4e-5, 5e-5], device=backend)
    before = {name: to_numpy(v) for name, v in {**net.params, **net.buffers}.items()}
    keep = np.array([4, 1, 2])
    net.take_models(keep)
    assert net.n_models == 3 and net.seeds == [5, 1, 4]
    for name, value in {**net.params, **net.buffers}.items():
        np.testing.assert_array_equal(to_numpy(value), before[name][keep], err_msg=name)
    np.testing.assert_allclose(net.lam_host, [0.5, 0.2, 0.3])
    np.testing.assert_allclose(to_numpy(net.lam), [0.5, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(net.bn_eps), [5e-5, 2e-5, 3e-5], rtol=1e-6)
    X = backend.asarray(np.ones((2, 6)), dtype=net.dtype)
    assert tuple(net.forward(X)[0].shape) == (3, 2, 3)  # a smaller M that still runs
    with pytest.raises(XpnetError, match="indices of the 3 models"):
        net.take_models([3])


def test_sgd_take_models_on_the_matrix(backend):
    xp = backend.xp
    params = {"W1": backend.asarray(np.arange(24.0).reshape(4, 2, 3), dtype="float32")}
    momentum = backend.asarray(np.array([0.1, 0.2, 0.3, 0.4])[:, None, None], dtype="float32")
    decay = backend.asarray(np.array([1.0, 2.0, 3.0, 4.0])[:, None, None], dtype="float32")
    opt = SGDUpdate(params, momentum, decay=decay)
    opt.velocity["W1"] = xp.ones_like(params["W1"]) * backend.asarray(
        np.arange(4.0)[:, None, None], dtype="float32")
    opt.take_models(np.array([3, 0]))
    np.testing.assert_allclose(to_numpy(opt.momentum).ravel(), [0.4, 0.1], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(opt.decay).ravel(), [4.0, 1.0])
    np.testing.assert_allclose(to_numpy(opt.velocity["W1"])[:, 0, 0], [3.0, 0.0])
    plain = SGDUpdate(params)
    plain.take_models(np.array([1]))  # nothing per-model to compact
    assert plain.velocity is None and plain.momentum == 0.0


# ------------------------------------------------------ exactness in training
def _fit(be, dtype, *, seeds, lam, eta_max, momentum, halving=None, eval_every=2):
    X, y = _blobs()
    tr = DeviceSplit.from_host(be, X[:90], y[:90], 4, dtype)
    va = DeviceSplit.from_host(be, X[90:], y[90:], 4, dtype)
    config = NetworkConfig(d_in=12, hidden=(8, 6), n_classes=4)
    net = Network.create(config, seeds=seeds, lam=lam, device=be, dtype=dtype)
    history = train(net, CyclicalLR(1e-3, eta_max, n_s=9, cycles=2), tr, va,
                    TrainConfig(batch_size=10, momentum=momentum, evals_per_cycle=eval_every),
                    progress=False, halving=halving)
    return net, history


def _check_survivors_as_alone(be, dtype, history, net, runs, rtol, atol):
    for j, m in enumerate(history.survivors):
        alone, solo = runs(m)
        for name, value in alone.params.items():
            np.testing.assert_allclose(to_numpy(net.params[name])[j], to_numpy(value)[0],
                                       rtol=rtol, atol=atol, err_msg=f"model {m} {name}")
        for key, values in solo.metrics.items():
            np.testing.assert_allclose(history.metrics[key][:, m], values[:, 0], rtol=rtol,
                                       atol=atol, err_msg=f"model {m} {key}")


def test_survivors_train_exactly_as_alone_float64_per_model_everything():
    """Per-model seeds (so batch orders), lambdas, rates and momentum; two rungs, both in
    the middle of an epoch (9 steps), where the epoch's batch orders and rate table are
    compacted too."""
    be = get_backend("cpu")
    seeds, lam = [0, 1, 2, 3, 4, 5], [0.0, 0.01, 0.001, 0.03, 0.002, 0.0]
    eta_max = (0.05, 0.2, 0.1, 0.3, 0.15, 0.08)
    momentum = (0.0, 0.5, 0.9, 0.3, 0.6, 0.0)
    halving = Halving(rungs=(12, 24), eta=2)
    net, history = _fit(be, "float64", seeds=seeds, lam=lam, eta_max=eta_max,
                        momentum=momentum, halving=halving, eval_every=3)
    assert net.n_models == 2 and len(history.survivors) == 2
    steps = np.array(history.steps)
    dropped = np.flatnonzero(history.dropped_step >= 0)
    assert sorted([*dropped, *history.survivors]) == list(range(6))
    assert sorted(history.dropped_step[dropped].tolist()) == [12, 12, 12, 24]
    for m in dropped:  # the curve up to its rung, NaN after
        stop = history.dropped_step[m]
        assert np.all(np.isfinite(history.metrics["val_accuracy"][steps <= stop, m]))
        assert np.all(np.isnan(history.metrics["val_accuracy"][steps > stop, m]))
        assert history.dropped_reason[m].startswith("halving rung")
    # The rung kept the best half by the val_accuracy recorded there.
    at_12 = history.metrics["val_accuracy"][history.steps.index(12)]
    np.testing.assert_array_equal(np.flatnonzero(history.dropped_step != 12),
                                  halving.select(at_12))

    def alone(m):
        return _fit(be, "float64", seeds=seeds[m], lam=lam[m], eta_max=eta_max[m],
                    momentum=momentum[m], eval_every=3)
    _check_survivors_as_alone(be, "float64", history, net, alone, 1e-10, 1e-10)
    # Each dropped model's curve up to its rung is its solo run's too.
    for m in dropped:
        _, solo = alone(m)
        upto = steps <= history.dropped_step[m]
        np.testing.assert_allclose(history.metrics["val_cost"][upto, m],
                                   solo.metrics["val_cost"][upto, 0], rtol=1e-10)


def test_survivors_as_alone_on_the_matrix(fast_backend):
    """float32 on NumPy, array_api_strict on device1 (no host/device mixing), PyTorch:
    shared rates and one seed (a shared batch order) but per-model momentum, in groups."""
    seeds, lam = [0, 1, 0, 1, 0, 1], [0.0, 0.0, 0.01, 0.01, 0.003, 0.003]
    momentum = (0.5, 0.5, 0.0, 0.0, 0.9, 0.9)
    halving = Halving(rungs=(12,), eta=3, group_size=2)  # mid-epoch
    net, history = _fit(fast_backend, "float32", seeds=seeds, lam=lam, eta_max=0.1,
                        momentum=momentum, halving=halving, eval_every=3)
    assert net.n_models == 2
    assert history.survivors.tolist() in ([0, 1], [2, 3], [4, 5])

    def alone(m):
        return _fit(fast_backend, "float32", seeds=seeds[m], lam=lam[m], eta_max=0.1,
                    momentum=momentum[m], eval_every=3)
    _check_survivors_as_alone(fast_backend, "float32", history, net, alone, 2e-4, 2e-5)


def test_history_keeps_dropped_models_and_round_trips():
    be = get_backend("cpu")
    net, history = _fit(be, "float32", seeds=[0, 1, 2], lam=0.0, eta_max=0.1, momentum=0.0,
                        halving=Halving(rungs=(9,), eta=3))
    assert history.metrics["val_accuracy"].shape == (len(history.steps), 3)
    assert history.diverged_step.shape == (3,)
    text = json.dumps(history.to_dict(), allow_nan=False)
    restored = History.from_dict(json.loads(text))
    np.testing.assert_array_equal(restored.dropped_step, history.dropped_step)
    np.testing.assert_array_equal(restored.survivors, history.survivors)
    assert restored.dropped_reason == history.dropped_reason
    plain = _fit(be, "float32", seeds=0, lam=0.0, eta_max=0.1, momentum=0.0)[1]
    assert "dropped_step" not in plain.to_dict()  # runs without halving keep their form


def test_halving_by_validation_metric_needs_validation_data():
    be = get_backend("cpu")
    X, y = _blobs()
    tr = DeviceSplit.from_host(be, X, y, 4, "float32")
    net = Network.create(NetworkConfig(d_in=12, hidden=(4,), n_classes=4), seeds=[0, 1],
                         device=be)
    with pytest.raises(XpnetError, match="needs validation data"):
        train(net, ConstantLR(0.1, steps=20, cycle_length=10), tr, None,
              TrainConfig(batch_size=10, evals_per_cycle=2), progress=False,
              halving=Halving(rungs=(10,)))
    with pytest.raises(XpnetError, match="does not divide"):
        train(net, ConstantLR(0.1, steps=20, cycle_length=10), tr, tr,
              TrainConfig(batch_size=10, evals_per_cycle=2), progress=False,
              halving=Halving(rungs=(10,), group_size=3))


def test_classifier_fit_with_halving_keeps_the_survivors_as_if_fitted_alone():
    from xpnet import Classifier

    X, y = _blobs(n=150)
    train_pair, val_pair = (X[:100], y[:100]), (X[100:], y[100:])
    lams = (0.0, 0.3, 0.01, 1.0)
    schedule = CyclicalLR(1e-3, 0.1, n_s=10, cycles=2)
    clf = Classifier(hidden=(8,), lam=lams, seeds=0, batch_size=10, evals_per_cycle=4,
                     dtype="float64", schedule=schedule)
    history = clf.fit(*train_pair, val=val_pair, halving=Halving(rungs=(10,), eta=2)).history_
    assert clf.n_models == 2 and len(clf.survivors_) == 2
    assert clf.score_all(val_pair).shape == (2,)
    assert history.metrics["val_accuracy"].shape[1] == 4
    alone = Classifier(hidden=(8,), lam=tuple(lams[m] for m in clf.survivors_), seeds=0,
                       batch_size=10, evals_per_cycle=4, dtype="float64", schedule=schedule)
    alone.fit(*train_pair, val=val_pair)
    np.testing.assert_allclose(clf.predict_proba_all(X[:20]), alone.predict_proba_all(X[:20]),
                               rtol=1e-10, atol=1e-12)
