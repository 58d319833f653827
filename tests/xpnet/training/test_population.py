"""Population schedules on the model axis (xpnet.training.population): a change copies whole model
states along the axis and sets per-model hyper-parameters, and the models it leaves alone
train exactly as before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.problems import blobs
from xpnet import ConstantLR, Network, NetworkConfig, to_numpy
from xpnet.errors import XpnetError
from xpnet.training import DeviceSplit, TrainConfig, TrainingRun, record_steps
from xpnet.training.optim import SGD, Adam
from xpnet.training.population import PopulationChange, PopulationSchedule


@dataclasses.dataclass(frozen=True)
class Forced(PopulationSchedule):
    """A schedule for tests: at ``step``, the given change."""

    step: int
    rows: tuple
    slots: tuple
    hyper: tuple = ()  # (name, values) pairs
    metric: str = "train_accuracy"

    def action_steps(self, record_at, steps_per_epoch):
        assert self.step in record_at
        return [self.step]

    def decide(self, step, view):
        return PopulationChange(self.rows, self.slots, dict(self.hyper))


def _splits(backend, dtype):
    X, y = blobs(90, 10, 3, 0, spread=1.5)
    Xv, yv = blobs(30, 10, 3, 1, spread=1.5)
    dt = backend.dtype(dtype)
    return (DeviceSplit.from_host(backend, X, y, 3, dt),
            DeviceSplit.from_host(backend, Xv, yv, 3, dt))


def _run(backend, dtype, *, seeds, lam, dropout=0.0, optimizer=None, population=None,
         stop_at=None, norm="batch"):
    """A 10-8-6-3 net trained 24 steps (batch 20: 4 steps an epoch, records every 3)."""
    config = NetworkConfig(d_in=10, hidden=(8, 6), n_classes=3, norm=norm)
    net = Network.create(config, seeds=seeds, lam=lam, device=backend, dtype=dtype,
                         dropout=dropout)
    train, val = _splits(backend, dtype)
    run = TrainingRun(net, ConstantLR(eta=0.05, steps=24, cycle_length=24), train, val,
                      TrainConfig(batch_size=20, evals_per_cycle=8, optimizer=optimizer),
                      population=population)
    run.run(until=stop_at)
    return run


def _state(run, m):
    """Every per-model array of model m of a run, as host float64."""
    net, opt = run.net, run.optimizer
    out = {f"param/{k}": to_numpy(v)[m] for k, v in net.params.items()}
    out.update({f"buffer/{k}": to_numpy(v)[m] for k, v in net.buffers.items()})
    for attr in ("velocity", "m", "v"):
        for k, v in (getattr(opt, attr, None) or {}).items():
            out[f"{attr}/{k}"] = to_numpy(v)[m]
    out["live"] = to_numpy(run.liveness.live)[m]
    out["stamp"] = to_numpy(run.liveness.stamp)[m]
    out["lam"] = net.lam_host[m]
    out.update({f"option/{k}": v[m] for k, v in net.per_model_host.items()})
    return out


@pytest.mark.parametrize("optimizer", [SGD(momentum=0.5), Adam(), None],
                         ids=["momentum", "adam", "plain"])
def test_a_forced_copy_makes_the_whole_state_equal(fast_backend, optimizer):
    """At step 9 model 2 takes model 0's state: every array of 2 equals 0's then."""
    seeds, lam = [0, 1, 2], [0.0, 0.01, 0.003]
    forced = Forced(9, rows=(0, 1, 0), slots=(0, 1, 2))
    before = _run(fast_backend, "float32", seeds=seeds, lam=lam, dropout=(0.0, 0.1, 0.2),
                  optimizer=optimizer, stop_at=9)
    after = _run(fast_backend, "float32", seeds=seeds, lam=lam, dropout=(0.0, 0.1, 0.2),
                 optimizer=optimizer, population=forced, stop_at=9)
    source, copied = _state(before, 0), _state(after, 2)
    assert source.keys() == copied.keys()
    for key, value in source.items():
        np.testing.assert_array_equal(copied[key], value, err_msg=key)
    assert after.seeds == [0, 1, 2]  # the place keeps its batch order
    np.testing.assert_array_equal(after.ids, [0, 1, 2])


def test_models_a_change_leaves_alone_train_as_before(fast_backend):
    """Models 0 and 1 are untouched by a change that copies 0 into 2 and changes 2's
    hyper-parameters: their whole run equals the run without the change."""
    seeds, lam = [0, 1, 2], [0.0, 0.01, 0.003]
    forced = Forced(9, rows=(0, 1, 0), slots=(0, 1, 2),
                    hyper=(("lam", (0.0, 0.01, 0.02)), ("rate_scale", (1.0, 1.0, 0.5)),
                           ("dropout", (0.0, 0.1, 0.3))))
    plain = _run(fast_backend, "float64" if fast_backend.name == "cpu" else "float32",
                 seeds=seeds, lam=lam, dropout=(0.0, 0.1, 0.2))
    changed = _run(fast_backend, "float64" if fast_backend.name == "cpu" else "float32",
                   seeds=seeds, lam=lam, dropout=(0.0, 0.1, 0.2), population=forced)
    for key, values in plain.history.metrics.items():
        np.testing.assert_array_equal(changed.history.metrics[key][:, :2], values[:, :2],
                                      err_msg=key)
    for name, value in plain.net.params.items():
        np.testing.assert_array_equal(to_numpy(changed.net.params[name])[:2],
                                      to_numpy(value)[:2], err_msg=name)
    assert changed.net.lam_host.tolist() == [0.0, 0.01, 0.02]
    assert changed.net.per_model_host["dropout"].tolist() == [0.0, 0.1, 0.3]
    # The history records each model's own rate from the change on.
    steps = changed.history.steps
    assert changed.history.eta[steps.index(6)] == pytest.approx(0.05)
    assert changed.history.eta[steps.index(12)] == pytest.approx([0.05, 0.05, 0.025])


def test_a_copied_model_follows_its_parent_with_its_own_batches():
    """After the copy, model 2 trains from model 0's state with its own batch order:
    the same as a run that starts from model 0's state at that step with seed 2."""
    seeds = [0, 1, 2]
    forced = Forced(9, rows=(0, 1, 0), slots=(0, 1, 2))
    changed = _run(_cpu(), "float64", seeds=seeds, lam=0.0, population=forced)
    # Model 0 and the copy (2) differ from step 9 on only by their batches: with a
    # shared seed they would be the same model.
    same = Forced(9, rows=(0, 1, 0), slots=(0, 1, 2))
    twin = _run(_cpu(), "float64", seeds=[0, 1, 0], lam=0.0, population=same)
    for name, value in twin.net.params.items():
        np.testing.assert_array_equal(to_numpy(value)[2], to_numpy(value)[0], err_msg=name)
        assert not np.array_equal(to_numpy(changed.net.params[name])[2],
                                  to_numpy(changed.net.params[name])[0]), name


