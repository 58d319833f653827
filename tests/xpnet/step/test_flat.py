"""One update over all parameters (xpnet.step.flat) and the per-step factors (xpnet.step.rates):
the flat path computes exactly what the entry-by-entry path computes, on every library."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TEST_DEVICES, matrix_backend, torch_or_skip
from xpnet import to_numpy
from xpnet.backend.devices import get_backend
from xpnet.network.network import Network, NetworkConfig
from xpnet.step.rates import StepRates
from xpnet.training.optim import SGD, Adam, AdamW

CONFIG = NetworkConfig(d_in=6, hidden=(5, 4), n_classes=3, norm="batch")


@pytest.fixture(params=[*TEST_DEVICES, "torch"])
def any_backend(request):
    """The namespace matrix (CuPy where the GPU job names it) and PyTorch."""
    if request.param == "torch":
        torch_or_skip()
        return get_backend("torch")
    return matrix_backend(request.param)


def test_parameters_are_views_of_one_array_weights_first(any_backend):
    net = Network.create(CONFIG, seeds=[1, 2], lam=0.1, device=any_backend, dtype="float64")
    flat = net.flat_params
    layout = flat.layout
    assert layout.names[:3] == ("W1", "W2", "W3")
    assert layout.n_decayed == 6 * 5 + 5 * 4 + 4 * 3
    assert layout.size == layout.n_decayed + 3 + 2 * (5 + 4)  # b3, gamma and beta
    head, tail = flat.parts
    assert tuple(head.shape) == (2, 1, layout.n_head) and flat.current(net.params)
    assert tuple(tail.shape) == (2, 1, layout.size - layout.n_head)
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    for region in layout.decayed_parts(flat.parts):
        region *= 2.0  # through the flat arrays: every weight matrix, nothing else
    for name, value in net.params.items():
        factor = 2.0 if name.startswith("W") else 1.0
        np.testing.assert_array_equal(to_numpy(value), factor * before[name], err_msg=name)


def test_the_head_gradient_is_added_as_it_is_the_others_laid_side_by_side():
    """W1's gradient, the step's largest, is not copied to lay it beside the others."""
    import array_api_compat.numpy as xp

    net = Network.create(CONFIG, seeds=[1, 2], device="cpu")
    layout = net.flat_params.layout
    grads = {k: np.ones_like(v) for k, v in net.params.items()}
    (head, all_of_it), (tail, n_decayed) = layout.gradient_parts(xp, grads)
    assert np.shares_memory(head, grads["W1"]) and all_of_it == -1
    assert tail.shape == (2, 1, layout.size - layout.n_head)
    assert n_decayed == 5 * 4 + 4 * 3 and layout.n_head == 6 * 5
    head_part, tail_part = net.flat_params.parts
    assert head_part.shape == (2, 1, 30) and np.shares_memory(head_part, net.params["W1"])
    assert tail_part.shape == tail.shape and np.shares_memory(tail_part, net.params["W2"])


def test_a_replaced_entry_makes_the_flat_array_stale():
    net = Network.create(CONFIG, seeds=[1, 2], device="cpu")
    assert net.flat_params.current(net.params)
    net.params["b3"] = net.params["b3"] + 1.0
    assert not net.flat_params.current(net.params)


def _grads(net, seed):
    rng = np.random.default_rng(seed)
    return {k: net.backend.asarray(rng.standard_normal(tuple(v.shape)), dtype=net.dtype)
            for k, v in net.params.items()}


@pytest.mark.parametrize("options", [SGD(), SGD(momentum=(0.5, 0.9)), Adam(),
                                     AdamW(weight_decay=(0.1, 0.01))],
                         ids=["sgd", "momentum", "adam", "adamw"])
def test_the_flat_update_equals_the_update_entry_by_entry(any_backend, options):
    """The same steps with the flat array held (one update) and withheld (per entry)."""
    nets = [Network.create(CONFIG, seeds=[3, 4], lam=[0.1, 0.0], device=any_backend,
                           dtype="float64") for _ in range(2)]
    updates = [options.build(net) for net in nets]
    eta = nets[0].backend.asarray(np.array([0.1, 0.02])[:, None, None], dtype=nets[0].dtype)
    for step in range(3):
        for net, update, use_flat in zip(nets, updates, (True, False), strict=True):
            grads = _grads(net, step)
            flat = net.flat_params if use_flat else None
            if update.prescaled:
                shrink = 1.0 - eta * update.decay
                update.step_prescaled(net.params, {k: -eta * g for k, g in grads.items()},
                                      shrink=shrink, flat=flat)
            else:
                update.step(net.params, grads, eta, flat=flat)
    for name in nets[0].params:
        np.testing.assert_array_equal(to_numpy(nets[0].params[name]),
                                      to_numpy(nets[1].params[name]), err_msg=name)
    assert nets[0].flat_params.current(nets[0].params)


def test_take_models_keeps_the_layout_and_the_optimizer_state_flat():
    net = Network.create(CONFIG, seeds=[1, 2, 3], lam=0.1, device="cpu")
    update = Adam().build(net)
    update.step(net.params, _grads(net, 0), 0.1, flat=net.flat_params)
    m_before = [to_numpy(part).copy() for part in update._m_flat]
    net.take_models(np.array([2, 0]))
    update.take_models(np.array([2, 0]))
    assert net.flat_params.current(net.params)
    assert [part.shape[0] for part in net.flat_params.parts] == [2, 2]
    for part, before in zip(update._m_flat, m_before, strict=True):
        np.testing.assert_array_equal(to_numpy(part), before[[2, 0]])
    assert all(any(np.shares_memory(update.m[k], part) for part in update._m_flat)
               for k in update.m)
    update.step(net.params, _grads(net, 1), 0.1, flat=net.flat_params)  # still the flat path
    assert np.shares_memory(net.params["W1"], net.flat_params.parts[0])


def test_step_rates_fold_the_batch_size_and_the_decay_on_the_host():
    backend = get_backend("cpu")
    rates = np.array([[0.1, 0.2], [0.3, 0.4]])  # (T, M)
    sr = StepRates(rates, batch_size=10, prescaled=True, decay=np.array([0.5, 0.0]),
                   backend=backend, dtype=np.float64)
    sr.start_epoch(0, 2)
    live = np.array([True, False])
    factor, shrink = sr.at(1, live)
    np.testing.assert_allclose(factor[:, 0, 0], [-0.3 / 10, 0.0])
    np.testing.assert_allclose(shrink[:, 0, 0], [1.0 - 0.3 * 0.5, 1.0])  # a dead model: 1
    sr.take(np.array([1]), np.array([1]))
    assert sr.at(0, np.array([True]))[0].shape == (1, 1, 1)
    np.testing.assert_allclose(sr.at(0, np.array([True]))[0][:, 0, 0], [-0.2 / 10])
    plain = StepRates(np.array([0.1, 0.3]), batch_size=10, prescaled=False, decay=None,
                      backend=backend, dtype=np.float64)
    plain.start_epoch(0, 2)
    eta, none = plain.at(1, np.array([True, True, False]))
    assert none is None and plain.table.shape == (2, 1, 1, 1)
    np.testing.assert_allclose(eta[:, 0, 0], [0.3, 0.3, 0.0])


def test_a_pickled_network_comes_back_laid_out_flat():
    import pickle

    net = Network.create(CONFIG, seeds=[1, 2], lam=0.1, device="cpu")
    back = pickle.loads(pickle.dumps(net))
    assert back.flat_params.current(back.params) and back.xp is net.xp
    assert back.averages is not None and np.shares_memory(back.buffers["mean1"],
                                                          back.averages.flat)
    for name, value in net.params.items():
        np.testing.assert_array_equal(back.params[name], value, err_msg=name)
