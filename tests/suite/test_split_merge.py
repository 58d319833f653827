"""Per-model rates, momentum and eps in run specs: they live under spec["models"], and a
run split into model groups merges back into the unsplit run's record."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from experiments.suite import tasks as runs
from experiments.suite.context import Context, Settings
from xpnet.schedules import ConstantLR, CyclicalLR
from xpnet.testing import write_cifar_batches


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-split-rates")
    write_cifar_batches(root, n_per_batch=200, seed=5)
    settings = runs.DataSettings(str(root), quick=True)
    return Context(Settings(quick=True), store=None, out_dir=Path(root), executor=None,
                   study_name="test", data_settings=settings, reporter=None)


def _spec(ctx, schedule, momentum):
    return ctx.train_spec(hidden=(20, 10), seeds=[0, 1, 2, 0, 1], lam=[0.0, 1e-3, 0.0, 0.01, 0.0],
                          eps=[1e-5, 1e-3, 1e-8, 1e-5, 1e-5], schedule=schedule,
                          train=ctx.train_config(momentum=momentum, evals_per_cycle=3),
                          n_train=500)


def _assert_same(merged: dict, whole: dict) -> None:
    assert merged["n_models"] == whole["n_models"]
    for key in ("steps", "eta", "diverged_step", "stopped_step"):
        assert merged["history"][key] == whole["history"][key], key
    assert whole["history"]["metrics"].keys() == merged["history"]["metrics"].keys()
    for key, rows in whole["history"]["metrics"].items():
        np.testing.assert_allclose(np.array(merged["history"]["metrics"][key], dtype=float),
                                   np.array(rows, dtype=float), rtol=1e-5, atol=1e-6,
                                   equal_nan=True, err_msg=key)
    for key in ("test_accuracy", "test_loss", "last_val_accuracy", "diverged_step"):
        np.testing.assert_allclose(np.array(merged[key], dtype=float),
                                   np.array(whole[key], dtype=float), rtol=1e-5, atol=1e-6,
                                   equal_nan=True, err_msg=key)


CASES = {
    "cyclical": (CyclicalLR(eta_min=(1e-5, 1e-4, 1e-3, 1e-5, 1e-5),
                            eta_max=(0.1, 0.05, 0.2, 0.01, 0.1), n_s=5, cycles=1),
                 (0.0, 0.5, 0.9, 0.8, 0.0)),
    "constant": (ConstantLR(eta=(0.001, 0.01, 0.05, 0.02, 0.003), steps=12, cycle_length=6),
                 0.8),
}


@pytest.mark.parametrize("case", CASES)
def test_per_model_values_live_under_models(ctx, case):
    schedule, momentum = CASES[case]
    spec = _spec(ctx, schedule, momentum)
    models = spec["models"]
    for field in schedule.per_model_fields():
        assert field not in spec["schedule"]
        assert models["schedule"][field] == list(getattr(schedule, field))
    assert models["eps"] == [1e-5, 1e-3, 1e-8, 1e-5, 1e-5]
    assert ("momentum" in models) == isinstance(momentum, tuple)
    assert ("momentum" in spec["train"]) != isinstance(momentum, tuple)
    assert runs.make_schedule(spec["schedule"], models) == schedule
    assert runs.make_train_config(spec).momentum == momentum
    before = copy.deepcopy(spec)
    parts = runs.split_spec(spec, 2)
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
def test_a_split_run_of_per_model_rates_merges_into_the_unsplit_record(ctx, case, groups):
    spec = _spec(ctx, *CASES[case])
    whole = runs.execute(runs.train_and_test, spec, ctx.data_settings, "whole")
    assert np.array(whole["history"]["eta"]).shape == (len(whole["history"]["steps"]), 5)
    parts = [runs.execute(runs.train_and_test, part, ctx.data_settings, f"part{i}")
             for i, part in enumerate(runs.split_spec(spec, groups))]
    assert len(parts) == groups
    _assert_same(runs.merge_records(parts), whole)


def test_lockstep_models_differ_only_by_their_values(ctx):
    """Model 0 and 3 share a seed but not their rates or lambda: different results;
    a run of model 0 alone reproduces it."""
    spec = _spec(ctx, *CASES["cyclical"])
    whole = runs.execute(runs.train_and_test, spec, ctx.data_settings, "whole")
    assert whole["test_loss"][0] != whole["test_loss"][3]
    alone = ctx.train_spec(hidden=(20, 10), seeds=0, lam=0.0, eps=1e-5,
                           schedule=CyclicalLR(1e-5, 0.1, n_s=5, cycles=1),
                           train=ctx.train_config(momentum=0.0, evals_per_cycle=3), n_train=500)
    one = runs.execute(runs.train_and_test, alone, ctx.data_settings, "alone")
    np.testing.assert_allclose(one["test_loss"][0], whole["test_loss"][0], rtol=1e-5)
