"""Network: exact gradients, namespace agreement, lockstep agreement, checkpoints."""

import dataclasses

import numpy as np
import pytest

from tests.conftest import TEST_DEVICES, matrix_backend
from xpnet.backend.devices import get_backend, to_numpy
from xpnet.errors import CheckpointError, XpnetError
from xpnet.network.gradcheck import check_gradients, numerical_gradients, relative_error
from xpnet.network.network import Network, NetworkConfig, one_hot

HIDDEN = {2: (50,), 3: (50, 50), 4: (50, 30, 20), 9: (50, 30, 20, 20, 10, 10, 10, 10)}


def _problem(d=20, n=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, 10, n)
    return X, y, one_hot(y, 10)


def _gradient_cases():
    """Every K, BN and lambda on NumPy (and CuPy); the strict namespaces, slower, check
    K = 2, 3, 4 at lambda 0.01 (each backend's own training step either way)."""
    for device in TEST_DEVICES:
        for K in (2, 3, 4, 9):
            for bn in (True, False):
                for lam in (0.0, 0.01):
                    if device.startswith("strict") and (K == 9 or lam == 0.0):
                        continue
                    yield pytest.param(device, K, bn, lam,
                                       id=f"{device}-K{K}-{'bn' if bn else 'nobn'}-lam{lam:g}")


@pytest.mark.parametrize("device, K, batch_norm, lam", list(_gradient_cases()))
def test_gradients_match_numerical_to_1e6(device, K, batch_norm, lam):
    """On every backend, the step that backend trains with (numpy_step on the CPU)."""
    X, _, Y = _problem()
    config = NetworkConfig(d_in=20, hidden=HIDDEN[K], norm="batch" if batch_norm else None)
    net = Network.create(config,
                         seeds=K, lam=lam, dtype="float64", device=matrix_backend(device))
    report = check_gradients(net, X, Y)
    assert {r.name for r in report} == set(net.params)
    worst = max(report, key=lambda r: r.max_rel_error)
    assert worst.max_rel_error <= 1e-6, worst
    assert all(r.share_below == 1.0 for r in report)


def test_gradcheck_catches_a_wrong_gradient_in_the_training_step(backend):
    """The check must fail when the step a backend trains with is wrong (here: dgamma)."""
    def broken(net, X, Y, **kwargs):
        loss, grads = backend.data_gradients(net, X, Y, **kwargs)
        grads["gamma1"] = grads["gamma1"] * 1.01
        return loss, grads

    X, _, Y = _problem()
    net = Network.create(NetworkConfig(d_in=20, hidden=(30, 20)), seeds=0, dtype="float64",
                         device=dataclasses.replace(backend, data_gradients=broken))
    report = {r.name: r.max_rel_error for r in check_gradients(net, X, Y)}
    assert report["gamma1"] > 1e-3
    assert report["W1"] <= 1e-6


def test_gradcheck_catches_a_wrong_layer_backward():
    """A broken batch-norm backward in the array-API reference step fails the check."""
    from xpnet.nn import layers

    X, _, Y = _problem()
    net = Network.create(NetworkConfig(d_in=20, hidden=(30, 20)), seeds=0, dtype="float64",
                         device="strict")
    original = layers.batchnorm_backward

    def broken(dout, cache, xp=None):
        ds, dgamma, dbeta = original(dout, cache, xp=xp)
        return dout * cache[1] * cache[2], dgamma, dbeta  # forgets the batch statistics

    try:
        layers.batchnorm_backward = broken
        report = check_gradients(net, X, Y)
    finally:
        layers.batchnorm_backward = original
    assert max(r.max_rel_error for r in report) > 1e-2


