"""The markdown report, its number formats, and the figure helpers."""

from __future__ import annotations

import numpy as np

from xpnet.plots import Curve, Panel, plot_grouped_bars, plot_panels, plot_xy
from xpnet.report import (
    QUICK_BANNER, accuracy_cell, markdown_table, pct, render_report, sci, write_report)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_pct_is_mean_and_std_over_finite_values():
    assert pct([0.5]) == "50.0 %"
    assert pct([0.52, 0.54]) == "53.0 ± 1.0 %"
    assert pct([0.5, np.nan]) == "50.0 %"
    assert pct([np.nan]) == "—"
    assert sci(0.007) == "7.0e-03"
    assert sci(None) == "—"


def test_accuracy_cell_names_divergence_with_last_finite_figures():
    assert accuracy_cell([0.5, 0.52], [-1, -1]) == "51.0 ± 1.0 %"
    assert (accuracy_cell([np.nan, np.nan], [40, 12], [0.3, 0.2])
            == "diverged at step 12 (last finite: 25.0 ± 5.0 %)")
    assert accuracy_cell([0.5, np.nan], [-1, 7], [0.5, 0.1]) == "50.0 % (1/2 diverged at step 7)"


def test_markdown_table_escapes_pipes():
    table = markdown_table(["a", "b"], [["x|y", 1]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]


def _results(quick: bool) -> dict:
    return {
        "meta": {"updated": "2026-01-01T00:00:00", "device": "cpu (2 cores)", "quick": quick,
                 "seeds": 3, "versions": {"numpy": "2.0"}, "command": "python -m experiments.run"},
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


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


def test_figures_are_written_as_png(tmp_path):
    steps = np.arange(5) * 10
    values = np.linspace(2, 1, 5)[:, None] + np.array([[0.0, 0.1, np.nan]])
    p1 = plot_panels(tmp_path / "curves.png", "Curves",
                     [Panel("loss", "loss", [Curve("training", steps, values),
                                             Curve("validation", steps, values[:, 0], "--")])])
    p2 = plot_grouped_bars(tmp_path / "bars.png", "Bars", ["W1", "b1"],
                           {"BN": ([1e-9, np.nan], None), "no BN": ([1e-7, 1e-12], None)},
                           "max relative error", logy=True, missing_text="n/a")
    p3 = plot_xy(tmp_path / "xy.png", "Search", "log10(lambda)", "accuracy",
                 {"coarse": ([-5, -3, -1], [0.4, 0.5, 0.3])})
    for path in (p1, p2, p3):
        assert _is_png(path), path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png", "curves.png", "xy.png"]
