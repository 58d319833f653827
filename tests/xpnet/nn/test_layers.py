"""Layer forward/backward pairs on every backend of the namespace matrix."""


import numpy as np
import pytest

from tests.conftest import ATOL, RTOL
from xpnet.backend.devices import to_numpy
from xpnet.nn import layers, registry


def _arrays(backend, dtype, *host):
    return [backend.asarray(a, dtype=dtype) for a in host]


def test_dense_forward_backward_shapes_and_values(backend, dtype):
    rng = np.random.default_rng(0)
    x, W, b, dout = (rng.standard_normal(s) for s in [(2, 5, 4), (2, 4, 3), (2, 1, 3),
                                                       (2, 5, 3)])
    xd, Wd, bd, doutd = _arrays(backend, dtype, x, W, b, dout)
    out, cache = layers.dense_forward(xd, Wd, bd)
    np.testing.assert_allclose(to_numpy(out), x @ W + b, rtol=RTOL[dtype])
    dx, dW, db = layers.dense_backward(doutd, cache)
    np.testing.assert_allclose(to_numpy(dx), dout @ W.transpose(0, 2, 1), rtol=RTOL[dtype])
    np.testing.assert_allclose(to_numpy(dW), x.transpose(0, 2, 1) @ dout, rtol=RTOL[dtype])
    np.testing.assert_allclose(to_numpy(db), dout.sum(axis=1, keepdims=True), rtol=RTOL[dtype])


def test_dense_shared_input_broadcasts_over_models(backend, dtype):
    rng = np.random.default_rng(1)
    x, W, dout = rng.standard_normal((5, 4)), rng.standard_normal((3, 4, 2)), \
        rng.standard_normal((3, 5, 2))
    xd, Wd, doutd = _arrays(backend, dtype, x, W, dout)
    out, cache = layers.dense_forward(xd, Wd)
    assert tuple(out.shape) == (3, 5, 2)
    dx, dW, db = layers.dense_backward(doutd, cache, need_dx=False, need_db=False)
    assert dx is None and db is None
    for m in range(3):
        np.testing.assert_allclose(to_numpy(dW)[m], x.T @ dout[m], rtol=RTOL[dtype])


def test_batchnorm_train_normalises_and_updates_running_stats(backend, dtype):
    rng = np.random.default_rng(2)
    s = rng.standard_normal((2, 50, 4)) * 3.0 + 1.5
    gamma, beta = np.ones((2, 1, 4)), np.zeros((2, 1, 4))
    rm, rv = np.zeros((2, 1, 4)), np.ones((2, 1, 4))
    out, _, new_m, new_v = layers.batchnorm_forward(
        *_arrays(backend, dtype, s, gamma, beta, rm, rv), train=True, momentum=0.9, eps=0.0
    )
    out = to_numpy(out)
    np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=ATOL[dtype])
    np.testing.assert_allclose(out.var(axis=1), 1.0, rtol=RTOL[dtype])
    np.testing.assert_allclose(to_numpy(new_m), 0.1 * s.mean(axis=1, keepdims=True),
                               rtol=RTOL[dtype])
    np.testing.assert_allclose(to_numpy(new_v), 0.9 + 0.1 * s.var(axis=1, keepdims=True),
                               rtol=RTOL[dtype])


def test_batchnorm_eval_uses_running_stats(backend, dtype):
    s = np.arange(12, dtype=float).reshape(1, 3, 4)
    gamma, beta = np.full((1, 1, 4), 2.0), np.full((1, 1, 4), 0.5)
    rm, rv = np.full((1, 1, 4), 1.0), np.full((1, 1, 4), 4.0)
    out, _, m2, v2 = layers.batchnorm_forward(*_arrays(backend, dtype, s, gamma, beta, rm, rv),
                                               train=False, eps=0.0)
    np.testing.assert_allclose(to_numpy(out), 2.0 * (s - 1.0) / 2.0 + 0.5)
    np.testing.assert_allclose(to_numpy(m2), rm)
    np.testing.assert_allclose(to_numpy(v2), rv)


