"""Halving in the suite (issue 27): the spec carries it only when given and such a run is
never split; the lambda_halving study end to end on tiny data with --quick."""

from __future__ import annotations

import numpy as np
import pytest

from tests.studies.quick_run import quick_run
from xpnet import Halving

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _context(tiny_data):
    from experiments.suite import tasks as runs
    from experiments.suite.context import Context, Settings

    return Context(Settings(quick=True, data_dir=str(tiny_data)), None, tiny_data, None,
                   "lambda_halving", runs.DataSettings(str(tiny_data), False, True, "cpu"),
                   None)


def test_spec_has_halving_only_when_given_and_halving_runs_are_not_split(tiny_data,
                                                                        monkeypatch):
    from experiments.suite import spec as specs
    from experiments.suite.store import fingerprint

    ctx = _context(tiny_data)
    base = dict(hidden=(50, 50), seeds=[0, 1, 2], lam=[1e-3, 1e-2, 1e-1])
    plain = ctx.train_spec(**base)
    assert "halving" not in plain and specs.make_halving(plain) is None
    halving = Halving(rungs=(10, 30), eta=3)
    spec = ctx.train_spec(**base, halving=halving)
    assert specs.make_halving(spec) == halving
    assert {k: v for k, v in spec.items() if k != "halving"} == plain
    assert fingerprint(spec) != fingerprint(plain)
    with pytest.raises(Exception, match="does not divide"):
        ctx.train_spec(**base, halving=Halving(rungs=(10,), group_size=2))

    submitted = {}
    monkeypatch.setattr(ctx, "submit", lambda key, spec, fn, **kw: submitted.update({key: kw}))
    ctx.submit_train("plain", **base)
    ctx.submit_train("halving", **base, halving=halving)
    assert submitted["plain"]["splittable"] and not submitted["halving"]["splittable"]


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    return quick_run(tmp_path_factory, "lambda_halving")


def test_quick_study_trains_the_grid_in_full_and_with_halving(quick_study):
    out, results = quick_study
    runs = results["studies"]["lambda_halving"]["runs"]
    assert set(runs) == {"full", "halving"}
    full, half = runs["full"], runs["halving"]
    assert "halving" not in full["spec"] and half["spec"]["halving"]["eta"] == 3
    assert full["n_models"] == half["n_models"] == 18  # 9 lambdas x 2 seeds
    history = half["history"]
    survivors = history["survivors"]
    assert len(survivors) == 2 and survivors[1] == survivors[0] + 1  # one lambda's seeds
    test = np.array([np.nan if v is None else v for v in half["test_accuracy"]])
    dropped = np.array(history["dropped_step"])
    assert np.all(np.isfinite(test[survivors])) and np.all(np.isnan(test[dropped >= 0]))
    assert sorted(set(dropped[dropped >= 0].tolist())) == list(half["spec"]["halving"]["rungs"])
    assert half["model_steps"] < 0.4 * full["n_models"] * full["history"]["stopped_step"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Full search and successive halving: 9 lambdas x 2 seeds" in report
    figure = out / "figures" / "lambda_halving_curves.png"
    assert figure.read_bytes()[:8] == PNG_MAGIC


def test_a_halving_run_is_estimated_at_its_share_of_the_model_steps(tiny_data):
    from experiments.suite import spec as specs

    ctx = _context(tiny_data)
    schedule = ctx.cyclical(2)  # --quick: n_s 50, 200 steps, a record point every 10
    base = dict(hidden=(50, 50), seeds=list(range(9)), lam=0.005, schedule=schedule)
    spec = ctx.train_spec(**base, halving=Halving(rungs=(20, 70), eta=3))
    assert specs.halving_fraction(spec, 200, 100) == (9 * 20 + 3 * 50 + 1 * 130) / (9 * 200)
    full = specs.estimated_seconds(ctx.train_spec(**base))
    assert specs.estimated_seconds(spec) < 0.5 * full
