"""The NumPy-specialised step agrees with the array-API reference implementation."""

import dataclasses

import numpy as np
import pytest

from xpnet.backend import numpy_step
from xpnet.backend.devices import get_backend
from xpnet.network.network import Network, NetworkConfig, one_hot
from xpnet.step import backprop


@pytest.mark.parametrize("hidden", [(), (12,), (12, 8, 6)])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("per_model_input", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
def test_numpy_step_matches_generic_step(hidden, batch_norm, per_model_input, scaled):
    rng = np.random.default_rng(len(hidden) + 10 * batch_norm)
    M, n, d = 3, 16, 10
    X = rng.standard_normal((M, n, d) if per_model_input else (n, d))
    Y = one_hot(rng.integers(0, 5, n), 5)
    scale = -rng.uniform(0.01, 0.1, (M, 1, 1)) if scaled else None
    config = NetworkConfig(d_in=d, hidden=hidden, n_classes=5,
                           norm="batch" if batch_norm else None)
    nets = [Network.create(config, seeds=[1, 2, 3], lam=0.01, dtype="float64")
            for _ in range(2)]
    fast_loss, fast = numpy_step.loss_and_data_gradients(nets[0], X, Y, scale=scale)
    ref_loss, ref = backprop.loss_and_data_gradients(nets[1], X, Y, scale=scale)
    np.testing.assert_allclose(fast_loss, ref_loss, rtol=1e-12)
    assert set(fast) == set(ref)
    for name in ref:
        assert fast[name].shape == ref[name].shape, name
        np.testing.assert_allclose(fast[name], ref[name], rtol=1e-10, atol=1e-14, err_msg=name)
    for name in nets[1].buffers:
        np.testing.assert_allclose(nets[0].buffers[name], nets[1].buffers[name], rtol=1e-12)


def test_numpy_step_leaves_stats_alone_when_asked():
    config = NetworkConfig(d_in=6, hidden=(4,), n_classes=3)
    net = Network.create(config, seeds=0, dtype="float64")
    before = {k: v.copy() for k, v in net.buffers.items()}
    X = np.random.default_rng(0).standard_normal((8, 6))
    numpy_step.loss_and_data_gradients(net, X, one_hot(np.arange(8) % 3, 3),
                                       update_stats=False)
    for k in before:
        np.testing.assert_array_equal(net.buffers[k], before[k])


def test_the_cpu_backend_trains_with_the_numpy_step():
    """Design rule 2: the backend carries its step; the core names no backend."""
    assert get_backend("cpu").data_gradients is numpy_step.loss_and_data_gradients
    assert get_backend("strict").data_gradients is backprop.loss_and_data_gradients


def test_networks_train_with_their_backends_step():
    calls = []
    be = get_backend("cpu")
    spy = dataclasses.replace(be, data_gradients=lambda *a, **k: calls.append(1) or (0.0, {}))
    net = Network.create(NetworkConfig(d_in=4, hidden=(3,), n_classes=2), seeds=0, device=spy)
    net.loss_and_data_gradients(np.zeros((2, 4), np.float32), np.eye(2, dtype=np.float32))
    net.loss_and_gradients(np.zeros((2, 4), np.float32), np.eye(2, dtype=np.float32))
    assert calls == [1, 1]
