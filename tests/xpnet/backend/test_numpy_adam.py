"""The CPU backend's in-place Adam/AdamW step against its array-API reference
(:meth:`xpnet.training.optim.AdamUpdate._update`), on the flat parameters and entry by entry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xpnet.backend import numpy_step
from xpnet.backend.devices import get_backend
from xpnet.network.network import Network, NetworkConfig
from xpnet.training.optim import Adam, AdamW

OPTIONS = {"adam": Adam(beta1=0.8, beta2=0.99, eps=1e-6),
           "adamw": AdamW(weight_decay=(0.0, 0.1, 0.3))}


def _net(backend, lam):
    config = NetworkConfig(d_in=7, hidden=(5, 4), n_classes=3)
    return Network.create(config, seeds=[0, 1, 2], lam=lam, device=backend, dtype="float64")


@pytest.mark.parametrize("numbers", [numpy_step.ADAM_SLICE, 21])
@pytest.mark.parametrize("flat", [True, False])
@pytest.mark.parametrize("lam", [[0.0, 0.01, 0.1], 0.0])
@pytest.mark.parametrize("which", list(OPTIONS))
def test_inplace_adam_equals_the_reference(which, lam, flat, numbers, monkeypatch):
    """Also cut in slices of 21 numbers (7 columns of the flat parts' 3 rows): slices that
    end inside the tail's decayed columns are split there, and a last slice is narrower."""
    monkeypatch.setattr(numpy_step, "ADAM_SLICE", numbers)
    fast = get_backend("cpu")
    assert fast.adam_update is numpy_step.adam_update
    reference = dataclasses.replace(fast, adam_update=None)
    nets = [_net(fast, lam), _net(reference, lam)]
    updates = [OPTIONS[which].build(net) for net in nets]
    assert updates[0].inplace is numpy_step.adam_update and updates[1].inplace is None
    rng = np.random.default_rng(1)
    for t in range(4):
        grads = {k: rng.standard_normal(v.shape) for k, v in nets[0].params.items()}
        eta = np.array([1e-2, 3e-3, 0.0 if t == 2 else 1e-3])[:, None, None]
        for net, update in zip(nets, updates, strict=True):
            # flat=None: entry by entry; each gets fresh gradients (the tail's may be written)
            update.step(net.params, {k: g.copy() for k, g in grads.items()}, eta,
                        flat=net.flat_params if flat else None)
    for name, value in nets[1].params.items():
        np.testing.assert_allclose(nets[0].params[name], value, rtol=1e-12, atol=1e-14,
                                   err_msg=name)
        for state in ("m", "v"):
            np.testing.assert_allclose(getattr(updates[0], state)[name],
                                       getattr(updates[1], state)[name], rtol=1e-12,
                                       atol=1e-14, err_msg=f"{state} {name}")
    assert not np.allclose(nets[0].params["W1"], _net(fast, lam).params["W1"])


def test_inplace_adam_leaves_the_whole_gradient_untouched():
    """The head's (or a whole entry's) gradient is the caller's: read, never written."""
    backend = get_backend("cpu")
    net = _net(backend, [0.0, 0.01, 0.1])
    update = Adam().build(net)
    grads = {k: np.ones(v.shape) for k, v in net.params.items()}
    update.step(net.params, grads, 0.01, flat=None)
    assert all(np.all(g == 1.0) for g in grads.values())


def test_take_models_drops_the_work_arrays():
    backend = get_backend("cpu")
    net = _net(backend, 0.01)
    update = Adam().build(net)
    grads = {k: np.ones(v.shape) for k, v in net.params.items()}
    update.step(net.params, grads, 0.01, flat=net.flat_params)
    assert update._scratch
    update.take_models(np.array([1, 1], dtype=np.int64))
    assert not update._scratch
