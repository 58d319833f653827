"""The layer registry: every entry through both steps, the gradient check and the matrix."""

import numpy as np
import pytest

from tests.conftest import matrix_backend
from xpnet.backend import numpy_step
from xpnet.backend.devices import get_backend, to_numpy
from xpnet.errors import XpnetError
from xpnet.network.gradcheck import check_gradients
from xpnet.network.network import Network, NetworkConfig, one_hot
from xpnet.nn import registry
from xpnet.nn.dropout import fixed_masks
from xpnet.step import backprop

NORMS = [None, *registry.NORMALIZATIONS]
ACTIVATIONS = list(registry.ACTIVATIONS)


def _problem(d=12, n=10, classes=5, seed=0, M=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d) if M is None else (M, n, d))
    return X, one_hot(rng.integers(0, classes, n), classes)


def _net(norm, activation, *, dropout=0.0, device="cpu", d=12, hidden=(10, 8), seeds=(1, 2, 3),
         dtype="float64", **kwargs):
    config = NetworkConfig(d_in=d, hidden=hidden, n_classes=5, norm=norm, activation=activation)
    return Network.create(config, seeds=list(seeds), lam=0.01, device=device, dtype=dtype,
                          leaky_slope=[0.01, 0.2, 0.5][:len(seeds)],
                          bn_eps=[1e-5, 1e-3, 1e-1][:len(seeds)], dropout=dropout, **kwargs)


def _both_steps(norm, activation, X, Y, *, dropout=0.0, scale=None):
    """(fast, reference) ``(loss, grads, buffers)`` from two identical nets."""
    out = []
    for step in (numpy_step, backprop):
        net = _net(norm, activation, dropout=dropout)
        masks = fixed_masks(net, X.shape[-2])
        loss, grads = step.loss_and_data_gradients(net, X, Y, scale=scale, masks=masks)
        out.append((loss, grads, net.buffers))
    return out


