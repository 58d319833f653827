"""The run-spec format: per-model values (seeds, lambda, sigma, eps, rates, momentum) live
under spec["models"], and a run split into model groups merges back into the unsplit
run's record, also when a group stops early."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from experiments.suite import spec as specs
from experiments.suite import tasks as runs
from tests.records import assert_same_record
from xpnet import TrainConfig
from xpnet.data.synthetic import write_cifar_batches
from xpnet.training.schedules import ConstantLR, CyclicalLR


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-split-rates")
    write_cifar_batches(root, n_per_batch=200, seed=5)
    return runs.RunEnv(runs.DataSettings(str(root), quick=True))


def train_spec(env, *, seeds, lam, sigma=None, eps=None, schedule=None, momentum=0.0,
               n_train=500) -> dict:
    """A small training run's spec, written by the suite's own spec writer."""
    return specs.train_spec(
        data=env.data_sizes(), d_in=env.data.X_train.shape[1], n_classes=env.data.n_classes,
        hidden=(20, 10), seeds=seeds, lam=lam, sigma=sigma, eps=eps,
        batch_norm=sigma is None, init="he" if sigma is None else "normal",
        schedule=schedule or ConstantLR(0.05, steps=30, cycle_length=10),
        train=TrainConfig(batch_size=20, momentum=momentum, evals_per_cycle=3,
                          train_eval_size=None), n_train=n_train)


def _spec(env, schedule, momentum):
    return train_spec(env, seeds=[0, 1, 2, 0, 1], lam=[0.0, 1e-3, 0.0, 0.01, 0.0],
                      eps=[1e-5, 1e-3, 1e-8, 1e-5, 1e-5], schedule=schedule, momentum=momentum)


CASES = {
    "cyclical": (CyclicalLR(eta_min=(1e-5, 1e-4, 1e-3, 1e-5, 1e-5),
                            eta_max=(0.1, 0.05, 0.2, 0.01, 0.1), n_s=5, cycles=1),
                 (0.0, 0.5, 0.9, 0.8, 0.0)),
    "constant": (ConstantLR(eta=(0.001, 0.01, 0.05, 0.02, 0.003), steps=12, cycle_length=6),
                 0.8),
}


@pytest.mark.parametrize("case", CASES)
def test_per_model_values_live_under_models(env, case):
    schedule, momentum = CASES[case]
    spec = _spec(env, schedule, momentum)
    models = spec["models"]
    for field in schedule.per_model_fields():
        assert field not in spec["schedule"]
        assert models["schedule"][field] == list(getattr(schedule, field))
    assert models["eps"] == [1e-5, 1e-3, 1e-8, 1e-5, 1e-5]
    assert ("momentum" in models) == isinstance(momentum, tuple)
    assert ("momentum" in spec["train"]) != isinstance(momentum, tuple)
    assert specs.make_schedule(spec["schedule"], models) == schedule
    assert specs.make_train_config(spec).momentum == momentum
    before = copy.deepcopy(spec)
    parts = specs.split_spec(spec, 2)
    assert spec == before
    cut = len(parts[0]["models"]["seeds"])
    assert [p["models"]["schedule"] for p in parts] == [
        {k: v[:cut] for k, v in models["schedule"].items()},
        {k: v[cut:] for k, v in models["schedule"].items()}]
    assert [p["models"]["eps"] for p in parts] == [models["eps"][:cut], models["eps"][cut:]]
    assert [p["models"].get("momentum") for p in parts] == (
        [models["momentum"][:cut], models["momentum"][cut:]] if "momentum" in models
        else [None, None])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("groups", [2, 5])
def test_a_split_run_of_per_model_rates_merges_into_the_unsplit_record(env, case, groups):
    spec = _spec(env, *CASES[case])
    whole = runs.execute(runs.train_and_test, spec, env.settings, "whole")
    assert np.array(whole["history"]["eta"]).shape == (len(whole["history"]["steps"]), 5)
    parts = [runs.execute(runs.train_and_test, part, env.settings, f"part{i}")
             for i, part in enumerate(specs.split_spec(spec, groups))]
    assert len(parts) == groups
    assert_same_record(specs.merge_records(parts), whole)


def test_lockstep_models_differ_only_by_their_values(env):
    """Model 0 and 3 share a seed but not their rates or lambda: different results;
    a run of model 0 alone reproduces it."""
    spec = _spec(env, *CASES["cyclical"])
    whole = runs.execute(runs.train_and_test, spec, env.settings, "whole")
    assert whole["test_loss"][0] != whole["test_loss"][3]
    alone = train_spec(env, seeds=0, lam=0.0, eps=1e-5,
                       schedule=CyclicalLR(1e-5, 0.1, n_s=5, cycles=1))
    one = runs.execute(runs.train_and_test, alone, env.settings, "alone")
    np.testing.assert_allclose(one["test_loss"][0], whole["test_loss"][0], rtol=1e-5)


@pytest.mark.parametrize("groups", [2, 3, 5])
def test_a_split_run_of_per_model_lambdas_merges_into_the_unsplit_record(env, groups):
    spec = train_spec(env, seeds=[0, 1, 2, 0, 1], lam=[0.0, 1e-3, 1e-2, 0.1, 0.0], n_train=200)
    whole = runs.execute(runs.train_and_test, spec, env.settings, "t")
    parts = specs.split_spec(spec, groups)
    assert sum(specs.n_models(p) for p in parts) == 5
    merged = specs.merge_records([runs.execute(runs.train_and_test, p, env.settings, "t")
                                 for p in parts])
    assert_same_record(merged, whole)


def test_a_group_that_diverges_early_is_padded_like_the_whole(env):
    """Models 2 and 3 blow up (sigma 10): their group stops early, the merge pads with NaN."""
    spec = train_spec(env, seeds=[0, 1, 2, 3], lam=[0.0] * 4, sigma=[0.01, 0.01, 10.0, 10.0],
                      schedule=ConstantLR(0.5, steps=30, cycle_length=10), momentum=0.9,
                      n_train=200)
    whole = runs.execute(runs.train_and_test, spec, env.settings, "t")
    parts = [runs.execute(runs.train_and_test, p, env.settings, "t")
             for p in specs.split_spec(spec, 2)]
    assert parts[1]["history"]["stopped_step"] < parts[0]["history"]["stopped_step"]
    assert_same_record(specs.merge_records(parts), whole)


def test_split_leaves_the_spec_alone(env):
    spec = train_spec(env, seeds=[0, 1, 2], lam=[0.0, 0.1, 0.2])
    before = copy.deepcopy(spec)
    parts = specs.split_spec(spec, 8)
    assert spec == before
    assert [p["models"]["lam"] for p in parts] == [[0.0], [0.1], [0.2]]
