"""Device selection and its user-facing errors."""

import sys

import numpy as np
import pytest

from tests.conftest import block_import
from xpnet.backend.devices import get_backend, to_numpy
from xpnet.errors import BackendError


def test_cpu_and_strict_backends():
    assert get_backend("cpu").name == "cpu"
    be = get_backend("strict")
    x = be.asarray(np.arange(3.0))
    np.testing.assert_array_equal(to_numpy(x), [0.0, 1.0, 2.0])


def test_unknown_device_is_one_sentence():
    message = "Unknown device 'tpu'; use one of: cpu, cuda, torch, torch:cuda, torch:mps."
    with pytest.raises(BackendError, match=message):
        get_backend("tpu")


def test_cuda_without_cupy_says_what_to_install(monkeypatch):
    block_import(monkeypatch, "cupy")
    with pytest.raises(BackendError) as err:
        get_backend("cuda")
    message = str(err.value)
    assert 'pip install "xpnet[cuda12]"' in message and "--device cpu" in message
    assert "\n" not in message


def test_cuda_with_cupy_but_no_gpu(monkeypatch):
    import types

    fake = types.ModuleType("cupy")

    class Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake.cuda = types.SimpleNamespace(runtime=Runtime)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendError, match="no usable NVIDIA GPU"):
        get_backend("cuda")


def test_strict_on_a_non_cpu_device_rejects_host_arrays_like_cupy():
    """``strict:device1``: the CI stand-in for a GPU refuses host/device mixing."""
    be = get_backend("strict:device1")
    assert be.name == "strict" and be.device == be.xp.Device("device1")
    on_device = be.asarray(np.arange(3.0))
    on_host = be.xp.asarray(np.arange(3.0))  # array_api_strict's CPU device
    assert on_device.device == be.device
    for mixed in (lambda: on_device + on_host, lambda: on_host + on_device,
                  lambda: on_device[be.xp.asarray([0])]):
        with pytest.raises(ValueError):
            mixed()
    with pytest.raises(RuntimeError):
        np.asarray(on_device)
    np.testing.assert_array_equal(to_numpy(on_device), [0.0, 1.0, 2.0])  # copies over
    np.testing.assert_array_equal(to_numpy(be.xp.sum(on_device)), 3.0)


def test_unknown_strict_device_is_one_sentence():
    with pytest.raises(BackendError, match="no device 'gpu'; use strict, strict:device1"):
        get_backend("strict:gpu")


def _fake_cupy(monkeypatch, **attributes):
    import types

    fake = types.ModuleType("cupy")
    fake.__dict__.update(attributes)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


def test_device_split_releases_cupys_pinned_staging_memory(monkeypatch):
    """After the data is on a CuPy GPU, the pinned host buffers of the upload go back."""
    from xpnet.backend.devices import Backend
    from xpnet.training import DeviceSplit

    freed = []
    pool = type("Pool", (), {"free_all_blocks": lambda self: freed.append(True)})()
    _fake_cupy(monkeypatch, get_default_pinned_memory_pool=lambda: pool)
    cpu = get_backend("cpu")
    cuda_like = Backend("cuda", cpu.xp, "cpu", cpu.data_gradients)  # NumPy arrays, CuPy hooks
    split = DeviceSplit.from_host(cuda_like, np.zeros((4, 3)), [0, 1, 2, 1], 3, "float32")
    assert split.X.shape == (4, 3) and freed == [True]
    DeviceSplit.from_host(cpu, np.zeros((4, 3)), [0, 1, 2, 1], 3, "float32")
    assert freed == [True]  # nothing to release off CuPy


def test_describe_names_the_device_and_on_a_gpu_which_one(monkeypatch):
    """A run's record says where it ran; a CuPy GPU by name, index and visible devices."""
    import types

    from xpnet.backend.devices import Backend

    assert get_backend("cpu").describe() == {"device": "cpu"}
    assert get_backend("strict:device1").describe() == {"device": "strict:device1"}
    runtime = types.SimpleNamespace(
        getDeviceProperties=lambda i: {"name": f"NVIDIA H200 #{i}".encode()})
    _fake_cupy(monkeypatch, cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    gpu = Backend("cuda", None, types.SimpleNamespace(id=0))
    assert gpu.describe() == {"device": "cuda", "gpu": "NVIDIA H200 #0", "gpu_index": 0,
                              "cuda_visible_devices": "3"}
