"""PBT in the suite (issue 36): the spec carries it (and ``ensemble``) only when given and
such runs are never split; the ensemble's accuracy; the pbt study end to end with --quick."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.studies.quick_run import quick_run
from xpnet import PBT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _context(tiny_data):
    from experiments.suite import tasks as runs
    from experiments.suite.context import Context, Settings

    return Context(Settings(quick=True, data_dir=str(tiny_data)), None, tiny_data, None,
                   "pbt", runs.DataSettings(str(tiny_data), False, True, "cpu"), None)


def test_spec_has_pbt_only_when_given_and_pbt_runs_are_not_split(tiny_data, monkeypatch):
    from experiments.suite import spec as specs
    from experiments.suite.store import fingerprint

    ctx = _context(tiny_data)
    base = dict(hidden=(50, 50), seeds=[0, 1, 2], lam=[1e-3, 1e-2, 1e-1])
    plain = ctx.train_spec(**base)
    assert "pbt" not in plain and "ensemble" not in plain and specs.make_pbt(plain) is None
    pbt = PBT(2, unit="epochs", resample=0.5,
              space={"lam": (1e-4, 1e-1), "dropout": [0.0, 0.1]})
    spec = json.loads(json.dumps(ctx.train_spec(**base, pbt=pbt, ensemble=2)))
    assert specs.make_pbt(spec) == pbt and spec["ensemble"] == 2
    assert {k: v for k, v in spec.items() if k not in ("pbt", "ensemble")} == json.loads(
        json.dumps(plain))
    assert fingerprint(spec) != fingerprint(plain)

    submitted = {}
    monkeypatch.setattr(ctx, "submit", lambda key, spec, fn, **kw: submitted.update({key: kw}))
    ctx.submit_train("plain", **base)
    ctx.submit_train("pbt", **base, pbt=pbt)
    ctx.submit_train("ensemble", **base, ensemble=2)
    assert submitted["plain"]["splittable"]
    assert not submitted["pbt"]["splittable"] and not submitted["ensemble"]["splittable"]


def test_the_ensemble_accuracy_averages_the_best_models_probabilities():
    from experiments.suite.tasks import ensemble_accuracy
    from tests.problems import blobs
    from xpnet import ConstantLR, Network, NetworkConfig, get_backend
    from xpnet.training import DeviceSplit, TrainConfig, train

    be = get_backend("cpu")
    X, y = blobs(120, 10, 3, 0, spread=1.0)
    Xv, yv = blobs(60, 10, 3, 1, spread=1.0)
    tr, va = (DeviceSplit.from_host(be, a, b, 3, be.dtype("float64")) for a, b in
              ((X, y), (Xv, yv)))
    net = Network.create(NetworkConfig(d_in=10, hidden=(6,), n_classes=3), seeds=[0, 1, 2, 3],
                         lam=[0.0, 0.01, 0.1, 1.0], dtype="float64")
    history = train(net, ConstantLR(eta=0.05, steps=12, cycle_length=12), tr, va,
                    TrainConfig(batch_size=20), progress=False)
    history.diverged_step[1] = 5  # as if model 1 had diverged: never chosen
    val = history.last_finite("val_accuracy")
    chosen = [m for m in np.argsort(-val, kind="stable") if m != 1][:2]
    scores, _ = net.forward(va.X, train=False)
    proba = np.exp(scores - scores.max(axis=-1, keepdims=True))
    proba = (proba / proba.sum(axis=-1, keepdims=True))[chosen].mean(axis=0)
    expected = np.mean(np.argmax(proba, axis=1) == yv)
    assert ensemble_accuracy(net, va, history, np.arange(4), 2) == expected


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    return quick_run(tmp_path_factory, "pbt")


def test_quick_study_trains_each_population_with_and_without_pbt(quick_study):
    out, results = quick_study
    runs = results["studies"]["pbt"]["runs"]
    assert set(runs) == {"3-layer-pbt", "3-layer-population", "3-layer-lambda",
                         "9-layer-pbt", "9-layer-population", "9-layer-bn"}
    for arch in ("3-layer", "9-layer"):
        pbt, plain = runs[f"{arch}-pbt"], runs[f"{arch}-population"]
        assert "pbt" in pbt["spec"] and "pbt" not in plain["spec"]
        assert pbt["n_models"] == plain["n_models"] == 8
        steps = plain["n_models"] * plain["history"]["stopped_step"]
        assert pbt["model_steps"] == steps  # exploits cost no model-steps
        assert 0 <= pbt["ensemble_test_accuracy"] <= 1
        history = pbt["history"]
        assert history["pbt_steps"] and history["pbt_events"]
        assert "pbt_events" not in plain["history"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Population-based training against the same population" in report
    assert (out / "figures" / "pbt_schedules.png").read_bytes()[:8] == PNG_MAGIC


def test_results_give_each_final_models_ancestry(quick_study):
    pytest.importorskip("pandas", reason='pandas is not installed; pip install ".[dev]"')
    from experiments.results import lineage, load

    out, results = quick_study
    models, _ = load(out)
    pbt = models[models.key == "3-layer-pbt"].sort_values("model")
    record = results["studies"]["pbt"]["runs"]["3-layer-pbt"]
    for m, ancestry in zip(pbt["model"], pbt["pbt_ancestry"], strict=True):
        line = lineage(record, int(m))
        assert ancestry == " -> ".join(f"{s}:{p}" for s, p in line["ancestry"])
        assert line["ancestry"][-1][1] == m and len(line["lam"]) == len(line["steps"])
    assert models[models.key == "3-layer-population"]["pbt_ancestry"].isna().all()
