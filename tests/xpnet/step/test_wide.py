"""The wide first layer (xpnet.step.wide) equals the per-model products, on every backend."""

import numpy as np

from tests.conftest import ATOL, RTOL
from xpnet.backend.devices import to_numpy
from xpnet.step.wide import stacked_weights, wide_forward, wide_weight_grad, wide_weights


def test_wide_products_equal_the_per_model_ones(backend, dtype):
    rng = np.random.default_rng(0)
    k, n, d, h = 3, 5, 4, 2
    x, W, dout = (rng.standard_normal(s) for s in [(n, d), (k, d, h), (k, n, h)])
    xd, Wd, doutd = (backend.asarray(a, dtype=dtype) for a in (x, W, dout))
    Wt = wide_weights(Wd)
    assert tuple(Wt.shape) == (k * h, d)
    np.testing.assert_array_equal(to_numpy(stacked_weights(Wt, k)), to_numpy(Wd))
    out = wide_forward(xd, Wt, k)
    dWt = wide_weight_grad(xd, doutd)
    assert tuple(out.shape) == (k, n, h) and tuple(dWt.shape) == (k * h, d)
    dW = to_numpy(stacked_weights(dWt, k))
    for m in range(k):
        np.testing.assert_allclose(to_numpy(out)[m], x @ W[m], rtol=RTOL[dtype],
                                   atol=ATOL[dtype])
        np.testing.assert_allclose(dW[m], x.T @ dout[m], rtol=RTOL[dtype], atol=ATOL[dtype])


def test_wide_weights_are_a_copy_of_the_per_model_ones(backend):
    W = backend.asarray(np.ones((2, 3, 4)), dtype="float64")
    Wt = wide_weights(W)
    Wt += 1.0  # the wide update is one in-place operation...
    np.testing.assert_array_equal(to_numpy(W), 1.0)  # ...which leaves W alone
    np.testing.assert_array_equal(to_numpy(stacked_weights(Wt, 2)), 2.0)
