"""Run checkpoints (xpnet.training.resume): a run saved at a record point and resumed in a
fresh process's objects ends with the same numbers as a run that never stopped, bit for bit,
whatever it does along its model axis (halving, copies), with any optimizer and dropout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.problems import blobs
from xpnet import PBT, ConstantLR, Halving, Network, NetworkConfig, to_numpy
from xpnet.errors import CheckpointError, OutputError
from xpnet.training import Callback, DeviceSplit, TrainConfig, TrainingRun, resume, train
from xpnet.training.optim import SGD, Adam, AdamW
from xpnet.training.population import PopulationChange, PopulationSchedule
from xpnet.training.schedules import CyclicalLR


@dataclasses.dataclass(frozen=True)
class Copy(PopulationSchedule):
    """At step 9, model 2 takes model 0's state with new hyper-parameters (PBT's move)."""

    metric: str = "train_accuracy"

    def action_steps(self, record_at, steps_per_epoch):
        return [9]

    def decide(self, step, view):
        return PopulationChange((0, 1, 0), (0, 1, 2), {
            "lam": (0.0, 0.01, 0.02), "rate_scale": (1.0, 1.0, 0.5),
            "dropout": (0.0, 0.1, 0.3)})


#: name -> (per-model network options, TrainConfig options, population, schedule)
CASES = {
    "plain": ({}, {}, None, None),
    "halving": ({}, {}, Halving(rungs=(6, 12), eta=3, metric="train_accuracy"), None),
    "dropout": ({"dropout": (0.0, 0.1, 0.3)}, {}, None, None),
    "adam": ({}, {"optimizer": Adam()}, None, None),
    "adamw": ({}, {"optimizer": AdamW(weight_decay=(0.0, 0.01, 0.1))}, None, None),
    "momentum": ({}, {"optimizer": SGD(momentum=(0.5, 0.8, 0.9))}, None, None),
    "copy": ({"dropout": 0.1}, {"momentum": 0.5}, Copy(), None),
    "pbt": ({"dropout": 0.1}, {"momentum": 0.5},
            PBT(3, fraction=0.34, metric="train_accuracy", resample=0.3,
                space={"rate_scale": (0.3, 3.0), "lam": (1e-4, 0.1), "dropout": [0.0, 0.2],
                       "momentum": [0.5, 0.8]}), None),
    "per-model-rates": ({}, {}, None, CyclicalLR(eta_min=1e-4, eta_max=(0.05, 0.1, 0.2),
                                                 n_s=6, cycles=2)),
}


def _splits(backend, dtype):
    X, y = blobs(90, 10, 3, 0, spread=1.5)
    Xv, yv = blobs(30, 10, 3, 1, spread=1.5)
    dt = backend.dtype(dtype)
    return (DeviceSplit.from_host(backend, X, y, 3, dt),
            DeviceSplit.from_host(backend, Xv, yv, 3, dt))


def _fresh(backend, case: str, dtype: str = "float32") -> TrainingRun:
    """A fresh run of ``case``: a 10-8-6-3 BN net of 3 models (9 with halving), 24 steps of
    batch 20 (4 steps an epoch, records every 3)."""
    per_model, train_options, population, schedule = CASES[case]
    n = 9 if case == "halving" else 3
    config = NetworkConfig(d_in=10, hidden=(8, 6), n_classes=3)
    net = Network.create(config, seeds=list(range(n)), lam=[0.0, 0.01, 0.003] * (n // 3),
                         device=backend, dtype=dtype, **per_model)
    train_split, val = _splits(backend, dtype)
    return TrainingRun(net, schedule or ConstantLR(eta=0.05, steps=24, cycle_length=24),
                       train_split, val,
                       TrainConfig(batch_size=20, evals_per_cycle=8, **train_options),
                       population=population)


def _assert_same(resumed: TrainingRun, whole: TrainingRun) -> None:
    for key, values in whole.history.metrics.items():
        np.testing.assert_array_equal(resumed.history.metrics[key], values, err_msg=key)
    assert resumed.history.to_dict() == whole.history.to_dict()
    for store in ("params", "buffers"):
        for name, value in getattr(whole.net, store).items():
            np.testing.assert_array_equal(to_numpy(getattr(resumed.net, store)[name]),
                                          to_numpy(value), err_msg=name)
    for name, value in whole.optimizer.state_dict().items():
        np.testing.assert_array_equal(resumed.optimizer.state_dict()[name], value, err_msg=name)
    np.testing.assert_array_equal(resumed.ids, whole.ids)
    assert resumed.seeds == whole.seeds


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("stop", [3, 9, 15])
def test_a_run_resumed_from_its_checkpoint_ends_as_one_that_never_stopped(fast_backend, case,
                                                                         stop):
    """Saved at record point ``stop`` (after halving's first rung at 6 and the copy at 9,
    or before them), restored into a fresh run, run to the end: every number equal."""
    whole = _fresh(fast_backend, case)
    whole.run()
    first = _fresh(fast_backend, case)
    key = resume.signature(first)
    first.run(until=stop)
    data = resume.encode(resume.capture(first, key))
    del first
    again = _fresh(fast_backend, case)
    assert resume.signature(again) == key
    assert resume.restore(again, data, key) == stop
    again.run()
    _assert_same(again, whole)
    if case == "halving":
        assert again.net.n_models == 1 and len(again.history.survivors) == 1


class Kill(Callback):
    """Stands for a SIGKILL: raises at step ``at`` (after the checkpoints before it)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_begin(self, step):
        if step == self.at:
            raise KeyboardInterrupt


