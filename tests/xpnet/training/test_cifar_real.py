"""End-to-end checks on the real CIFAR-10 files (``XPNET_DATA``; required in CI)."""

import numpy as np
import pytest

from xpnet.backend.devices import get_backend, to_numpy
from xpnet.data import load_cifar10
from xpnet.network.network import Network, NetworkConfig
from xpnet.training import DeviceSplit, TrainConfig, train
from xpnet.training.schedules import CyclicalLR

pytestmark = pytest.mark.cifar


@pytest.fixture(scope="module")
def cifar(cifar_root):
    return load_cifar10(cifar_root, progress=False)


def test_default_split_shapes(cifar):
    assert cifar.X_train.shape == (45000, 3072) and cifar.X_val.shape == (5000, 3072)
    assert cifar.X_test.shape == (10000, 3072)
    assert abs(float(cifar.X_train.mean())) < 1e-3


def test_three_layer_bn_reaches_52_percent_with_report_defaults(cifar):
    """The DD2424 defaults: [50, 50] BN, eta 1e-5..1e-1, n_s 2250, 2 cycles, lambda 0.005."""
    be = get_backend("cpu")
    tr = DeviceSplit.from_host(be, cifar.X_train, cifar.y_train, 10, "float32")
    va = DeviceSplit.from_host(be, cifar.X_val, cifar.y_val, 10, "float32")
    te = DeviceSplit.from_host(be, cifar.X_test, cifar.y_test, 10, "float32")
    net = Network.create(NetworkConfig(hidden=(50, 50)), seeds=0, lam=0.005, device=be)
    hist = train(net, CyclicalLR(1e-5, 1e-1, n_s=2250, cycles=2), tr, va,
                 TrainConfig(batch_size=100), progress=False)
    test_acc = float(to_numpy(net.evaluate(te.X, te.y, te.Y)["accuracy"])[0])
    assert test_acc >= 0.52, test_acc
    assert hist.metrics["val_accuracy"][-1, 0] >= 0.50


def test_four_layer_bn_overfits_100_real_images(cifar):
    be = get_backend("cpu")
    tr = DeviceSplit.from_host(be, cifar.X_train[:100], cifar.y_train[:100], 10, "float32")
    net = Network.create(NetworkConfig(hidden=(50, 30, 20)), seeds=0, lam=0.0, device=be)
    # Three cycles, not two: after two, seeds 0-2 sit at 99-100 % with a loss near 0.05,
    # where a rounding-level change of the step (issue 28's) flips one image; after three
    # every seed is at 100 % with a loss near 0.015, before and after that change.
    hist = train(net, CyclicalLR(1e-5, 1e-1, n_s=100, cycles=3), tr, None,
                 TrainConfig(batch_size=10), progress=False)
    assert np.max(hist.metrics["train_accuracy"][-1]) == 1.0


@pytest.mark.slow
def test_the_cached_load_is_bit_identical_on_the_real_data(cifar, cifar_root):
    cached = load_cifar10(cifar_root, progress=False, cache=True)
    for name in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "mean", "std"):
        a, b = getattr(cifar, name), getattr(cached, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
        assert a.tobytes() == b.tobytes(), name
    assert cached.label_names == cifar.label_names
