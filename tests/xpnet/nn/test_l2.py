"""The L2 convention holds in the training step: a wrong factor anywhere fails here by name.

One batch is the whole (tiny) training set, so the step's batch order is irrelevant and
each step must equal ``W - eta * v`` with ``v`` built from ``Network.loss_and_gradients``
(which includes the L2 gradient from ``xpnet.nn.l2``) with torch's momentum semantics.
"""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import ConstantLR, Network, NetworkConfig, TrainConfig, one_hot
from xpnet.nn import l2
from xpnet.training import DeviceSplit, train


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["sgd", "momentum"])
@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "nobn"])
def test_training_steps_equal_w_minus_eta_grad(momentum, batch_norm):
    rng = np.random.default_rng(0)
    n, d, steps, eta = 24, 8, 3, 0.05
    X, y = rng.standard_normal((n, d)), rng.integers(0, 3, n)
    config = NetworkConfig(d_in=d, hidden=(6, 5), n_classes=3,
                           norm="batch" if batch_norm else None)
    net, ref = (Network.create(config, seeds=[1, 2], lam=[0.01, 0.3], dtype="float64")
                for _ in range(2))
    velocity = {k: np.zeros_like(v) for k, v in ref.params.items()}
    for _ in range(steps):
        _, _, grads = ref.loss_and_gradients(X, one_hot(y, 3))
        for name, g in grads.items():
            velocity[name] = momentum * velocity[name] + g
            ref.params[name] = ref.params[name] - eta * velocity[name]

    split = DeviceSplit.from_host(net.backend, X, y, 3, "float64")
    train(net, ConstantLR(eta=eta, steps=steps, cycle_length=steps), split, None,
          TrainConfig(batch_size=n, momentum=momentum, evals_per_cycle=1), progress=False)
    for name in ref.params:
        np.testing.assert_allclose(net.params[name], ref.params[name], rtol=1e-10,
                                   atol=1e-13, err_msg=name)


def test_the_l2_gradient_is_the_derivative_of_the_penalty():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((2, 4, 3))
    lam = np.array([0.1, 2.0])
    h = 1e-6
    E = np.zeros_like(W)
    E[1, 2, 0] = h
    numeric = (l2.penalty(lam, {"W1": W + E}, np) - l2.penalty(lam, {"W1": W - E}, np)) / (2 * h)
    analytic = l2.gradient_factor(lam)[1] * W[1, 2, 0]
    assert numeric[1] == pytest.approx(analytic, rel=1e-8)
    assert numeric[0] == pytest.approx(0.0, abs=1e-8)
    assert l2.is_penalised("W3") and not l2.is_penalised("b3") and not l2.is_penalised("gamma1")
