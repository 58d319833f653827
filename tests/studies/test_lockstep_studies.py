"""The studies whose settings vary per model, end to end on tiny data: lr_bn, lr_range,
bn_eps and activations each train their grid as lockstep runs, and report it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpnet.data.synthetic import write_cifar_batches

REPO = Path(__file__).resolve().parents[2]
STUDIES = ("lr_bn", "lr_range", "bn_eps", "activations")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_lockstep_studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-lockstep")
    write_cifar_batches(root, n_per_batch=200, seed=2)
    out = tmp_path_factory.mktemp("lockstep") / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--quick", "--only", ",".join(STUDIES),
         "--seeds", "2", "--workers", "1", "--no-progress", "--data-dir", str(root),
         "--out", str(out)], cwd=REPO, env=dict(os.environ), capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_list_shows_these_studies():
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "--list"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("lr_range", "bn_eps", "activations"):
        assert name in proc.stdout


def test_runs_are_lockstep(quick_lockstep_studies):
    _, _, results = quick_lockstep_studies
    studies = results["studies"]
    assert set(studies) == set(STUDIES)
    lr_bn = studies["lr_bn"]["runs"]
    assert set(lr_bn) == {"bn", "nobn"}
    for rec in lr_bn.values():  # 3 rates x 2 seeds in one network, the rate per model
        assert rec["n_models"] == 6
        assert rec["spec"]["models"]["schedule"]["eta"] == [0.0005] * 2 + [0.03] * 2 + [0.8] * 2
    assert set(studies["lr_range"]["runs"]) == {"range-bn", "range-nobn", "final-bn",
                                                "final-nobn"}
    final = studies["lr_range"]["runs"]["final-bn"]["spec"]["models"]["schedule"]
    assert final["eta_max"][2:] == [0.1, 0.1] and final["eta_min"][2:] == [1e-5, 1e-5]
    bn_eps = studies["bn_eps"]["runs"]
    assert set(bn_eps) == {"3-layer", "9-layer", "3-layer-init", "9-layer-init"}
    assert bn_eps["9-layer"]["n_models"] == 18
    assert sorted(set(bn_eps["9-layer"]["spec"]["models"]["eps"])) == [1e-8, 1e-5, 1e-3]
    assert np.shape(bn_eps["9-layer-init"]["pre_var"]) == (9, 18)
    acts = studies["activations"]["runs"]["bn"]["activations"]
    n_points = len(studies["activations"]["runs"]["bn"]["history"]["steps"])
    assert acts["steps"] == studies["activations"]["runs"]["bn"]["history"]["steps"]
    assert np.shape(acts["percentiles"]) == (n_points, 8, 2, 3)
    assert np.shape(acts["z_std"]) == (n_points, 8, 2)


def test_bn_eps_init_variance_collapses_below_eps(quick_lockstep_studies):
    """9 layers at sigma 1e-4: with eps 1e-3 the deepest pre-activations are far smaller
    than with eps 1e-8 (batch norm shrinks instead of normalising)."""
    _, _, results = quick_lockstep_studies
    var = np.asarray(results["studies"]["bn_eps"]["runs"]["9-layer-init"]["pre_var"])
    models = results["studies"]["bn_eps"]["runs"]["9-layer"]["spec"]["models"]
    pick = {eps: [m for m in range(18) if models["sigma"][m] == 1e-4 and models["eps"][m] == eps]
            for eps in (1e-3, 1e-8)}
    assert var[-2, pick[1e-3]].max() < 1e-20 < var[-2, pick[1e-8]].min()


def test_report_sections_tables_and_figures(quick_lockstep_studies):
    proc, out, results = quick_lockstep_studies
    report = (out / "report.md").read_text(encoding="utf-8")
    for name in STUDIES:
        study = results["studies"][name]
        assert study["status"] == "done"
        assert f"## {name}" in report
        assert len(study["headline"]) >= 1 and study["tables"]
        for rel in study["figures"]:
            path = out / rel
            assert path.read_bytes()[:8] == PNG_MAGIC, rel
            assert f"]({rel})" in report
    assert len(results["studies"]["lr_range"]["headline"]) == 1
    assert len(results["studies"]["bn_eps"]["headline"]) == 1
    assert len(results["studies"]["activations"]["headline"]) == 1
    assert "Smith" in report and "Ioffe" in report


def test_figures_fit_a_page(quick_lockstep_studies):
    """About 1000 px wide, taller than a third of their width, no taller than wide."""
    import matplotlib.image as mpimg

    _, out, results = quick_lockstep_studies
    for name in STUDIES:
        for rel in results["studies"][name]["figures"]:
            h, w = mpimg.imread(out / rel).shape[:2]
            assert 900 <= w <= 1100 and w / 3 <= h <= w, (rel, w, h)
