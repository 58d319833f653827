"""PyTorch tensors through the unchanged array-API path: the same numbers as NumPy.

The namespace matrix of ``conftest.py`` already runs the core's tests on ``torch``; this
file pins the agreement with NumPy down to the tolerances the design promises (float64
cost and gradients to 1e-12, 50 float32 training steps to 1e-6) and checks the device
flags' user-facing errors.  Gradients are ours: no tensor here requires grad.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conftest import block_import, torch_or_skip
from tests.problems import blobs
from xpnet.backend.devices import get_backend, to_numpy
from xpnet.errors import BackendError
from xpnet.network.network import Network, NetworkConfig, one_hot
from xpnet.search.sweep import train_lockstep
from xpnet.training import DeviceSplit, TrainConfig, train
from xpnet.training.schedules import CyclicalLR

torch = torch_or_skip()


def _problem(d=30, n=16, classes=10, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, classes, n)
    return X, y, one_hot(y, classes)


def _blobs(n=200, d=20, classes=4, seed=0):
    return blobs(n, d, classes, seed, spread=2.0)


def test_torch_backend_is_the_array_api_path_on_cpu_tensors():
    be = get_backend("torch")
    assert (be.name, be.flag, be.device) == ("torch", "torch", torch.device("cpu"))
    from xpnet.step.backprop import loss_and_data_gradients

    assert be.data_gradients is loss_and_data_gradients  # no torch-specific step
    x = be.asarray(np.arange(6.0).reshape(2, 3), dtype="float32")
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and not x.requires_grad
    host = to_numpy(x)
    assert isinstance(host, np.ndarray) and host.dtype == np.float32
    np.testing.assert_array_equal(host, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(to_numpy(be.xp.sum(x)), 15.0)  # 0-d tensors too


@pytest.mark.parametrize("batch_norm", [True, False])
def test_cost_and_every_gradient_equal_numpy_to_1e12_in_float64(batch_norm):
    X, _, Y = _problem()
    config = NetworkConfig(d_in=30, hidden=(20, 15), norm="batch" if batch_norm else None)
    results = {}
    for device in ("cpu", "torch"):
        be = get_backend(device)
        net = Network.create(config, seeds=[1, 2], lam=[0.0, 0.01], device=be, dtype="float64")
        loss, cost, grads = net.loss_and_gradients(be.asarray(X), be.asarray(Y))
        assert isinstance(grads["W1"], np.ndarray if device == "cpu" else torch.Tensor)
        results[device] = (to_numpy(loss), to_numpy(cost),
                           {k: to_numpy(v) for k, v in grads.items()},
                           {k: to_numpy(v) for k, v in net.buffers.items()})
    (l1, c1, g1, b1), (l2, c2, g2, b2) = results["cpu"], results["torch"]
    np.testing.assert_allclose(l2, l1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c2, c1, rtol=1e-12, atol=1e-12)
    assert set(g2) == set(g1) and set(b2) == set(b1)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-12, atol=1e-12, err_msg=k)
    for k in b1:  # the running averages the step updated
        np.testing.assert_allclose(b2[k], b1[k], rtol=1e-12, atol=1e-12, err_msg=k)


def _train_50_steps(device, dtype, momentum, seeds, lam):
    X, y = _blobs()
    be = get_backend(device)
    data = DeviceSplit.from_host(be, X, y, 4, dtype)
    net = Network.create(NetworkConfig(d_in=20, hidden=(16, 12, 8), n_classes=4), seeds=seeds,
                         lam=lam, device=be, dtype=dtype)
    schedule = CyclicalLR(eta_min=1e-3, eta_max=0.1, n_s=25, cycles=1)  # 50 steps, 5 epochs
    history = train(net, schedule, data, data, TrainConfig(batch_size=20, momentum=momentum,
                    evals_per_cycle=5), progress=False)
    assert history.stopped_step == 50
    return net, history


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-6), ("float64", 1e-12)])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fifty_training_steps_on_torch_match_numpy(dtype, tol, momentum):
    """Two models on their own seeds and batch orders, L2 on; the weights, running
    averages and every recorded metric after 50 steps (momentum: the optimiser's path,
    without: the pre-scaled one)."""
    runs = {device: _train_50_steps(device, dtype, momentum, [0, 1], [0.001, 0.01])
            for device in ("cpu", "torch")}
    (ref_net, ref_hist), (net, hist) = runs["cpu"], runs["torch"]
    for name, ref in {**ref_net.params, **ref_net.buffers}.items():
        value = {**net.params, **net.buffers}[name]
        assert str(value.dtype) == f"torch.{dtype}"
        np.testing.assert_allclose(to_numpy(value), ref, rtol=tol, atol=tol, err_msg=name)
    assert hist.steps == ref_hist.steps
    for key, ref in ref_hist.metrics.items():
        np.testing.assert_allclose(hist.metrics[key], ref, rtol=tol, atol=tol, err_msg=key)
    np.testing.assert_array_equal(hist.diverged_step, [-1, -1])


def test_lockstep_search_on_torch_equals_each_value_run_alone():
    """A lambda search of three models in lockstep trains each model exactly as a run of
    that value alone (float64), on torch tensors."""
    X, y = _blobs(n=120, seed=3)
    be = get_backend("torch")
    data = DeviceSplit.from_host(be, X, y, 4, "float64")
    config = NetworkConfig(d_in=20, hidden=(10, 6), n_classes=4)
    schedule = CyclicalLR(eta_min=1e-3, eta_max=0.1, n_s=6, cycles=1)
    lams = [1e-4, 1e-2, 0.5]
    kwargs = dict(seeds=0, dtype="float64", backend=be, progress=False)
    together, history = train_lockstep(config, schedule, data, data,
                                       TrainConfig(batch_size=20), lam=lams, **kwargs)
    for m, lam in enumerate(lams):
        alone, alone_history = train_lockstep(config, schedule, data, data,
                                              TrainConfig(batch_size=20), lam=[lam], **kwargs)
        for name, value in alone.params.items():
            np.testing.assert_allclose(to_numpy(together.params[name])[m],
                                       to_numpy(value)[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(history.metrics["val_cost"][:, m],
                                   alone_history.metrics["val_cost"][:, 0], rtol=1e-12)


def test_a_float32_network_on_torch_stays_float32():
    """Promotion: Python floats, float32 tensors and int64 labels mix without float64."""
    X, y = _blobs(n=40)
    be = get_backend("torch")
    data = DeviceSplit.from_host(be, X, y, 4, "float32")
    net = Network.create(NetworkConfig(d_in=20, hidden=(8,), n_classes=4), seeds=[0, 1],
                         lam=[0.0, 0.1], device=be)
    train(net, CyclicalLR(n_s=2, cycles=1), data, data, TrainConfig(batch_size=10,
          momentum=(0.0, 0.5)), progress=False)
    loss, cost, grads = net.loss_and_gradients(data.X, data.Y)
    metrics = net.evaluate(data.X, data.y, data.Y)
    arrays = [loss, cost, *grads.values(), *net.params.values(), *net.buffers.values(),
              *metrics.values()]
    assert {a.dtype for a in arrays} == {torch.float32}


# ------------------------------------------------------------- the device flags' errors
def test_torch_cuda_without_a_gpu_is_one_sentence(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendError) as err:
        get_backend("torch:cuda")
    message = str(err.value)
    assert "sees no CUDA GPU" in message and "--device torch" in message
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")


def test_torch_mps_without_apple_silicon_is_one_sentence(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(BackendError) as err:
        get_backend("torch:mps")
    message = str(err.value)
    assert "no Apple MPS device" in message and "--device torch" in message
    assert "\n" not in message and message.endswith(".")


def test_torch_device_that_cannot_compute_is_one_sentence(monkeypatch):
    """A GPU PyTorch reports but cannot run on (say, a build for another architecture)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    import xpnet.backend.devices

    def failing_probe(torch, device):
        raise RuntimeError("CUDA error: no kernel image is available for execution\nmore")

    monkeypatch.setattr(xpnet.backend.devices, "_probe_torch", failing_probe)
    with pytest.raises(BackendError) as err:
        get_backend("torch:cuda")
    message = str(err.value)
    assert message.startswith("PyTorch cannot compute on cuda:0 (RuntimeError: CUDA error")
    assert "\n" not in message and "--device torch" in message


def test_mps_refuses_float64_in_one_sentence():
    be = dataclasses.replace(get_backend("torch"), flag="torch:mps")
    with pytest.raises(BackendError, match="MPS has no float64; use float32"):
        be.dtype("float64")
    assert be.dtype("float32") is torch.float32


@pytest.mark.parametrize("flag", ["torch", "torch:cuda", "torch:mps"])
def test_torch_flags_without_pytorch_say_what_to_install(monkeypatch, flag):
    block_import(monkeypatch, "torch")
    with pytest.raises(BackendError) as err:
        get_backend(flag)
    assert str(err.value) == (f'--device {flag} needs PyTorch; run pip install ".[torch]", '
                              "or use --device cpu.")


def test_describe_says_which_gpu_a_torch_cuda_backend_uses(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"NVIDIA A100 #{index}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    be = dataclasses.replace(get_backend("torch"), device=torch.device("cuda", 1),
                             flag="torch:cuda")
    assert be.describe() == {"device": "torch:cuda", "gpu": "NVIDIA A100 #1", "gpu_index": 1,
                             "cuda_visible_devices": None}
    assert get_backend("torch").describe() == {"device": "torch"}
