"""No host syncs inside the training step (design rule 6), counted without a GPU.

Training runs on ``strict:device1`` (array_api_strict with its arrays off the CPU
device, which refuses host/device mixing as CuPy does) and on ``torch`` (PyTorch
tensors, whose library is the one a GPU user would run) with every way a device value
can reach the host instrumented by :mod:`xpnet.training.syncs` (the one counter, which the bench
uses too): a door opened inside a step is a sync in the step (on a GPU, a stall).  Each
scenario also reruns on the CPU in float64 and must give the same numbers, so the paths
it covers (momentum, per-model momentum and rates, Adam and AdamW, M > 1 models on their
own batch orders, divergence, the lockstep sweep, layer norm, the activations, dropout)
are proven on a non-CPU device, not only sync-free.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import xpnet.backend.devices
from tests.conftest import TEST_DEVICES, matrix_backend
from xpnet.backend.devices import get_backend, to_numpy
from xpnet.network.network import Network, NetworkConfig
from xpnet.search.sweep import train_lockstep
from xpnet.training import DeviceSplit, TrainConfig, train
from xpnet.training.optim import Adam, AdamW
from xpnet.training.schedules import ConstantLR, CyclicalLR
from xpnet.training.syncs import SyncCounter, counting

# Matrix names (see conftest.py) of the devices the step is counted on: cuda and
# torch-cuda too where the GPU job names them.
DEVICES = ("strict-device1", "torch",
           *[d for d in TEST_DEVICES if d in ("cuda", "torch-cuda")])


@pytest.fixture(params=DEVICES)
def device(request):
    """The backend the step is counted on (``torch`` skips without PyTorch, outside CI)."""
    return matrix_backend(request.param)


@pytest.fixture
def counter(device) -> SyncCounter:
    """A :class:`~xpnet.training.syncs.SyncCounter` wired into the device's doors and
    ``to_numpy``."""
    with counting(SyncCounter(), device) as counter:
        yield counter


@dataclasses.dataclass(frozen=True)
class PerModelRates:
    """A constant rate per model: ``rates()`` is ``(steps, M)``."""

    etas: tuple[float, ...]
    steps: int
    cycle_length: int

    def rates(self) -> np.ndarray:
        return np.tile(np.asarray(self.etas, dtype=np.float64), (self.steps, 1))


def _data(backend, n=60, d=10, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 2
    y = rng.integers(0, classes, n)
    X = centres[y] + rng.standard_normal((n, d))
    return DeviceSplit.from_host(backend, X, y, classes, "float64")


CONFIG = NetworkConfig(d_in=10, hidden=(8, 6), n_classes=4)
SCHEDULE = CyclicalLR(eta_min=1e-3, eta_max=0.1, n_s=6, cycles=1)  # 12 steps, 2 epochs

SCENARIOS = {
    "plain": dict(seeds=0, train=TrainConfig(batch_size=10, evals_per_cycle=2)),
    "momentum": dict(seeds=0, train=TrainConfig(batch_size=10, momentum=0.9)),
    "three-models-own-orders": dict(seeds=[0, 1, 2], lam=[0.0, 0.01, 0.1],
                                    train=TrainConfig(batch_size=10)),
    "per-model-momentum": dict(seeds=[0, 1], train=TrainConfig(batch_size=10,
                                                               momentum=(0.0, 0.9))),
    "adam": dict(seeds=[0, 1], lam=[0.0, 0.01],
                 train=TrainConfig(batch_size=10, optimizer=Adam(beta1=0.8))),
    "adamw-per-model-decay-and-rates": dict(
        seeds=[0, 1], schedule=PerModelRates((1e-3, 1e-2), 12, 6),
        train=TrainConfig(batch_size=10, optimizer=AdamW(weight_decay=(0.0, 0.1)))),
    # Model 1's rate is absurd: it diverges (and stops updating) while model 0 trains.
    "one-diverges": dict(seeds=[0, 1], schedule=PerModelRates((0.05, 1e8), 12, 6),
                         config=dataclasses.replace(CONFIG, norm=None),
                         train=TrainConfig(batch_size=10, momentum=0.9)),
    # Layer norm, leaky ReLU and dropout at a rate per model (masks uploaded per epoch).
    "layer-norm-dropout": dict(seeds=[0, 1], config=dataclasses.replace(
        CONFIG, norm="layer", activation="leaky_relu", dropout=(0.0, 0.3)),
        train=TrainConfig(batch_size=10, momentum=0.9)),
    "tanh-dropout-one-seed": dict(seeds=[0, 0], lam=[0.0, 0.01], config=dataclasses.replace(
        CONFIG, activation="tanh", dropout=0.2), train=TrainConfig(batch_size=10)),
    # Every model diverges: training stops early at a record point.
    "all-diverge": dict(seeds=[0, 1], schedule=ConstantLR(eta=1e8, steps=24, cycle_length=6),
                        config=dataclasses.replace(CONFIG, norm=None),
                        train=TrainConfig(batch_size=10)),
}


def _run(device, scenario, callbacks=()):
    backend = get_backend(device) if isinstance(device, str) else device
    data = _data(backend)
    net = Network.create(scenario.get("config", CONFIG), seeds=scenario["seeds"],
                         lam=scenario.get("lam", 0.005), device=backend, dtype="float64")
    history = train(net, scenario.get("schedule", SCHEDULE), data, data, scenario["train"],
                    callbacks=callbacks, progress=False)
    return net, history


def _assert_same_run(net, history, ref_net, ref_history):
    np.testing.assert_array_equal(history.diverged_step, ref_history.diverged_step)
    assert history.steps == ref_history.steps
    assert history.stopped_step == ref_history.stopped_step
    for key, ref in ref_history.metrics.items():
        np.testing.assert_allclose(history.metrics[key], ref, rtol=1e-9, atol=1e-12,
                                   err_msg=key)  # NaN where diverged, on both
    alive = ref_history.diverged_step < 0
    for name, ref in ref_net.params.items():
        np.testing.assert_allclose(to_numpy(net.params[name])[alive], ref[alive],
                                   rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_host_sync_inside_a_training_step(name, device, counter):
    scenario = SCENARIOS[name]
    net, history = _run(device, scenario, callbacks=[counter])
    assert net.params["W1"].device == device.device
    assert counter.steps_seen == history.stopped_step > 0
    assert counter.inside == [], f"host syncs inside the step: {counter.inside[:5]}"
    assert "to_numpy" in counter.outside  # the instrumentation is live: records read back
    if name.endswith("diverges") or name == "all-diverge":
        assert np.any(history.diverged_step >= 0)
    if name == "all-diverge":
        assert history.stopped_step < SCENARIOS[name]["schedule"].steps

    ref_net, ref_history = _run("cpu", scenario)
    _assert_same_run(net, history, ref_net, ref_history)


def test_lockstep_sweep_runs_on_a_non_cpu_device_without_syncs(device, counter):
    backend = device
    data = _data(backend, seed=1)
    kwargs = dict(seeds=0, lam=[1e-4, 1e-2, 1.0], dtype="float64", progress=False)
    net, history = train_lockstep(CONFIG, SCHEDULE, data, data, TrainConfig(batch_size=10),
                                  backend=backend, callbacks=[counter], **kwargs)
    assert counter.inside == [] and counter.steps_seen == SCHEDULE.total_steps
    ref_data = _data(get_backend("cpu"), seed=1)
    ref_net, ref_history = train_lockstep(CONFIG, SCHEDULE, ref_data, ref_data,
                                          TrainConfig(batch_size=10), backend="cpu", **kwargs)
    _assert_same_run(net, history, ref_net, ref_history)


def test_the_counter_catches_a_sync_inside_the_step(device, counter):
    """A deliberate ``float(loss)`` in the step is counted, once per step."""
    backend = device

    def leaky_step(net, X, Y, **kwargs):
        loss, grads = backend.data_gradients(net, X, Y, **kwargs)
        float(loss[0])  # what a per-step progress print would do
        return loss, grads

    _, history = _run(dataclasses.replace(backend, data_gradients=leaky_step),
                      SCENARIOS["plain"], callbacks=[counter])
    assert [door for _, door in counter.inside] == ["__float__"] * history.stopped_step
    assert sorted({step for step, _ in counter.inside}) == list(range(history.stopped_step))


def test_the_counter_sees_every_host_door(device, counter):
    x = device.asarray(np.arange(3.0))
    counter.on_step_begin(0)
    float(x[0]), int(x[1]), bool(x[2]), xpnet.backend.devices.to_numpy(x)
    if device.name == "torch":
        x[0].item(), x.tolist(), x.cpu(), x.numpy()
    counter.on_step_end(0)
    doors = [door for _, door in counter.inside]
    if device.name == "cuda":
        x[0].item(), x.tolist()
    copy = {"strict": ("to_device",), "torch": ("item", "tolist", "cpu", "numpy"),
            "cuda": ("get", "item", "tolist")}
    for door in ("__float__", "__int__", "__bool__", "to_numpy", *copy[device.name]):
        assert door in doors