@pytest.mark.parametrize("norm", NORMS, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dropout", [0.0, [0.0, 0.2, 0.5]], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("per_model_input", [False, True], ids=["shared-x", "per-model-x"])
def test_every_entry_gives_the_same_numbers_in_both_steps(norm, activation, dropout,
                                                          per_model_input):
    X, Y = _problem(M=3 if per_model_input else None)
    scale = -np.random.default_rng(1).uniform(0.01, 0.1, (3, 1, 1))
    (fast_loss, fast, fast_buf), (ref_loss, ref, ref_buf) = _both_steps(
        norm, activation, X, Y, dropout=dropout, scale=scale)
    np.testing.assert_allclose(fast_loss, ref_loss, rtol=1e-12)
    assert set(fast) == set(ref)
    for name in ref:
        np.testing.assert_allclose(fast[name], ref[name], rtol=1e-10, atol=1e-14, err_msg=name)
    for name in ref_buf:
        np.testing.assert_allclose(fast_buf[name], ref_buf[name], rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("norm", NORMS, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_entry_passes_the_gradient_check(norm, activation):
    X, Y = _problem()
    net = _net(norm, activation)
    report = check_gradients(net, X, Y)
    assert {r.name for r in report} == set(net.params)
    worst = max(report, key=lambda r: r.max_rel_error)
    assert worst.max_rel_error <= 1e-6, worst


#: The new options on every library of the matrix: (norm, activation, dropout).
MATRIX_CASES = {
    "layer-relu": ("layer", "relu", 0.0),
    "batch-leaky": ("batch", "leaky_relu", 0.0),
    "none-tanh": (None, "tanh", 0.0),
    "batch-relu-dropout": ("batch", "relu", [0.0, 0.2, 0.5]),
    "layer-tanh-dropout": ("layer", "tanh", 0.3),
}


@pytest.mark.parametrize("case", list(MATRIX_CASES))
def test_new_options_pass_the_gradient_check_on_every_library(case, backend):
    norm, activation, dropout = MATRIX_CASES[case]
    X, Y = _problem()
    net = _net(norm, activation, dropout=dropout, device=backend)
    worst = max(check_gradients(net, X, Y), key=lambda r: r.max_rel_error)
    assert worst.max_rel_error <= 1e-6, worst


@pytest.mark.parametrize("case", list(MATRIX_CASES))
def test_new_options_give_numpys_numbers_on_every_library(case, backend):
    norm, activation, dropout = MATRIX_CASES[case]
    X, Y = _problem(seed=3)
    results = []
    for be in (get_backend("cpu"), backend):
        net = _net(norm, activation, dropout=dropout, device=be)
        masks = fixed_masks(net, X.shape[0])
        masks = None if masks is None else [be.asarray(m, dtype=net.dtype) for m in masks]
        loss, cost, grads = net.loss_and_gradients(be.asarray(X), be.asarray(Y), masks=masks)
        evaluated = net.evaluate(be.asarray(X), be.asarray(np.argmax(Y, 1)), be.asarray(Y))
        results.append((to_numpy(cost), {k: to_numpy(v) for k, v in grads.items()},
                        {k: to_numpy(v) for k, v in net.buffers.items()},
                        to_numpy(evaluated["loss"])))
    (c1, g1, b1, e1), (c2, g2, b2, e2) = results
    np.testing.assert_allclose(c2, c1, rtol=1e-12)
    np.testing.assert_allclose(e2, e1, rtol=1e-12)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-10, atol=1e-13, err_msg=k)
    for k in b1:
        np.testing.assert_allclose(b2[k], b1[k], rtol=1e-12, err_msg=k)


def test_layer_norm_uses_each_samples_statistics_in_train_and_eval(backend):
    config = NetworkConfig(d_in=12, hidden=(16,), n_classes=5, norm="layer", bn_eps=1e-12)
    net = Network.create(config, seeds=0, device=backend, dtype="float64")
    assert set(net.params) == {"W1", "gamma1", "beta1", "W2", "b2"} and net.buffers == {}
    X = backend.asarray(_problem(n=7)[0])
    (s, z), = net.layer_inputs(X)
    z = to_numpy(z)
    np.testing.assert_allclose(z.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.var(axis=-1), 1.0, rtol=1e-9)
    train_scores = to_numpy(net.forward(X, train=True)[0])
    np.testing.assert_array_equal(to_numpy(net.forward(X, train=False)[0]), train_scores)
    # One sample alone normalises as it does in the batch.
    np.testing.assert_allclose(to_numpy(net.forward(X[:1, ...], train=True)[0]),
                               train_scores[:, :1], rtol=1e-12)


def test_batch_norm_entry_keeps_todays_parameters_and_buffers():
    net = Network.create(NetworkConfig(d_in=6, hidden=(4, 3), n_classes=3), seeds=0)
    assert set(net.params) == {"W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3"}
    assert set(net.buffers) == {"mean1", "var1", "mean2", "var2"}
    assert NetworkConfig().batch_norm and not NetworkConfig(norm="layer").batch_norm


def test_leaky_relu_slope_is_per_model():
    s = np.array([[[-2.0, 3.0]], [[-2.0, 3.0]]])
    entry = registry.activation("leaky_relu")
    import array_api_compat.numpy as xp

    out, cache = entry.forward(s, xp=xp, leaky_slope=np.array([0.1, 0.5])[:, None, None])
    np.testing.assert_allclose(out, [[[-0.2, 3.0]], [[-1.0, 3.0]]])
    np.testing.assert_allclose(entry.backward(np.ones_like(s), cache, xp=xp),
                               [[[0.1, 1.0]], [[0.5, 1.0]]])


@pytest.mark.parametrize("bad, words", [
    (dict(norm="group"), "Unknown norm 'group'; use one of: 'batch', 'layer'"),
    (dict(activation="gelu"), "Unknown activation 'gelu'; use one of: 'relu', 'leaky_relu'"),
    (dict(dropout=1.0), "dropout must be a number in [0, 1)"),
    (dict(dropout=(0.1, -0.1)), "dropout must be a number in [0, 1)"),
    (dict(leaky_slope=float("nan")), "leaky_slope must be a number of at least 0"),
])
def test_config_refuses_unknown_names_and_bad_values_in_one_sentence(bad, words):
    with pytest.raises(XpnetError) as info:
        NetworkConfig(**bad)
    assert words in str(info.value) and str(info.value).count(". ") == 0


def test_a_registered_entry_is_a_name_the_config_accepts(softsign):
    assert NetworkConfig(activation="softsign").activation == "softsign"
    del registry.ACTIVATIONS["softsign"]
    with pytest.raises(XpnetError, match="Unknown activation 'softsign'"):
        NetworkConfig(activation="softsign")
    registry.register_activation(softsign)


def test_create_refuses_bad_dropout_overrides():
    with pytest.raises(XpnetError, match=r"dropout must be a number in \[0, 1\)"):
        Network.create(NetworkConfig(d_in=4, hidden=(3,)), dropout=[0.1, 1.5])


def test_per_model_options_survive_save_and_load(tmp_path):
    config = NetworkConfig(d_in=6, hidden=(5,), n_classes=3, norm="layer",
                           activation="leaky_relu")
    net = Network.create(config, seeds=[0, 1], leaky_slope=[0.1, 0.3], dropout=[0.0, 0.2],
                         dtype="float64")
    net.save(tmp_path / "net.npz")
    loaded = Network.load(tmp_path / "net.npz")
    for name in ("leaky_slope", "dropout", "bn_eps"):
        np.testing.assert_array_equal(loaded.per_model_host[name], net.per_model_host[name])
    X = np.random.default_rng(0).standard_normal((4, 6))
    np.testing.assert_array_equal(loaded.forward(X, train=False)[0],
                                  net.forward(X, train=False)[0])


def test_an_entry_needs_both_in_place_forms_or_neither():
    relu = registry.activation("relu")
    with pytest.raises(XpnetError, match="give both"):
        registry.Activation("half", relu.forward, relu.backward, numpy_forward=abs)
    with pytest.raises(XpnetError, match="registered already"):
        registry.register_activation(relu)


# ------------------------------------------------------------------ changeability
def _softsign_forward(s, *, xp):
    return s / (1.0 + xp.abs(s)), s


def _softsign_backward(dout, s, *, xp):
    root = 1.0 + xp.abs(s)
    return dout / (root * root)


@pytest.fixture
def softsign():
    """A toy activation registered for one test, through the public API only."""
    entry = registry.register_activation(
        registry.Activation("softsign", _softsign_forward, _softsign_backward))
    yield entry
    del registry.ACTIVATIONS["softsign"]


def test_a_new_activation_is_one_registry_entry(softsign):
    """No other edit: both steps agree, the check passes, the matrix runs it."""
    X, Y = _problem()
    (fast_loss, fast, _), (ref_loss, ref, _) = _both_steps("batch", "softsign", X, Y,
                                                           dropout=0.2)
    np.testing.assert_allclose(fast_loss, ref_loss, rtol=1e-12)
    for name in ref:
        np.testing.assert_allclose(fast[name], ref[name], rtol=1e-10, atol=1e-14, err_msg=name)
    for device in ("cpu", "strict-device1"):
        net = _net("layer", "softsign", device=matrix_backend(device))
        worst = max(check_gradients(net, X, Y), key=lambda r: r.max_rel_error)
        assert worst.max_rel_error <= 1e-6, worst
    # Its forward is what runs: the scores are the softsign net's, by hand.
    net = _net(None, "softsign")
    h = X
    for l in (1, 2, 3):
        h = h @ net.params[f"W{l}"] + net.params[f"b{l}"]
        h = h / (1 + np.abs(h)) if l < 3 else h
    np.testing.assert_allclose(net.forward(X, train=False)[0], h, rtol=1e-12)


def test_the_numpy_step_takes_in_place_forms_where_an_entry_has_them(monkeypatch):
    """relu's reference forward never runs in the NumPy step; an entry without in-place
    forms (leaky_relu) runs its reference forward there."""
    import dataclasses

    calls = []

    def refuse(*args, **kwargs):
        raise AssertionError("reference form called")

    def counted(s, **kwargs):
        calls.append(s.shape)
        return registry.activation("leaky_relu").forward(s, **kwargs)

    X, Y = _problem()
    monkeypatch.setitem(registry.ACTIVATIONS, "relu", dataclasses.replace(
        registry.activation("relu"), forward=refuse, backward=refuse))
    numpy_step.loss_and_data_gradients(_net("batch", "relu"), X, Y)
    monkeypatch.setitem(registry.ACTIVATIONS, "counted", registry.Activation(
        "counted", counted, registry.activation("leaky_relu").backward,
        options=("leaky_slope",)))
    numpy_step.loss_and_data_gradients(_net("batch", "counted"), X, Y)
    assert calls == [(3, 10, 10), (3, 10, 8)]
