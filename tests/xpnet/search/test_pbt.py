"""Population-based training on the model axis (issue 36): the schedule's choices, the
lineage in the history, and exactness on every array library of the matrix: PBT that
copies nothing is plain training, a copy makes the child's whole state its parent's, and
a model never copied into trains as it would alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.problems import blobs
from tests.xpnet.training.test_population import _state
from xpnet import PBT, ConstantLR, Halving, Network, NetworkConfig
from xpnet.backend.devices import get_backend
from xpnet.errors import XpnetError
from xpnet.training import DeviceSplit, History, TrainConfig, TrainingRun, record_steps, train
from xpnet.training.optim import SGD

SEEDS, LAM = [0, 1, 2, 3], [0.0, 0.01, 0.003, 0.03]


def _run(backend, dtype="float32", *, seeds=SEEDS, lam=LAM, pbt=None, stop_at=None,
         momentum=0.5, dropout=(0.0, 0.1, 0.2, 0.1)):
    """A 10-8-6-3 BN net trained 24 steps (batch 20: 4 steps an epoch, records every 3)."""
    X, y = blobs(90, 10, 3, 0, spread=1.5)
    Xv, yv = blobs(30, 10, 3, 1, spread=1.5)
    dt = backend.dtype(dtype)
    train_split = DeviceSplit.from_host(backend, X, y, 3, dt)
    val = DeviceSplit.from_host(backend, Xv, yv, 3, dt)
    config = NetworkConfig(d_in=10, hidden=(8, 6), n_classes=3)
    n = len(seeds)
    net = Network.create(config, seeds=seeds, lam=lam, device=backend, dtype=dtype,
                         dropout=dropout[:n] if isinstance(dropout, tuple) else dropout)
    run = TrainingRun(net, ConstantLR(eta=0.05, steps=24, cycle_length=24), train_split, val,
                      TrainConfig(batch_size=20, evals_per_cycle=8,
                                  optimizer=SGD(momentum=momentum)),
                      population=pbt)
    run.run(until=stop_at)
    return run


# ---------------------------------------------------------------- the schedule
@pytest.mark.parametrize("kwargs", [dict(interval=0), dict(interval=2.5), dict(interval=3,
                                    unit="cycles"), dict(interval=3, fraction=0.6),
                                    dict(interval=3, perturb=(0.8, -1)), dict(interval=3,
                                    resample=0.5), dict(interval=3, space={"eta": (1, 2)}),
                                    dict(interval=3, space={"lam": (0.0, 0.1)}),
                                    dict(interval=3, metric="val_acc"),
                                    dict(interval=3, resample=2, space={"lam": [0.1]})])
def test_bad_schedules_are_one_sentence_errors(kwargs):
    with pytest.raises(XpnetError) as info:
        PBT(**kwargs)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")


def test_action_points_snap_to_record_points():
    record_at = record_steps(60, 20, 4)  # every 5 steps, last 60
    assert PBT(10).action_steps(record_at, 12) == [10, 20, 30, 40, 50]
    assert PBT(12).action_steps(record_at, 12) == [10, 25, 35, 50]  # 12, 24, 36, 48
    assert PBT(1.0, unit="epochs").action_steps(record_at, 12) == [10, 25, 35, 50]
    with pytest.raises(XpnetError, match="no record point before"):
        PBT(60).action_steps(record_at, 12)


def test_ranks_put_nan_last_and_the_space_is_normalised():
    pbt = PBT(3, space={"lam": (1e-4, 1e-2), "dropout": [0.0, 0.1, 0.3]})
    assert pbt.explored == ("dropout", "lam")
    assert PBT(3).explored == ("rate_scale", "lam")
    np.testing.assert_array_equal(pbt.ranks([0.5, np.nan, 0.7, 0.5]), [2, 0, 3, 1])
    np.testing.assert_array_equal(PBT(3, metric="val_loss").ranks([0.5, np.nan, 0.7]),
                                  [0, 2, 1])
    assert [PBT(3, fraction=f).n_exploit(16) for f in (0, 0.2, 0.25, 0.5)] == [0, 4, 4, 8]
    rng = np.random.default_rng(0)
    drawn = {PBT(3, resample=1.0, space={"dropout": [0.0, 0.3]}).explore("dropout", 0.1, rng)
             for _ in range(20)}
    assert drawn == {0.0, 0.3}
    ranged = PBT(3, space={"lam": (1e-3, 1e-2)}, perturb=(100.0,))
    assert ranged.explore("lam", 0.005, rng) == 1e-2  # a perturbed value stays in range


def test_train_takes_one_population_schedule():
    be = get_backend("cpu")
    X, y = blobs(40, 10, 3, 0, spread=1.5)
    split = DeviceSplit.from_host(be, X, y, 3, be.dtype("float32"))
    net = Network.create(NetworkConfig(d_in=10, hidden=(8,), n_classes=3), seeds=[0, 1])
    with pytest.raises(XpnetError, match="one population schedule at a time"):
        train(net, ConstantLR(eta=0.05, steps=8, cycle_length=8), split, split,
              halving=Halving(rungs=(4,)), pbt=PBT(4))
    with pytest.raises(XpnetError, match="at least 2 models"):
        _run(be, seeds=[0], lam=0.0, pbt=PBT(3))


# ------------------------------------------------------ exactness in training
def test_fraction_zero_is_plain_training(fast_backend):
    plain = _run(fast_backend)
    still = _run(fast_backend, pbt=PBT(3, fraction=0.0))
    for key, values in plain.history.metrics.items():
        np.testing.assert_array_equal(still.history.metrics[key], values, err_msg=key)
    for m in range(len(SEEDS)):
        for key, value in _state(plain, m).items():
            np.testing.assert_array_equal(_state(still, m)[key], value, err_msg=key)
    assert still.history.pbt_events == [] and len(still.history.pbt_steps) == 7


def test_a_copy_makes_the_childs_whole_state_its_parents(fast_backend):
    """With one model copied per action and factors of 1, the worst model at step 9 takes
    the best one's whole state there: parameters, averages, velocity, liveness, lam and
    dropout, bit for bit."""
    plain = _run(fast_backend, stop_at=9)
    scores = plain.history.metrics["val_accuracy"][-1]
    order = PBT(9).ranks(scores)
    best, worst = int(order[0]), int(order[-1])
    pbt = PBT(9, fraction=0.25, perturb=(1.0,))
    copied = _run(fast_backend, pbt=pbt, stop_at=9)
    assert copied.history.pbt_events[0]["child"] == worst
    assert copied.history.pbt_events[0]["parent"] == best
    source, child = _state(plain, best), _state(copied, worst)
    for key, value in source.items():
        np.testing.assert_array_equal(child[key], value, err_msg=key)
    assert copied.seeds == SEEDS  # the child keeps its place's batch order


def test_models_never_copied_into_train_as_before_and_as_alone(fast_backend):
    dtype = "float64" if fast_backend.name == "cpu" else "float32"
    pbt = PBT(6, fraction=0.25, space={"rate_scale": (0.1, 10.0), "lam": (1e-4, 0.1),
                                       "dropout": [0.0, 0.1, 0.2], "momentum": [0.5, 0.9]},
              resample=0.3, seed=3)
    plain, run = _run(fast_backend, dtype), _run(fast_backend, dtype, pbt=pbt)
    children = {e["child"] for e in run.history.pbt_events}
    assert children and len(children) < len(SEEDS)
    kept = [m for m in range(len(SEEDS)) if m not in children]
    for key, values in plain.history.metrics.items():
        np.testing.assert_array_equal(run.history.metrics[key][:, kept], values[:, kept],
                                      err_msg=key)
    for m in kept:
        for key, value in _state(plain, m).items():
            np.testing.assert_array_equal(_state(run, m)[key], value, err_msg=key)
        alone = _run(fast_backend, dtype, seeds=[SEEDS[m]], lam=LAM[m],
                     dropout=(0.0, 0.1, 0.2, 0.1)[m])
        tol = 1e-10 if dtype == "float64" else 2e-4
        for key, values in alone.history.metrics.items():
            np.testing.assert_allclose(run.history.metrics[key][:, m], values[:, 0],
                                       rtol=tol, atol=tol / 10, err_msg=f"{m} {key}")


# ------------------------------------------------------------------ lineage
def test_lineage_follows_the_copies_back_and_round_trips():
    pbt = PBT(3, fraction=0.5, space={"rate_scale": (0.5, 2.0), "lam": (1e-4, 0.1)}, seed=1)
    run = _run(get_backend("cpu"), pbt=pbt)
    history = run.history
    assert history.pbt_steps == [3, 6, 9, 12, 15, 18, 21]
    assert len(history.pbt_events) == 2 * 7
    for event in history.pbt_events:
        assert set(event) == {"step", "child", "parent", "before", "after"}
        assert event["after"]["lam"] != event["before"]["lam"] or event["before"]["lam"] == 0
    for place in range(len(SEEDS)):
        line = history.lineage(place)
        assert line["ancestry"][-1][1] == place and line["ancestry"][0][0] == 0
        assert line["steps"] == [0, *history.pbt_steps]
        # Its schedule ends with the hyper-parameters it trains with now.
        assert line["lam"][-1] == run.net.lam_host[place]
        assert line["rate_scale"][-1] == pytest.approx(run.hyper()["rate_scale"][place])
        for (step, child), (_, parent) in zip(line["ancestry"][1:], line["ancestry"],
                                              strict=False):
            assert {"step": step, "child": child, "parent": parent} in [
                {k: e[k] for k in ("step", "child", "parent")} for e in history.pbt_events]
    restored = History.from_dict(json.loads(json.dumps(history.to_dict(), allow_nan=False)))
    assert restored.to_dict() == history.to_dict()
    assert restored.lineage(0) == history.lineage(0)
    assert "pbt_events" not in _run(get_backend("cpu"), stop_at=3).history.to_dict()
    with pytest.raises(XpnetError, match="not that of a PBT run"):
        History().lineage(0)


def test_lineage_of_a_hand_made_history():
    history = History(pbt_steps=[10, 20], pbt_events=[
        {"step": 10, "child": 2, "parent": 0, "before": {}, "after": {}},
        {"step": 20, "child": 1, "parent": 2, "before": {}, "after": {}}],
        pbt_hyper={"lam": [[0.1, 0.2, 0.3], [0.1, 0.2, 0.15], [0.1, 0.3, 0.15]]})
    line = history.lineage(1)
    assert line["ancestry"] == [[0, 0], [10, 2], [20, 1]]
    assert line["places"] == [0, 2, 1] and line["lam"] == [0.1, 0.15, 0.3]
    assert history.lineage(0)["ancestry"] == [[0, 0]]
