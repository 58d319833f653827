"""Study 6: constant learning rates with momentum, with and without batch norm.

2-layer [50], momentum 0.8, lambda 0, 10 epochs, eta in {0.0005, 0.03, 0.8}.  The rate
is a schedule property, so each (BN, eta) is its own run with the seeds as models.  A
run that diverges is reported at its step with its last finite figures.
"""

from __future__ import annotations

import numpy as np

from experiments.common import ARCHS, BATCH, column, metric, test_cell
from xpnet import ConstantLR
from xpnet.plots import Curve, Panel, plot_grouped_bars, plot_panels
from xpnet.report import mean_or_nan

NAME = "lr_bn"
DESCRIPTION = ("2-layer [50], BN on and off, constant eta in {0.0005, 0.03, 0.8}, momentum 0.8, "
               "lambda 0, 10 epochs: test accuracy (divergence reported).")
ETAS = (0.0005, 0.03, 0.8)
EPOCHS = 10
MOMENTUM = 0.8
REPORTS = {True: ("42.3 %", "49.7 %", "44.9 %"),
           False: ("21.1 %", "50.5 %", "could not be trained")}


def run(ctx) -> dict:
    per_epoch = len(ctx.data.y_train) // BATCH
    rows, headline = [], []
    bars = {}
    panels = [Panel(f"eta = {eta:g}", "validation accuracy", []) for eta in ETAS]
    for bn in (True, False):
        tag = "BN" if bn else "no BN"
        means, stds, cells = [], [], []
        for i, eta in enumerate(ETAS):
            schedule = ConstantLR(eta, steps=EPOCHS * per_epoch, cycle_length=per_epoch)
            rec = ctx.train_run(f"{'bn' if bn else 'nobn'}-eta{eta:g}", hidden=ARCHS["2-layer"],
                                seeds=ctx.seeds, lam=0.0, batch_norm=bn, schedule=schedule,
                                momentum=MOMENTUM, evals_per_cycle=2)
            cell = test_cell(rec)
            cells.append(cell)
            acc = column(rec, "test_accuracy")
            means.append(mean_or_nan(acc))
            stds.append(float(np.nanstd(acc)) if np.isfinite(acc).any() else np.nan)
            headline.append([f"2-layer, {tag}, eta {eta:g}", cell, REPORTS[bn][i]])
            dead = column(rec, "diverged_step") >= 0
            label = f"{tag} (diverged)" if dead.all() else tag
            panels[i].curves.append(Curve(label, rec["history"]["steps"],
                                          metric(rec, "val_accuracy"),
                                          "-" if bn else "--"))
        rows.append([tag] + [f"{c} (reports: {r})" for c, r in zip(cells, REPORTS[bn])])
        bars[tag] = (means, stds)
    path, rel = ctx.figure_path("bars")
    plot_grouped_bars(path, f"2-layer [50], momentum {MOMENTUM}, {EPOCHS} epochs: test accuracy",
                      [f"eta = {eta:g}" for eta in ETAS], bars, "test accuracy",
                      xlabel="constant learning rate", missing_text="diverged")
    path2, rel2 = ctx.figure_path("curves")
    plot_panels(path2, "Validation accuracy with constant learning rates, BN vs no BN", panels)
    n_div = sum("diverged" in h[1] for h in headline)
    return {"summary": f"{n_div} of {len(headline)} settings diverged", "headline": headline,
            "figures": [rel, rel2],
            "tables": [{"title": "Test accuracy (ours, with the reports' figure)",
                        "columns": ["", *[f"eta = {eta:g}" for eta in ETAS]], "rows": rows}]}
