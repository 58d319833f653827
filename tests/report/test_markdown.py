"""The markdown report and its number formats (figures: test_plots.py)."""

from __future__ import annotations

import numpy as np

from experiments.suite.context import test_cell as record_test_cell
from experiments.report.markdown import (
    QUICK_BANNER, STD_NOTE, accuracy_cell, markdown_table, pct, render_report, sci,
    seeds_cell, split_outcome, write_report)


def test_pct_is_mean_and_population_std_over_finite_values():
    assert pct([0.5]) == "50.0 %"
    assert pct([0.52, 0.54]) == "53.0 ± 1.0 %"
    assert pct([0.5, 0.6]) == "55.0 ± 5.0 %"  # population std (ddof 0); sample: 7.1
    assert pct([0.5, np.nan]) == "50.0 %"
    assert pct([np.nan]) == "—"
    assert sci(0.007) == "7.0e-03"
    assert sci(None) == "—"


def test_accuracy_cell_names_divergence_with_last_finite_figures():
    assert accuracy_cell([0.5, 0.52], [-1, -1]) == "51.0 ± 1.0 %"
    assert (accuracy_cell([np.nan, np.nan], [40, 12], [0.3, 0.2])
            == "diverged at step 12 (last finite: 25.0 ± 5.0 %)")
    assert accuracy_cell([0.5, np.nan], [-1, 7], [0.5, 0.1]) == "50.0 % (1/2 diverged at step 7)"


def test_split_seeds_are_shown_one_by_one_with_counts():
    split = [0.508, 0.100, 0.446]
    assert seeds_cell(split) == "2 of 3 trained: 44.6, 50.8 %; 1 stuck at 10.0 %"
    assert pct(split) == "35.1 ± 18.0 %"  # what a mean ± std would have said
    stuck, trained = split_outcome(split)
    assert stuck.tolist() == [False, True, False] and trained.tolist() == [True, False, True]
    # Seed noise is not a split: all near chance, or all trained, or merely low.
    for values in ([0.10, 0.11, 0.113], [0.44, 0.51, 0.50], [0.10, 0.14]):
        assert split_outcome(values) is None and seeds_cell(values) == pct(values)
    assert seeds_cell([0.1, 0.113, 0.5]) == "1 of 3 trained: 50.0 %; 2 stuck at 10.0, 11.3 %"


def test_split_cells_in_tables_and_headline_with_divergence():
    assert (accuracy_cell([0.1, 0.446, np.nan, 0.508], [-1, -1, 30, -1])
            == "2 of 3 trained: 44.6, 50.8 %; 1 stuck at 10.0 % (1/4 diverged at step 30)")
    record = {"test_accuracy": [0.1, 0.446, 0.508, 0.52], "diverged_step": [-1] * 4,
              "last_val_accuracy": [0.1, 0.45, 0.5, 0.52]}
    cell = record_test_cell(record, [0, 1, 2])
    assert cell == "2 of 3 trained: 44.6, 50.8 %; 1 stuck at 10.0 %"
    results = _results(quick=False)
    results["studies"]["depth_bn"]["headline"].append(["3-layer, no BN", cell, "52 %"])
    assert f"| depth_bn | 3-layer, no BN | {cell} | 52 % |" in render_report(results)


def test_markdown_table_escapes_pipes():
    table = markdown_table(["a", "b"], [["x|y", 1]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]


def _results(quick: bool) -> dict:
    return {
        "meta": {"updated": "2026-01-01T00:00:00", "device": "cpu (2 cores)",
                 "scale": {"quick": quick, "seeds": 3}, "versions": {"numpy": "2.0"},
                 "command": "python -m experiments.run"},
        "studies": {
            "depth_bn": {
                "description": "Depth and BN.", "status": "done", "wall_s": 12.0,
                "summary": "best test 53.0 %",
                "headline": [["3-layer, BN", "53.0 ± 0.2 %", "53 %"]],
                "tables": [{"title": "Test accuracy", "columns": ["setting", "ours", "reports"],
                            "rows": [["3-layer, BN", "53.0 ± 0.2 %", "53 %"]]}],
                "figures": ["figures/depth_bn_3-layer-bn.png"],
            },
            "lr_bn": {"status": "running", "runs": {}},
        },
    }


def test_report_has_headline_tables_figures_and_quick_banner(tmp_path):
    text = render_report(_results(quick=True), order=["depth_bn", "lr_bn", "missing"])
    assert text.startswith("# ")
    assert QUICK_BANNER in text
    assert "## Headline" in text
    assert "| depth_bn | 3-layer, BN | 53.0 ± 0.2 % | 53 % |" in text
    assert "### Test accuracy" in text
    assert "![depth_bn_3-layer-bn](figures/depth_bn_3-layer-bn.png)" in text
    assert "## lr_bn" in text and "Status: running" in text
    assert "## missing" not in text
    assert QUICK_BANNER not in render_report(_results(quick=False))
    path = write_report(_results(quick=False), tmp_path / "report.md")
    assert path.read_text(encoding="utf-8").count("| 3-layer, BN |") == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_report_reads_the_scale_and_says_which_std():
    text = render_report(_results(quick=True))
    assert "- Seeds per setting: 3 " in text and STD_NOTE in text
    old = _results(quick=True)  # results.json written before meta["scale"]
    old["meta"].update(old["meta"].pop("scale"))
    assert render_report(old) == text


def test_differences_are_explanations_and_long_tables_go_to_the_appendix():
    results = _results(quick=False)
    study = results["studies"]["depth_bn"]
    study["differences"] = [{"setting": "9-layer, BN, sigma 1e-4", "ours": "10.0 ± 0.0 %",
                             "reports": "—", "cause": "eps dominates the tiny variance."}]
    study["tables"].append({"title": "Per parameter", "appendix": True, "columns": ["p"],
                            "rows": [["W1"]]})
    text = render_report(results)
    head, _, rest = text.partition("## depth_bn")
    assert "## Where we differ from the reports" in head
    assert ("- **9-layer, BN, sigma 1e-4** (depth_bn): ours 10.0 ± 0.0 %, reports —. "
            "*Likely cause (explanation, not a finding):* eps dominates the tiny variance."
            in head)
    section, _, appendix = rest.partition("## Appendix")
    assert "| W1 |" not in section and "appendix" in section
    assert "### Per parameter (depth_bn)" in appendix and "| W1 |" in appendix