@pytest.mark.parametrize("name, out, grad", [
    ("relu", [0.0, 0.0, 2.0], [0.0, 0.0, 1.0]),
    ("leaky_relu", [-0.25, 0.0, 2.0], [0.25, 0.25, 1.0]),
    ("tanh", np.tanh([-1.0, 0.0, 2.0]), 1.0 - np.tanh([-1.0, 0.0, 2.0]) ** 2),
    ("elu", [np.expm1(-1.0), 0.0, 2.0], [np.exp(-1.0), 1.0, 1.0]),
])
def test_activation_pairs(name, out, grad, backend, dtype):
    entry = registry.activation(name)
    options = {"leaky_slope": backend.asarray(np.full((1, 1, 1), 0.25), dtype=dtype)} \
        if name == "leaky_relu" else {}
    s, = _arrays(backend, dtype, np.array([[[-1.0, 0.0, 2.0]]]))
    result, cache = entry.forward(s, xp=backend.xp, **options)
    np.testing.assert_allclose(to_numpy(result), [[out]], rtol=RTOL[dtype])
    dout, = _arrays(backend, dtype, np.ones((1, 1, 3)))
    np.testing.assert_allclose(to_numpy(entry.backward(dout, cache, xp=backend.xp)), [[grad]],
                               rtol=RTOL[dtype], atol=ATOL[dtype])


def test_softmax_cross_entropy_matches_direct_formula(backend, dtype):
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((2, 6, 4)) * 5
    y = rng.integers(0, 4, 6)
    Y = np.eye(4)[y]
    loss, dscores = layers.softmax_cross_entropy(*_arrays(backend, dtype, scores, Y))
    p = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    np.testing.assert_allclose(to_numpy(loss), -np.log(p[:, np.arange(6), y]).mean(-1),
                               rtol=RTOL[dtype])
    np.testing.assert_allclose(to_numpy(dscores), (p - Y) / 6, rtol=RTOL[dtype], atol=ATOL[dtype])


def test_softmax_cross_entropy_is_stable_for_huge_scores(backend, dtype):
    scores = np.array([[[1e4, 0.0, -1e4]]])
    loss, _ = layers.softmax_cross_entropy(
        *_arrays(backend, dtype, scores, np.array([[1.0, 0, 0]]))
    )
    assert np.isfinite(to_numpy(loss)).all()
    assert to_numpy(loss)[0] == pytest.approx(0.0, abs=ATOL[dtype])


@pytest.mark.parametrize("shared", [True, False], ids=["shared-2d-x", "per-model-3d-x"])
def test_dense_backward_gives_a_contiguous_weight_gradient(shared):
    """The optimizer adds gradients into the flat parameters (xpnet.step.flat): a transposed
    dW would be copied first, a hidden pass over (for the first layer) the largest one."""
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 8) if shared else (2, 6, 8))
    W, dout = rng.standard_normal((2, 8, 3)), rng.standard_normal((2, 6, 3))
    dx, dW, _ = layers.dense_backward(dout, (x, W), need_db=False, xp=xp)
    assert dW.flags.c_contiguous and dW.shape == (2, 8, 3)
    np.testing.assert_allclose(dW, np.swapaxes(x, -1, -2) @ dout, rtol=1e-12)
    np.testing.assert_allclose(dx, dout @ np.swapaxes(W, -1, -2), rtol=1e-12)
    # The first layer's (the flat layout's transposed head): the transpose is contiguous.
    dx, dW, _ = layers.dense_backward(dout, (x, W), need_dx=False, need_db=False, xp=xp,
                                      head=True)
    assert dx is None and dW.shape == (2, 8, 3) and np.swapaxes(dW, -1, -2).flags.c_contiguous
    np.testing.assert_allclose(dW, np.swapaxes(x, -1, -2) @ dout, rtol=1e-12)
