""""Where we differ from the reports": which cells differ, and what each entry says.

Synthetic records stand in for runs: a record needs only the per-model test accuracy,
divergence step and last finite validation accuracy that the studies' cells read.
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments.report.markdown import DIFFERS_BY, differs, render_report
from experiments.studies import bn_eps, depth_bn, init_sensitivity, lr_bn
from experiments.studies.kit import Grid


def record(*accuracies) -> dict:
    """A run record of M models with these test accuracies (NaN: diverged at step 7)."""
    acc = np.asarray(accuracies, dtype=np.float64)
    return {"test_accuracy": [None if np.isnan(a) else a for a in acc],
            "diverged_step": [7 if np.isnan(a) else -1 for a in acc],
            "last_val_accuracy": [0.1 if np.isnan(a) else a for a in acc]}


def test_a_cell_differs_when_its_mean_is_more_than_3_points_from_the_reports():
    assert DIFFERS_BY == 0.03
    assert not differs([0.51, 0.53], 0.535)
    assert differs([0.49, 0.50], 0.535)  # 4 points below
    assert differs([0.58], 0.535) and not differs([0.56], 0.535)
    # Two reports that disagree: ours differs only outside their range, widened by 3.
    assert not differs([0.46], (0.498, 0.414)) and differs([0.36], (0.498, 0.414))
    assert differs([np.nan, np.nan], 0.45)  # every seed diverged where theirs trained
    assert not differs([0.2, np.nan], 0.21)  # the survivors count
    assert not differs([0.9], None)  # nothing to compare with


LR_BN_NUMBERS = {  # the full default run of the issue: seeds per rate
    True: [(0.42, 0.425, 0.43), (0.49, 0.50, 0.495), (0.45, 0.44, 0.455)],
    False: [(0.446, 0.448, 0.450), (0.455, 0.461, 0.468), (np.nan, np.nan, np.nan)],
}


def lr_bn_records(numbers):
    n = 3
    recs = {bn: record(*[a for rate in rates for a in rate]) for bn, rates in numbers.items()}
    return recs, [list(range(i * n, (i + 1) * n)) for i in range(len(lr_bn.ETAS))]


def test_lr_bn_names_every_cell_that_differs_and_the_reports_set_up():
    recs, cols = lr_bn_records(LR_BN_NUMBERS)
    found = {d["setting"]: d for d in lr_bn.differences(recs, cols, 45000)}
    assert set(found) == {"2-layer, no BN, eta 0.0005", "2-layer, no BN, eta 0.03"}
    small = found["2-layer, no BN, eta 0.0005"]
    assert small["ours"] == "44.8 ± 0.2 %" and small["reports"] == "21.1 %"
    for words in ("49,000", "45,000", "He initialisation", "momentum 0.8", "10 epochs",
                  "none of our 3 seeds comes within 3 points", "initial weights"):
        assert words in small["cause"], words
    assert "49,000" in found["2-layer, no BN, eta 0.03"]["cause"]
    # Within 3 points, or diverged where the report could not train: no entry.
    assert lr_bn.difference(True, 1, np.array([0.48, 0.50])) is None
    assert lr_bn.difference(False, 2, np.full(3, np.nan)) is None
    trained = lr_bn.difference(False, 2, np.array([0.35, np.nan, np.nan]))
    assert "ours trained where the report's net could not" in trained


def test_every_headline_cell_more_than_3_points_off_has_an_entry():
    """Across lr_bn's cells: a cell's entry exists exactly when it differs."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        numbers = {bn: [tuple(rng.uniform(0.1, 0.6, 3)) for _ in lr_bn.ETAS]
                   for bn in (True, False)}
        recs, cols = lr_bn_records(numbers)
        found = {d["setting"] for d in lr_bn.differences(recs, cols, 45000)}
        for bn in (True, False):
            for i, eta in enumerate(lr_bn.ETAS):
                reports = lr_bn.REPORTS_ACC[bn][i]
                mean = float(np.mean(numbers[bn][i]))
                expect = (abs(mean - reports) > DIFFERS_BY if reports is not None
                          else max(numbers[bn][i]) > 0.15)
                setting = f"2-layer, {lr_bn.TAGS[bn]}, eta {eta:g}"
                assert (setting in found) == expect, (setting, numbers[bn][i])