def test_relative_error_floor():
    assert relative_error(np.array([0.0]), np.array([0.0]))[0] == 0.0
    assert relative_error(np.array([1.0]), np.array([1.1]))[0] == pytest.approx(0.1 / 2.1)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_numpy_and_array_api_strict_agree_to_1e12(batch_norm):
    X, _, Y = _problem(d=30, n=16, seed=4)
    results = {}
    for device in ("cpu", "strict"):
        be = get_backend(device)
        config = NetworkConfig(d_in=30, hidden=(20, 15), norm="batch" if batch_norm else None)
        net = Network.create(config,
                             seeds=[1, 2], lam=[0.0, 0.01], device=be, dtype="float64")
        loss, cost, grads = net.loss_and_gradients(be.asarray(X), be.asarray(Y))
        results[device] = (to_numpy(loss), to_numpy(cost),
                           {k: to_numpy(v) for k, v in grads.items()})
    (l1, c1, g1), (l2, c2, g2) = results["cpu"], results["strict"]
    np.testing.assert_allclose(l1, l2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c1, c2, rtol=1e-12, atol=1e-12)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-12, err_msg=k)


def test_lockstep_models_equal_models_run_one_by_one(backend, dtype):
    X, _, Y = _problem(d=25, n=12, seed=5)
    config = NetworkConfig(d_in=25, hidden=(16, 8))
    seeds, lams = [3, 4, 5], [0.0, 0.001, 0.1]
    Xd, Yd = backend.asarray(X, dtype=dtype), backend.asarray(Y, dtype=dtype)
    rtol, atol = (1e-12, 1e-14) if dtype == "float64" else (1e-4, 1e-6)
    together = Network.create(config, seeds=seeds, lam=lams, device=backend, dtype=dtype)
    loss, cost, grads = together.loss_and_gradients(Xd, Yd)
    for m, (seed, lam) in enumerate(zip(seeds, lams, strict=True)):
        alone = Network.create(config, seeds=seed, lam=lam, device=backend, dtype=dtype)
        l1, c1, g1 = alone.loss_and_gradients(Xd, Yd)
        np.testing.assert_allclose(to_numpy(loss)[m], to_numpy(l1)[0], rtol=rtol)
        np.testing.assert_allclose(to_numpy(cost)[m], to_numpy(c1)[0], rtol=rtol)
        for k in g1:
            np.testing.assert_allclose(to_numpy(grads[k])[m], to_numpy(g1[k])[0],
                                       rtol=100 * rtol, atol=atol, err_msg=k)
        for k in alone.buffers:
            np.testing.assert_allclose(to_numpy(together.buffers[k])[m],
                                       to_numpy(alone.buffers[k])[0], rtol=rtol)


def test_per_model_inputs_match_shared_input():
    X, _, Y = _problem(d=10, n=8)
    net = Network.create(NetworkConfig(d_in=10, hidden=(6,)), seeds=[0, 1], dtype="float64")
    l_shared, _, g_shared = net.loss_and_gradients(X, Y, update_stats=False)
    Xm, Ym = np.stack([X, X]), np.stack([Y, Y])
    l_each, _, g_each = net.loss_and_gradients(Xm, Ym, update_stats=False)
    np.testing.assert_allclose(l_shared, l_each, rtol=1e-13)
    for k in g_shared:
        np.testing.assert_allclose(g_shared[k], g_each[k], rtol=1e-12, atol=1e-15)


def test_numerical_gradients_of_two_models_are_their_own():
    X, _, Y = _problem(d=6, n=5)
    net = Network.create(NetworkConfig(d_in=6, hidden=(4,)), seeds=[0, 1], lam=[0.0, 0.5],
                         dtype="float64")
    _, _, analytic = net.loss_and_gradients(X, Y, update_stats=False)
    numeric = numerical_gradients(net, X, Y)
    for k in analytic:
        np.testing.assert_allclose(analytic[k], numeric[k], rtol=1e-7, atol=1e-11)


def test_same_seed_gives_same_weights_on_every_device(backend):
    a = Network.create(NetworkConfig(d_in=8, hidden=(4,)), seeds=7, device=backend,
                       dtype="float64")
    b = Network.create(NetworkConfig(d_in=8, hidden=(4,)), seeds=[9, 7], device="cpu",
                       dtype="float64")
    np.testing.assert_array_equal(to_numpy(a.params["W1"])[0], to_numpy(b.params["W1"])[1])


