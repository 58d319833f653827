"""Schedules, the optimiser and the training loop."""

import numpy as np
import pytest

from tests.problems import blobs
from xpnet.backend.devices import get_backend, to_numpy
from xpnet.errors import XpnetError
from xpnet.network.network import Network, NetworkConfig
from xpnet.training import DeviceSplit, History, TrainConfig, batch_orders, train
from xpnet.training.optim import SGDUpdate as SGD
from xpnet.training.schedules import ConstantLR, CyclicalLR, StepDecayLR


def test_cyclical_schedule_is_triangular():
    rates = CyclicalLR(eta_min=1e-5, eta_max=1e-1, n_s=5, cycles=2).rates()
    assert rates.shape == (20,)
    assert rates[0] == pytest.approx(1e-5)
    assert rates[5] == pytest.approx(1e-1)
    assert rates[10] == pytest.approx(1e-5)
    assert rates[15] == pytest.approx(1e-1)
    assert rates[2] == pytest.approx(1e-5 + 0.4 * (1e-1 - 1e-5))
    assert rates[7] == pytest.approx(1e-5 + 0.6 * (1e-1 - 1e-5))
    assert np.all(np.diff(rates[:6]) > 0) and np.all(np.diff(rates[5:11]) < 0)


def test_step_decay_and_constant():
    np.testing.assert_allclose(StepDecayLR(eta0=1.0, factor=0.5, every=2, steps=6).rates(),
                               [1, 1, 0.5, 0.5, 0.25, 0.25])
    np.testing.assert_allclose(ConstantLR(eta=0.3, steps=3, cycle_length=1).rates(), 0.3)


def test_bad_schedules_are_user_errors():
    with pytest.raises(XpnetError):
        CyclicalLR(eta_min=0.1, eta_max=0.01)
    with pytest.raises(XpnetError):
        CyclicalLR(n_s=0)
    with pytest.raises(XpnetError):
        ConstantLR(eta=float("nan"))


def test_sgd_momentum_matches_torch_semantics():
    p = {"W": np.array([1.0, 2.0])}
    opt = SGD(p, momentum=0.5, decay=0.1)
    g = {"W": np.array([0.5, -1.0])}
    opt.step(p, g, 0.1)  # v = g + 0.1 p ; p -= 0.1 v
    v1 = np.array([0.5, -1.0]) + 0.1 * np.array([1.0, 2.0])
    p1 = np.array([1.0, 2.0]) - 0.1 * v1
    np.testing.assert_allclose(p["W"], p1)
    opt.step(p, g, 0.1)
    v2 = 0.5 * v1 + np.array([0.5, -1.0]) + 0.1 * p1
    np.testing.assert_allclose(p["W"], p1 - 0.1 * v2)


def test_prescaled_step_equals_plain_step():
    rng = np.random.default_rng(0)
    W, g = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    eta = np.array([0.1, 0.2])[:, None, None]
    decay = np.array([0.01, 0.0])[:, None, None]
    a, b = {"W": W.copy()}, {"W": W.copy()}
    SGD(a, decay=decay).step(a, {"W": g}, eta)
    SGD(b, decay=decay).step_prescaled(b, {"W": -eta * g}, eta)
    np.testing.assert_allclose(a["W"], b["W"], rtol=1e-14)


def test_batch_orders_depend_only_on_own_seed():
    shared = batch_orders([3, 3], 50, epoch=1)
    assert shared.shape == (50,)
    both = batch_orders([3, 4], 50, epoch=1)
    np.testing.assert_array_equal(both[0], shared)
    np.testing.assert_array_equal(np.sort(both[1]), np.arange(50))
    assert not np.array_equal(batch_orders([3], 50, 0), batch_orders([3], 50, 1))


def _blobs(n=200, d=20, classes=4, seed=0):
    return blobs(n, d, classes, seed, spread=3.0, dtype=np.float32)


def test_training_learns_and_records_history(fast_backend):
    X, y = _blobs()
    tr = DeviceSplit.from_host(fast_backend, X[:150], y[:150], 4, "float32")
    va = DeviceSplit.from_host(fast_backend, X[150:], y[150:], 4, "float32")
    net = Network.create(NetworkConfig(d_in=20, hidden=(16,), n_classes=4), seeds=[0, 1],
                         lam=1e-3, device=fast_backend)
    sched = CyclicalLR(eta_min=1e-3, eta_max=0.1, n_s=15, cycles=2)
    hist = train(net, sched, tr, va, TrainConfig(batch_size=10, evals_per_cycle=5), progress=False)
    assert hist.steps == [0, 6, 12, 18, 24, 30, 36, 42, 48, 54, 60]
    assert hist.metrics["val_accuracy"].shape == (11, 2)
    assert np.all(hist.metrics["val_accuracy"][-1] > 0.9)
    assert np.all(hist.metrics["train_loss"][-1] < hist.metrics["train_loss"][0])
    np.testing.assert_array_equal(hist.diverged_step, [-1, -1])
    restored = History.from_dict(hist.to_dict())
    np.testing.assert_allclose(restored.metrics["train_cost"], hist.metrics["train_cost"])