def test_train_with_a_checkpoint_file_resumes_and_removes_it(tmp_path):
    """train(checkpoint=PATH) saves at record points, a second call with a fresh net goes
    on from the last save, and the finished run leaves no file."""
    from xpnet.backend.devices import get_backend

    cpu = get_backend("cpu")
    path = tmp_path / "run.npz"

    def call(callbacks=()):
        run = _fresh(cpu, "halving", "float64")
        return run.net, train(run.net, run.schedule, run.train_data, run.val_data, run.config,
                              halving=run.population, progress=False, callbacks=callbacks,
                              checkpoint=path, checkpoint_every=1e-9)

    whole_net, whole = call()
    assert not path.exists()
    with pytest.raises(KeyboardInterrupt):
        call([Kill(at=14)])
    assert path.exists()
    saved = resume.CheckpointFile(path)
    net, history = call()
    assert not path.exists() and saved.read() is None
    assert history.to_dict() == whole.to_dict()
    for name, value in whole_net.params.items():
        np.testing.assert_array_equal(net.params[name], value, err_msg=name)


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_refused(tmp_path):
    from xpnet.backend.devices import get_backend

    cpu = get_backend("cpu")
    first = _fresh(cpu, "plain")
    key = resume.signature(first)
    first.run(until=6)
    state = resume.capture(first, key)
    data = resume.encode(state)
    late = resume.encode({**state, "meta": np.array(str(state["meta"]).replace('"t": 6',
                                                                               '"t": 99'))})
    other = _fresh(cpu, "adam")
    with pytest.raises(CheckpointError, match="run.npz is the checkpoint of another run"):
        resume.restore(other, data, resume.signature(other), name="run.npz")
    fresh = _fresh(cpu, "plain")
    for damaged in (data[:len(data) // 2], b"not a zip", late):
        with pytest.raises(CheckpointError, match="run.npz is not a readable xpnet run "
                                                  "checkpoint .*; delete it to start"):
            resume.restore(fresh, damaged, key, name="run.npz")
    assert fresh.t == 0 and not fresh.history.steps[1:]  # left as it was
    with pytest.raises(OutputError, match="is a folder; pass a file path"):
        train(fresh.net, fresh.schedule, fresh.train_data, config=fresh.config,
              checkpoint=tmp_path)
