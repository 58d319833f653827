"""Inverted dropout: host masks from the run's seeds, the same run on every library."""

import dataclasses

import numpy as np
import pytest

from xpnet import Halving
from xpnet.backend.devices import get_backend, to_numpy
from xpnet.network.network import Network, NetworkConfig
from xpnet.nn import dropout
from xpnet.training import DeviceSplit, TrainConfig, train
from xpnet.training.schedules import CyclicalLR

CONFIG = NetworkConfig(d_in=10, hidden=(8, 6), n_classes=4)
SCHEDULE = CyclicalLR(eta_min=1e-3, eta_max=0.1, n_s=6, cycles=1)  # 12 steps, 2 epochs


def _data(backend, n=60, d=10, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    X = rng.standard_normal((classes, d))[y] * 2 + rng.standard_normal((n, d))
    return DeviceSplit.from_host(backend, X, y, classes, "float64")


def _train(backend, *, seeds, rate, config=CONFIG, callbacks=(), momentum=0.0, halving=None):
    backend = get_backend(backend) if isinstance(backend, str) else backend
    data = _data(backend)
    net = Network.create(config, seeds=seeds, lam=0.005, dropout=rate, device=backend,
                         dtype="float64")
    history = train(net, SCHEDULE, data, data, TrainConfig(batch_size=10, momentum=momentum),
                    callbacks=callbacks, progress=False, halving=halving)
    return net, history


def test_a_models_masks_depend_only_on_its_seed_epoch_and_rate():
    shape = (3, 10, 14)  # steps, batch, hidden widths side by side
    both = dropout.keep_masks([0, 1], np.array([0.3, 0.3]), shape, epoch=2)
    assert both.shape == (3, 2, 10, 14) and both.dtype == bool
    np.testing.assert_array_equal(
        both[:, 1], dropout.keep_masks([1], np.array([0.3]), shape, epoch=2)[:, 0])
    shared = dropout.keep_masks([5, 5], np.array([0.2, 0.4]), shape, epoch=0)
    for m, p in enumerate((0.2, 0.4)):
        alone = dropout.keep_masks([5], np.array([p]), shape, epoch=0)[:, 0]
        np.testing.assert_array_equal(shared[:, m], alone)
    assert not np.array_equal(both[:, 0], dropout.keep_masks([0], np.array([0.3]), shape,
                                                             epoch=3)[:, 0])


def test_keep_masks_keep_one_minus_p_of_the_units_and_rate_zero_keeps_all():
    keep = dropout.keep_masks([0, 1, 2], np.array([0.0, 0.25, 0.5]), (200, 100), epoch=0)
    assert keep[0].all()
    np.testing.assert_allclose(keep.mean(axis=(1, 2)), [1.0, 0.75, 0.5], atol=0.01)


def test_step_masks_are_zero_or_the_inverted_scale():
    net = Network.create(CONFIG, seeds=[0, 1], dropout=[0.0, 0.5], dtype="float64")
    keep = dropout.keep_masks(net.seeds, net.per_model_host["dropout"], (20, 14), epoch=0)
    masks = dropout.device_masks(net, keep)
    assert [m.shape for m in masks] == [(2, 20, 8), (2, 20, 6)]
    assert np.all(masks[0][0] == 1.0) and set(np.unique(masks[1][1])) == {0.0, 2.0}


def test_dropout_is_train_mode_only():
    net = Network.create(CONFIG, seeds=[0, 1], dropout=0.5, dtype="float64")
    plain = Network.create(CONFIG, seeds=[0, 1], dtype="float64")
    X = np.random.default_rng(0).standard_normal((20, 10))
    masks = [np.asarray(m) for m in dropout.fixed_masks(net, 20)]
    np.testing.assert_array_equal(net.forward(X, train=False)[0],
                                  plain.forward(X, train=False)[0])
    assert not np.allclose(net.forward(X, masks=masks)[0], plain.forward(X)[0])
    np.testing.assert_array_equal(net.forward(X, masks=None)[0], plain.forward(X)[0])
    assert dropout.fixed_masks(plain, 20) is None


def test_rate_zero_draws_no_masks_and_passes_none(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("masks drawn for a run without dropout")

    monkeypatch.setattr(dropout, "keep_masks", refuse)
    seen = []
    be = get_backend("cpu")

    def spy(net, X, Y, **kwargs):
        seen.append("masks" in kwargs)
        return be.data_gradients(net, X, Y, **kwargs)

    _train(dataclasses.replace(be, data_gradients=spy), seeds=[0, 1], rate=0.0)
    assert seen == [False] * SCHEDULE.total_steps


def test_training_hands_each_step_its_masks():
    seen = []
    be = get_backend("cpu")

    def spy(net, X, Y, **kwargs):
        seen.append([tuple(m.shape) for m in kwargs["masks"]])
        return be.data_gradients(net, X, Y, **kwargs)

    net, _ = _train(dataclasses.replace(be, data_gradients=spy), seeds=[0, 1], rate=[0.1, 0.3])
    assert seen == [[(2, 10, 8), (2, 10, 6)]] * SCHEDULE.total_steps


def test_lockstep_models_with_dropout_equal_models_trained_alone():
    together, _ = _train("cpu", seeds=[3, 4], rate=[0.2, 0.5], momentum=0.9)
    for m, (seed, rate) in enumerate(((3, 0.2), (4, 0.5))):
        alone, _ = _train("cpu", seeds=seed, rate=rate, momentum=0.9)
        for name, value in alone.params.items():
            np.testing.assert_allclose(together.params[name][m], value[0], rtol=1e-10,
                                       atol=1e-13, err_msg=name)


@pytest.mark.parametrize("config", [CONFIG, dataclasses.replace(CONFIG, norm="layer",
                                                                activation="tanh")],
                         ids=["batch-relu", "layer-tanh"])
def test_one_seed_gives_the_same_dropout_run_on_every_library(fast_backend, config):
    net, history = _train(fast_backend, seeds=[0, 1], rate=[0.0, 0.3], config=config)
    ref, ref_history = _train("cpu", seeds=[0, 1], rate=[0.0, 0.3], config=config)
    for key, value in ref_history.metrics.items():
        np.testing.assert_allclose(history.metrics[key], value, rtol=1e-9, err_msg=key)
    for name, value in ref.params.items():
        np.testing.assert_allclose(to_numpy(net.params[name]), value, rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    no_dropout, _ = _train("cpu", seeds=[0, 1], rate=0.0, config=config)
    # Model 0 (rate 0) trains as without dropout; model 1's masks changed its run.
    np.testing.assert_allclose(ref.params["W1"][0], no_dropout.params["W1"][0], rtol=1e-12)
    assert not np.allclose(ref.params["W1"][1], no_dropout.params["W1"][1])


@pytest.mark.parametrize("seeds", [[0, 1, 2, 3], [5, 5, 5, 5]], ids=["own-seeds", "one-seed"])
def test_halving_survivors_with_dropout_train_as_alone(seeds):
    """Rungs mid-epoch (step 3) and at an epoch's end (step 6): the epoch's masks, the
    rates and the next epoch's draws follow the kept models."""
    rates = [0.1, 0.3, 0.0, 0.5]
    net, history = _train("cpu", seeds=seeds, rate=rates, momentum=0.9,
                          halving=Halving(rungs=(3, 6), eta=2, min_models=1))
    assert net.n_models == 1 and len(history.survivors) == 1
    m = int(history.survivors[0])
    alone, _ = _train("cpu", seeds=seeds[m], rate=rates[m], momentum=0.9)
    for name, value in alone.params.items():
        np.testing.assert_allclose(net.params[name][0], value[0], rtol=1e-10, atol=1e-13,
                                   err_msg=name)