def test_divergent_model_stops_and_others_go_on():
    X, y = _blobs(seed=1)
    be = get_backend("cpu")
    tr = DeviceSplit.from_host(be, X, y, 4, "float32")
    net = Network.create(NetworkConfig(d_in=20, hidden=(16, 16), n_classes=4, norm=None,
                                       init="normal"), sigma=[0.1, 10.0], seeds=0, device=be)
    hist = train(net, ConstantLR(eta=0.5, steps=60, cycle_length=20), tr, tr,
                 TrainConfig(batch_size=20, evals_per_cycle=4), progress=False)
    assert hist.diverged_step[0] == -1
    assert hist.diverged_step[1] == 0  # the loss of sigma = 10 weights is ~1e5 at once
    assert np.isfinite(hist.metrics["train_loss"][-1, 0])
    assert np.isnan(hist.metrics["train_loss"][-1, 1])
    assert np.isfinite(hist.last_finite("train_loss")[1])
    assert hist.to_dict()["metrics"]["train_loss"][-1][1] is None


def test_exploding_rate_diverges_at_a_step_with_last_finite_figures():
    X, y = _blobs(seed=4)
    be = get_backend("cpu")
    tr = DeviceSplit.from_host(be, X, y, 4, "float32")
    net = Network.create(NetworkConfig(d_in=20, hidden=(16, 16), n_classes=4, norm=None),
                         seeds=[0, 0], device=be)
    # Two copies of one net; a step-decay schedule cannot give them different rates, so
    # run them separately and compare: a sane rate trains, a huge one blows up.
    sane = train(net, ConstantLR(eta=0.05, steps=40, cycle_length=10), tr, tr,
                 TrainConfig(batch_size=20), progress=False)
    assert list(sane.diverged_step) == [-1, -1]
    net = Network.create(NetworkConfig(d_in=20, hidden=(16, 16), n_classes=4, norm=None),
                         seeds=0, device=be)
    wild = train(net, ConstantLR(eta=1e3, steps=40, cycle_length=10), tr, tr,
                 TrainConfig(batch_size=20, momentum=0.9), progress=False)
    step = int(wild.diverged_step[0])
    assert 0 < step < 40
    assert np.isfinite(wild.last_finite("val_loss")[0])
    recorded = np.array(wild.steps)
    assert np.all(np.isnan(wild.metrics["val_loss"][recorded > step, 0]))


def test_same_seed_same_run_twice():
    X, y = _blobs(seed=2)
    be = get_backend("cpu")
    tr = DeviceSplit.from_host(be, X, y, 4, "float64")
    runs = []
    for _ in range(2):
        net = Network.create(NetworkConfig(d_in=20, hidden=(8,), n_classes=4), seeds=5,
                             device=be, dtype="float64")
        train(net, CyclicalLR(n_s=10, cycles=1), tr, None, TrainConfig(batch_size=20),
              progress=False)
        runs.append(to_numpy(net.params["W1"]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_momentum_training_runs():
    X, y = _blobs(seed=3)
    be = get_backend("cpu")
    tr = DeviceSplit.from_host(be, X, y, 4, "float32")
    net = Network.create(NetworkConfig(d_in=20, hidden=(16,), n_classes=4), seeds=0, device=be)
    hist = train(net, ConstantLR(eta=0.01, steps=40, cycle_length=20), tr, tr,
                 TrainConfig(batch_size=20, momentum=0.8), progress=False)
    assert hist.metrics["val_accuracy"][-1, 0] > 0.9


def test_four_layer_bn_overfits_100_samples():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3072)).astype(np.float32)
    y = rng.integers(0, 10, 100)
    be = get_backend("cpu")
    tr = DeviceSplit.from_host(be, X, y, 10, "float32")
    net = Network.create(NetworkConfig(hidden=(50, 30, 20)), seeds=0, lam=0.0, device=be)
    hist = train(net, CyclicalLR(eta_min=1e-5, eta_max=1e-1, n_s=100, cycles=2), tr, None,
                 TrainConfig(batch_size=10), progress=False)
    assert hist.metrics["train_accuracy"][-1, 0] == 1.0


def test_batch_larger_than_data_is_a_user_error():
    be = get_backend("cpu")
    X, y = _blobs(n=5)
    net = Network.create(NetworkConfig(d_in=20, hidden=(4,), n_classes=4), device=be)
    with pytest.raises(XpnetError, match="larger than"):
        train(net, ConstantLR(steps=1, cycle_length=1), DeviceSplit.from_host(be, X, y, 4,
              "float32"), None, TrainConfig(batch_size=100), progress=False)


def test_training_loop_on_array_api_strict_matches_numpy():
    """train() itself uses only the standard: the same run on both namespaces agrees."""
    X, y = _blobs(n=60, d=10, seed=6)
    finals = {}
    for device in ("cpu", "strict"):
        be = get_backend(device)
        tr = DeviceSplit.from_host(be, X, y, 4, "float64")
        net = Network.create(NetworkConfig(d_in=10, hidden=(8, 6), n_classes=4), seeds=[0, 1],
                             lam=[0.0, 0.01], device=be, dtype="float64")
        hist = train(net, CyclicalLR(n_s=6, cycles=1), tr, tr,
                     TrainConfig(batch_size=10, evals_per_cycle=2), progress=False)
        finals[device] = (to_numpy(net.params["W1"]), hist.metrics["val_cost"])
    np.testing.assert_allclose(finals["cpu"][0], finals["strict"][0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(finals["cpu"][1], finals["strict"][1], rtol=1e-12)
