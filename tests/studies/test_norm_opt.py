"""The norm_opt study end to end on tiny data with --quick: one lockstep run per
(depth, normalization, optimizer) with the seeds as models, Adam's rate from its range
test, the dropout x lambda grid in one run, and the report's tables and figures."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.studies import norm_opt
from tests.studies.quick_run import quick_run
from xpnet import NetworkConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    return quick_run(tmp_path_factory, "norm_opt", "--seeds", "2")


def test_each_setting_is_one_lockstep_run_and_adam_takes_its_range_tests_rate(quick_study):
    _, results = quick_study
    runs = results["studies"]["norm_opt"]["runs"]
    for depth in norm_opt.DEPTHS:
        for norm in norm_opt.NORMS:
            sgd = runs[norm_opt.key(depth, norm, "SGD")]
            adam = runs[norm_opt.key(depth, norm, "Adam")]
            sweep = runs[f"range-{depth}-{norm or 'none'}"]
            for rec in (sgd, adam, sweep):
                assert rec["n_models"] == 2 and rec["spec"]["models"]["seeds"] == [0, 1]
                assert NetworkConfig.from_dict(rec["spec"]["config"]).norm == norm
            assert sgd["spec"]["schedule"]["type"] == "CyclicalLR"
            assert sgd["spec"]["train"].get("optimizer") is None  # the reports' SGD
            assert sgd["spec"]["train"]["momentum"] == 0.0
            assert adam["spec"]["train"]["optimizer"]["type"] == "Adam"
            assert adam["history"]["steps"] == sgd["history"]["steps"]  # same steps
            eta = np.asarray(sweep["history"]["eta"], dtype=np.float64)
            val = np.array([[np.nan if v is None else v for v in row]
                            for row in sweep["history"]["metrics"]["val_accuracy"]])
            _, rate = norm_opt.adam_rate(eta, val)
            assert adam["spec"]["schedule"] == {"type": "ConstantLR", "eta": rate,
                                                "steps": sgd["history"]["stopped_step"],
                                                "cycle_length": 50}
    grid = runs["3-layer-dropout-lam"]
    assert grid["n_models"] == 18  # 3 dropouts x 3 lambdas x 2 seeds
    models = grid["spec"]["models"]
    assert models["dropout"] == [d for d in norm_opt.DROPOUTS for _ in range(6)]
    assert models["lam"][:6] == [lam for lam in norm_opt.LAMS for _ in range(2)]


def test_report_has_the_tables_the_paper_notes_and_the_figures(quick_study):
    out, results = quick_study
    report = (out / "report.md").read_text(encoding="utf-8")
    for title in ("Test accuracy by normalization and optimizer", "What normalization buys",
                  "Adam's rate from the range test", "Dropout against L2"):
        assert title in report
    for paper in ("Ioffe & Szegedy (2015)", "Ba, Kiros & Hinton (2016)", "Kingma & Ba (2015)"):
        assert paper in report
    for name in ("bars", "curves", "dropout"):
        figure = out / "figures" / f"norm_opt_{name}.png"
        assert figure.read_bytes()[:8] == PNG_MAGIC
        assert f"figures/norm_opt_{name}.png" in report


@pytest.mark.parametrize(("diffs", "expected"), [
    ([(0.02, True), (0.03, True)], "agrees"),
    ([(-0.02, True), (-0.03, True)], "disagrees"),
    ([(0.02, False), (-0.01, False)], "shows no clear difference"),
    ([(0.02, True), (-0.01, True), (0.0, False)],
     "agrees in 1 of 3, disagrees in 1, no clear difference in 1"),
])
def test_verdict_counts_clear_gaps_by_sign(diffs, expected):
    assert norm_opt.verdict(diffs) == expected


def test_a_gap_is_clear_only_beyond_the_seed_stds():
    assert norm_opt.gap([0.50, 0.52], [0.40, 0.42]) == pytest.approx((0.10, True))
    diff, clear = norm_opt.gap([0.50, 0.60], [0.48, 0.56])
    assert diff == pytest.approx(0.03) and not clear  # stds 0.05 + 0.04 exceed it
    assert not norm_opt.gap([0.500], [0.497])[1]  # under half a point
    assert norm_opt.points(*norm_opt.gap([0.5], [np.nan])) == "n/a"