@pytest.mark.parametrize("init,expected", [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(1 / 400))])
def test_init_scales(init, expected):
    net = Network.create(NetworkConfig(d_in=400, hidden=(300,), init=init), seeds=0,
                         dtype="float64")
    assert np.std(to_numpy(net.params["W1"])) == pytest.approx(expected, rel=0.02)


def test_normal_init_uses_per_model_sigma():
    net = Network.create(NetworkConfig(d_in=400, hidden=(300,), init="normal"),
                         sigma=[1e-1, 1e-4], seeds=0, dtype="float64")
    W = to_numpy(net.params["W1"])
    assert np.std(W[0]) == pytest.approx(1e-1, rel=0.02)
    assert np.std(W[1]) == pytest.approx(1e-4, rel=0.02)


def test_bad_configs_raise_user_errors():
    with pytest.raises(XpnetError):
        NetworkConfig(init="orthogonal")
    with pytest.raises(XpnetError):
        Network.create(NetworkConfig(init="normal"), seeds=0)
    with pytest.raises(XpnetError):
        Network.create(NetworkConfig(), seeds=[0, 1], lam=[0.1, 0.2, 0.3])
    with pytest.raises(XpnetError):
        Network.create(NetworkConfig(), lam=-1.0)


def test_output_layer_is_linear_softmax_for_k1():
    net = Network.create(NetworkConfig(d_in=5, hidden=()), seeds=0, dtype="float64")
    assert set(net.params) == {"W1", "b1"}
    X, _, Y = _problem(d=5, n=4)
    report = check_gradients(net, X, Y)
    assert max(r.max_rel_error for r in report) <= 1e-6


def test_checkpoint_round_trip(tmp_path, backend):
    X, y, Y = _problem(d=12, n=20)
    net = Network.create(NetworkConfig(d_in=12, hidden=(8, 6)), seeds=[0, 1], lam=[0.0, 0.1],
                         device=backend, dtype="float64")
    net.loss_and_gradients(backend.asarray(X), backend.asarray(Y))  # moves running stats
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = Network.load(path, device="cpu")
    assert loaded.config == net.config and loaded.n_models == 2
    before = net.evaluate(backend.asarray(X), backend.asarray(y), backend.asarray(Y))
    after = loaded.evaluate(X, y, Y)
    for k in before:
        np.testing.assert_allclose(to_numpy(before[k]), to_numpy(after[k]), rtol=1e-12)


def test_checkpoint_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="not a readable xpnet checkpoint .*pickled"):
        Network.load(path)


def test_checkpoint_refuses_garbage(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError):
        Network.load(path)


def test_per_model_eps_in_lockstep_equals_one_net_per_eps():
    be = get_backend("cpu")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 6)) * 1e-2
    config = NetworkConfig(d_in=6, hidden=(5, 4), n_classes=3, init="normal")
    eps = [1e-3, 1e-5, 1e-8]
    net = Network.create(config, seeds=[0, 0, 0], sigma=1e-3, bn_eps=eps, device=be,
                         dtype="float64")
    assert to_numpy(net.bn_eps).tolist() == eps
    scores, _ = net.forward(X, train=True)
    for m, e in enumerate(eps):
        alone = Network.create(NetworkConfig(**{**config.to_dict(), "bn_eps": e}), seeds=0,
                               sigma=1e-3, device=be, dtype="float64")
        np.testing.assert_allclose(to_numpy(scores)[m], to_numpy(alone.forward(X)[0])[0],
                                   rtol=1e-12, atol=1e-300)
    default = Network.create(config, seeds=[0, 1], sigma=1e-3, device=be)
    assert to_numpy(default.bn_eps).tolist() == pytest.approx([1e-5, 1e-5])


def test_per_model_eps_survives_a_checkpoint(tmp_path):
    net = Network.create(NetworkConfig(d_in=4, hidden=(3,), n_classes=2), seeds=[0, 1],
                         bn_eps=[1e-3, 1e-8])
    net.save(tmp_path / "net.npz")
    loaded = Network.load(tmp_path / "net.npz")
    assert loaded.bn_eps_host.tolist() == [1e-3, 1e-8]
