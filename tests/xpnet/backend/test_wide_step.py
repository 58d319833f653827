"""The first layer stored as the wide transposed head (xpnet.step.flat) and the NumPy step's
one wide product per shared batch: the same numbers as the reference step, no copy of the
head's gradient, exact take_models with repeated rows, and a user's own W1 still trains."""

from __future__ import annotations

import weakref

import array_api_compat.numpy as xp
import numpy as np
import pytest

from xpnet.backend import numpy_step
from xpnet.network.network import Network, NetworkConfig, one_hot
from xpnet.step import backprop

CONFIG = NetworkConfig(d_in=10, hidden=(6, 4), n_classes=5, norm="batch")


def _net(seeds=(1, 2, 3)):
    return Network.create(CONFIG, seeds=list(seeds), lam=[0.0, 0.01, 0.1][:len(seeds)],
                          dtype="float64")


def _batch(shared, M=3, n=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 10) if shared else (M, n, 10))
    return X, one_hot(rng.integers(0, 5, n), 5)


def test_w1_is_a_transposed_view_of_the_wide_head():
    net = _net()
    W1, head = net.params["W1"], net.flat_params.parts[0]
    assert W1.shape == (3, 10, 6) and np.shares_memory(W1, head) and head.flags.c_contiguous
    np.testing.assert_array_equal(head.reshape(3, 6, 10), W1.swapaxes(-1, -2))
    Wt = numpy_step._wide(W1)
    assert Wt.shape == (3 * 6, 10) and np.shares_memory(Wt, head)
    assert net.state_dict()["param/W1"].shape == (3, 10, 6)


@pytest.mark.parametrize("shared", [True, False])
def test_the_head_gradient_lines_up_with_the_head_without_a_copy(shared):
    net = _net()
    X, Y = _batch(shared)
    _, grads = numpy_step.loss_and_data_gradients(net, X, Y, update_stats=False)
    assert grads["W1"].shape == (3, 10, 6) and grads["W1"].swapaxes(-1, -2).flags.c_contiguous
    (head, _), _ = net.flat_params.layout.gradient_parts(xp, grads)
    assert np.shares_memory(head, grads["W1"])
    _, ref = backprop.loss_and_data_gradients(net, X, Y, update_stats=False)
    np.testing.assert_allclose(grads["W1"], ref["W1"], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("shared", [True, False])
def test_take_models_with_repeated_rows_is_exact_and_keeps_the_wide_layout(shared):
    net = _net()
    rows = np.array([2, 0, 0, 1], dtype=np.int64)
    before = {k: v.copy() for k, v in net.params.items()}
    X, Y = _batch(shared, M=3)
    _, old = numpy_step.loss_and_data_gradients(net, X, Y, update_stats=False)
    net.take_models(rows)
    for name, value in before.items():
        np.testing.assert_array_equal(net.params[name], value[rows], err_msg=name)
    assert net.flat_params.current(net.params)
    assert numpy_step._wide(net.params["W1"]) is not None
    Xm = X if shared else X[rows]
    _, new = numpy_step.loss_and_data_gradients(net, Xm, Y, update_stats=False)
    for name, grad in new.items():
        np.testing.assert_allclose(grad, old[name][rows], rtol=1e-12, atol=1e-15,
                                   err_msg=name)


def test_a_users_contiguous_w1_takes_the_batched_products():
    net = _net()
    net.params["W1"] = np.ascontiguousarray(net.params["W1"])
    assert numpy_step._wide(net.params["W1"]) is None
    X, Y = _batch(True)
    loss, grads = numpy_step.loss_and_data_gradients(net, X, Y, update_stats=False)
    ref_loss, ref = backprop.loss_and_data_gradients(net, X, Y, update_stats=False)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    for name in ref:
        np.testing.assert_allclose(grads[name], ref[name], rtol=1e-10, atol=1e-14,
                                   err_msg=name)


def test_the_gradient_buffer_is_reused_only_once_nothing_holds_it():
    net = _net()
    X, Y = _batch(True)
    _, held = numpy_step.loss_and_data_gradients(net, X, Y, update_stats=False)
    kept = held["W1"].copy()
    X2, _ = _batch(True, seed=1)
    _, other = numpy_step.loss_and_data_gradients(net, X2, Y, update_stats=False)
    np.testing.assert_array_equal(held["W1"], kept)  # the caller's gradient is its own
    assert not np.shares_memory(held["W1"], other["W1"])
    buffer = weakref.ref(other["W1"].base)  # a weak reference does not hold it
    del other
    _, again = numpy_step.loss_and_data_gradients(net, X2, Y, update_stats=False)
    assert again["W1"].base is buffer()  # the same array, written again
    _, fresh = numpy_step.loss_and_data_gradients(_net(), X2, Y, update_stats=False)
    np.testing.assert_allclose(again["W1"], fresh["W1"], rtol=1e-12)