def test_a_run_stopped_and_run_again_ends_as_one_that_never_stopped():
    forced = Forced(9, rows=(0, 1, 0), slots=(0, 1, 2), hyper=(("lam", (0.0, 0.01, 0.02)),))
    whole = _run(_cpu(), "float64", seeds=[0, 1, 2], lam=0.0, dropout=0.1,
                 optimizer=SGD(momentum=0.5), population=forced)
    parts = _run(_cpu(), "float64", seeds=[0, 1, 2], lam=0.0, dropout=0.1,
                 optimizer=SGD(momentum=0.5), population=forced, stop_at=6)
    assert parts.t == 6 and parts.history.diverged_step is None
    parts.run(until=9)
    parts.run()
    for key, values in whole.history.metrics.items():
        np.testing.assert_array_equal(parts.history.metrics[key], values, err_msg=key)
    for name, value in whole.net.params.items():
        np.testing.assert_array_equal(to_numpy(parts.net.params[name]), to_numpy(value))


def test_changes_are_checked():
    with pytest.raises(XpnetError, match="one row and one slot"):
        PopulationChange(rows=[0, 1], slots=[0])
    with pytest.raises(XpnetError, match="two models in one place"):
        PopulationChange(rows=[0, 1], slots=[1, 1])
    with pytest.raises(XpnetError, match="sets lam for 1 models"):
        PopulationChange(rows=[0, 1], slots=[0, 1], hyper={"lam": [0.1]})
    bad = Forced(9, rows=(0, 1, 0), slots=(0, 1, 2), hyper=(("dropout", (0, 0, 1.5)),))
    with pytest.raises(XpnetError, match="dropout must be a number in"):
        _run(_cpu(), "float64", seeds=[0, 1, 2], lam=0.0, population=bad)
    no_momentum = Forced(9, rows=(0, 1, 2), slots=(0, 1, 2),
                         hyper=(("momentum", (0.5, 0.5, 0.5)),))
    with pytest.raises(XpnetError, match="started without momentum"):
        _run(_cpu(), "float64", seeds=[0, 1, 2], lam=0.0, population=no_momentum)
    assert record_steps(24, 24, 8) == set(range(3, 25, 3))


def _cpu():
    from xpnet.backend.devices import get_backend

    return get_backend("cpu")
