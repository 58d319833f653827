"""Per-model schedules: the rate tables, and lockstep training with per-model rates."""

import math

import numpy as np
import pytest

from xpnet.backend.devices import get_backend, to_numpy
from xpnet.errors import XpnetError
from xpnet.network.network import Network, NetworkConfig
from xpnet.training import DeviceSplit, TrainConfig, train
from xpnet.training.schedules import ConstantLR, CyclicalLR, RangeTestLR, StepDecayLR


def torch_cyclic_lr(t: int, base_lr: float, max_lr: float, step_size_up: int) -> float:
    """``torch.optim.lr_scheduler.CyclicLR(mode="triangular")``'s rate at step ``t``
    (step_size_down = step_size_up), written out from its documentation."""
    cycle = math.floor(1 + t / (2 * step_size_up))
    x = abs(t / step_size_up - 2 * cycle + 1)
    return base_lr + (max_lr - base_lr) * max(0.0, 1 - x)


def test_per_model_cyclical_matches_torch_cycliclr_per_model():
    lo, hi = (1e-5, 1e-3, 0.01), (0.1, 0.05, 1.0)
    schedule = CyclicalLR(eta_min=lo, eta_max=hi, n_s=7, cycles=3)
    rates = schedule.rates()
    assert rates.shape == (42, 3) and schedule.n_models == 3
    expected = np.array([[torch_cyclic_lr(t, lo[m], hi[m], 7) for m in range(3)]
                         for t in range(42)])
    np.testing.assert_allclose(rates, expected, rtol=1e-14, atol=1e-16)


def test_scalar_schedules_are_unchanged():
    rates = CyclicalLR(eta_min=1e-5, eta_max=1e-1, n_s=5, cycles=2).rates()
    assert rates.shape == (20,)
    np.testing.assert_allclose(rates, [torch_cyclic_lr(t, 1e-5, 1e-1, 5) for t in range(20)],
                               rtol=1e-14)
    assert CyclicalLR().n_models is None and CyclicalLR().per_model_fields() == ()
    assert isinstance(CyclicalLR(eta_max=0.1).eta_max, float)


def test_mixed_scalar_and_per_model_parameters_broadcast():
    rates = CyclicalLR(eta_min=1e-5, eta_max=(0.1, 0.2), n_s=4, cycles=1).rates()
    np.testing.assert_allclose(rates[:, 0], CyclicalLR(1e-5, 0.1, n_s=4, cycles=1).rates())
    np.testing.assert_allclose(rates[:, 1], CyclicalLR(1e-5, 0.2, n_s=4, cycles=1).rates())
    const = ConstantLR(eta=[0.1, 0.3], steps=5, cycle_length=5).rates()
    assert const.shape == (5, 2)
    np.testing.assert_allclose(const, [[0.1, 0.3]] * 5)


def test_per_model_step_decay_equals_each_scalar_schedule():
    schedule = StepDecayLR(eta0=(1.0, 0.5), factor=(0.5, 0.1), every=(2, 3), steps=7)
    rates = schedule.rates()
    for m, (eta0, factor, every) in enumerate([(1.0, 0.5, 2), (0.5, 0.1, 3)]):
        np.testing.assert_allclose(
            rates[:, m], StepDecayLR(eta0=eta0, factor=factor, every=every, steps=7).rates(),
            rtol=1e-15)


def test_range_test_sweeps_linearly_or_log_linearly():
    schedule = RangeTestLR(eta_min=1e-5, eta_max=1.0, steps=11, cycle_length=11,
                           spacing=("linear", "log"))
    rates = schedule.rates()
    np.testing.assert_allclose(rates[:, 0], np.linspace(1e-5, 1.0, 11), rtol=1e-12)
    np.testing.assert_allclose(rates[:, 1], np.logspace(-5, 0, 11), rtol=1e-12)
    assert RangeTestLR(steps=5, cycle_length=5).rates().shape == (5,)


@pytest.mark.parametrize("make", [
    lambda: CyclicalLR(eta_min=(0.1, 0.01), eta_max=(0.05, 0.1)),  # min above max
    lambda: CyclicalLR(eta_min=(1e-5, 1e-5, 1e-5), eta_max=(0.1, 0.2)),  # lengths differ
    lambda: CyclicalLR(n_s=(10, 20)),  # a shared length given per model
    lambda: ConstantLR(eta=[0.1, float("nan")]),
    lambda: ConstantLR(eta=[]),
    lambda: StepDecayLR(every=(2.5, 3)),
    lambda: RangeTestLR(spacing=("linear", "cubic")),
])
def test_bad_per_model_schedules_are_user_errors(make):
    with pytest.raises(XpnetError):
        make()


def test_per_model_rates_and_momentum_in_lockstep_equal_one_by_one_training():
    """Three models with their own rates, momentum, seed and lambda, trained together,
    end where each trained alone ends (float64)."""
    be = get_backend("cpu")
    rng = np.random.default_rng(0)
    n, d, C = 60, 12, 4
    X = rng.standard_normal((n, d))
    y = rng.integers(0, C, n)
    data = DeviceSplit.from_host(be, X, y, C, "float64")
    config = NetworkConfig(d_in=d, hidden=(8, 6), n_classes=C, norm="batch")
    seeds, lam = [0, 1, 2], [0.0, 0.01, 0.001]
    eta_min, eta_max, momentum = (1e-4, 1e-3, 1e-2), (0.05, 0.2, 0.1), (0.0, 0.5, 0.9)
    train_config = dict(batch_size=15, evals_per_cycle=2)

    net = Network.create(config, seeds=seeds, lam=lam, device=be, dtype="float64")
    hist = train(net, CyclicalLR(eta_min, eta_max, n_s=6, cycles=2), data, data,
                 TrainConfig(momentum=momentum, **train_config), progress=False)
    assert np.asarray(hist.eta).shape == (len(hist.steps), 3)

    for m in range(3):
        alone = Network.create(config, seeds=seeds[m], lam=lam[m], device=be, dtype="float64")
        h = train(alone, CyclicalLR(eta_min[m], eta_max[m], n_s=6, cycles=2), data, data,
                  TrainConfig(momentum=momentum[m], **train_config), progress=False)
        for name, value in alone.params.items():
            np.testing.assert_allclose(to_numpy(net.params[name])[m], to_numpy(value)[0],
                                       rtol=1e-10, atol=1e-10, err_msg=f"model {m} {name}")
        for key, values in h.metrics.items():
            np.testing.assert_allclose(hist.metrics[key][:, m], values[:, 0], rtol=1e-10,
                                       atol=1e-10, err_msg=f"model {m} {key}")
        np.testing.assert_allclose(np.asarray(hist.eta)[:, m], h.eta, rtol=1e-15)
