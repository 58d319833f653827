"""Study 5: sensitivity to the initial weight scale, with and without batch norm.

Weights ~ N(0, sigma^2) for sigma in {1e-1, 1e-3, 1e-4} instead of He.  One run per
(architecture, BN) whose M = 3 sigmas x N seeds models train together (sigma and
seed are per-model); model ``i * N + s`` has sigma ``SIGMAS[i]`` and seed ``s``.
"""

from __future__ import annotations

import numpy as np

from experiments.common import ARCHS, mean_test, metric, test_cell
from xpnet.plots import Curve, Panel, plot_panels

NAME = "init_sensitivity"
DESCRIPTION = ("Initial weights N(0, sigma^2), sigma in {1e-1, 1e-3, 1e-4}, BN on and off, "
               "3-layer and 9-layer: loss curves and test accuracy.")
SIGMAS = (1e-1, 1e-3, 1e-4)


def reports(arch: str, sigma: float, bn: bool) -> str:
    """The reports' figure for a cell (they quote the 3-layer net)."""
    if not bn and sigma <= 1e-3:
        return "10 % (stays at chance)"
    if bn and arch == "3-layer":
        return "~53.6 %"
    return "—"


def run(ctx) -> dict:
    n = len(ctx.seeds)
    sigma = [s for s in SIGMAS for _ in ctx.seeds]
    seeds = ctx.seeds * len(SIGMAS)
    schedule = ctx.cyclical(2)
    rows, headline, figures = [], [], []
    worst_gap = None
    for arch in ("3-layer", "9-layer"):
        recs = {}
        for bn in (True, False):
            key = f"{arch}-{'bn' if bn else 'nobn'}"
            recs[bn] = ctx.train_run(key, hidden=ARCHS[arch], seeds=seeds, sigma=sigma,
                                     init="normal", batch_norm=bn, schedule=schedule)
        panels = []
        for i, s in enumerate(SIGMAS):
            cols = list(range(i * n, (i + 1) * n))
            cells = {bn: test_cell(recs[bn], cols) for bn in (True, False)}
            rows.append([arch, f"{s:g}", cells[True], reports(arch, s, True), cells[False],
                         reports(arch, s, False)])
            headline += [[f"{arch}, sigma {s:g}, {'BN' if bn else 'no BN'}", cells[bn],
                          reports(arch, s, bn)] for bn in (True, False)]
            gap = mean_test(recs[True], cols) - mean_test(recs[False], cols)
            if np.isfinite(gap) and (worst_gap is None or gap > worst_gap[0]):
                worst_gap = (gap, f"{arch}, sigma {s:g}")
            curves = []
            for bn in (True, False):
                steps = recs[bn]["history"]["steps"]
                tag = "BN" if bn else "no BN"
                curves += [Curve(f"{tag}, training", steps, metric(recs[bn], "train_loss")[:, cols],
                                 "-"),
                           Curve(f"{tag}, validation", steps,
                                 metric(recs[bn], "val_loss")[:, cols], "--")]
            panels.append(Panel(f"sigma = {s:g}", "cross-entropy loss", curves))
        path, rel = ctx.figure_path(arch)
        plot_panels(path, f"{arch} {list(ARCHS[arch])}: loss for initial weights N(0, sigma^2), "
                    "BN vs no BN", panels)
        figures.append(rel)
    summary = ("largest BN advantage: "
               f"{100 * worst_gap[0]:.1f} points ({worst_gap[1]})" if worst_gap else "done")
    return {"summary": summary, "headline": headline, "figures": figures,
            "tables": [{"title": "Test accuracy", "columns": [
                "architecture", "sigma", "BN (ours)", "BN (reports)", "no BN (ours)",
                "no BN (reports)"], "rows": rows}]}