def test_depth_bn_compares_with_both_reports_where_there_are_two():
    assert depth_bn.difference("9-layer", False, [0.45, 0.46]) is None  # 41.4 .. 49.8
    assert "two reports differ" in depth_bn.difference("9-layer", False, [0.36, 0.37])
    assert depth_bn.difference("3-layer", True, [0.535]) is None
    assert depth_bn.difference("3-layer", True, [0.49, 0.495]) == (
        "none known (the reports give one run, ours is the mean of 2 seeds).")


def bn_eps_record(acc_by_eps: dict, n: int = 2) -> tuple[dict, dict]:
    """A 9-layer bn_eps record: every (sigma, eps) cell at 0.45 but sigma 1e-4's."""
    grid = Grid(range(n), sigma=bn_eps.SIGMAS, eps=bn_eps.EPS)
    cols = {(s, e): grid.columns(sigma=s, eps=e) for s in bn_eps.SIGMAS for e in bn_eps.EPS}
    acc = np.full(grid.n_models, 0.45)
    for eps, values in acc_by_eps.items():
        acc[cols[1e-4, eps]] = values
    return record(*acc), cols


@pytest.mark.parametrize("acc_by_eps, verdict", [
    ({1e-3: (0.1, 0.1), 1e-5: (0.1, 0.1), 1e-8: (0.308, 0.332)}, "supported:"),
    ({1e-3: (0.1, 0.1), 1e-5: (0.1, 0.1), 1e-8: (0.1, 0.1)}, "not supported"),
    ({1e-3: (0.3, 0.3), 1e-5: (0.3, 0.3), 1e-8: (0.3, 0.3)}, "not decided"),
])
def test_bn_eps_says_what_its_runs_show_of_the_eps_explanation(acc_by_eps, verdict):
    rec, cols = bn_eps_record(acc_by_eps)
    evidence = bn_eps.eps_evidence(rec, cols)
    assert evidence.startswith(verdict), evidence
    if verdict == "supported:":
        assert "32.0 ± 1.2 % with eps 1e-8 against 10.0 ± 0.0 % with eps 1e-5" in evidence


def test_the_deep_bn_entry_cites_bn_eps_instead_of_calling_it_untested():
    entry = init_sensitivity.difference("9-layer", 1e-4, True, np.full(3, 0.1))
    assert entry["tested_by"] == ["bn_eps", bn_eps.EPS_CLAIM]
    assert "tests this cause" not in entry["cause"]
    rec, cols = bn_eps_record({1e-3: (0.1, 0.1), 1e-5: (0.1, 0.1), 1e-8: (0.308, 0.332)})
    studies = {"init_sensitivity": {"differences": [
        {"setting": "9-layer, sigma 0.0001, BN", "ours": "10.0 %", **entry}]},
        "bn_eps": {"evidence": {bn_eps.EPS_CLAIM: bn_eps.eps_evidence(rec, cols)}}}
    text = render_report({"meta": {}, "studies": studies})
    line = next(li for li in text.splitlines() if li.startswith("- **9-layer, sigma 0.0001"))
    assert "*Tested by the bn_eps study:* supported: " in line
    assert "32.0 ± 1.2 % with eps 1e-8 against 10.0 ± 0.0 % with eps 1e-5" in line
    assert "not a finding" not in line
    # Without bn_eps in the report, the entry says where the test is.
    del studies["bn_eps"]
    text = render_report({"meta": {}, "studies": studies})
    assert "not in this report; run it with `--only bn_eps`" in text


def test_init_sensitivity_cells_off_by_more_than_3_points_have_an_entry():
    assert init_sensitivity.difference("3-layer", 1e-4, True, np.full(3, 0.52)) is None
    off = init_sensitivity.difference("3-layer", 1e-4, True, np.array([0.49, 0.50, 0.50]))
    assert off["reports"] == "~53.6 %" and "none known" in off["cause"]
    assert init_sensitivity.difference("9-layer", 1e-1, False, np.full(3, 0.3)) is None


def test_a_quick_report_lists_no_differences():
    studies = {"lr_bn": {"differences": [{"setting": "2-layer, no BN, eta 0.0005",
                                          "ours": "25.1 %", "reports": "21.1 %",
                                          "cause": "none known."}]}}
    full = render_report({"meta": {"scale": {"quick": False}}, "studies": studies})
    quick = render_report({"meta": {"scale": {"quick": True}}, "studies": studies})
    assert "## Where we differ" in full and "2-layer, no BN, eta 0.0005" in full
    assert "## Where we differ" not in quick and "2-layer, no BN, eta 0.0005" not in quick
    assert "not comparable" in quick
