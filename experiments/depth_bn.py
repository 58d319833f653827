"""Study 3: 3-layer and 9-layer nets, batch norm on and off, the reports' defaults.

Each (architecture, BN) setting is one run with the seeds as its M models.
"""

from __future__ import annotations

import numpy as np

from experiments.common import ARCHS, mean_test, test_cell
from xpnet.plots import plot_panels, training_panels
from xpnet.report import pct

NAME = "depth_bn"
DESCRIPTION = ("3-layer [50, 50] and 9-layer [50, 30, 20, 20, 10, 10, 10, 10], BN on and off, "
               "lambda 0.005, 2 cycles: curves and test accuracy.")

#: (architecture, batch norm) -> the reports' test accuracy.
REPORTS = {
    ("3-layer", False): "52 %",
    ("3-layer", True): "53 %",
    ("9-layer", False): "49.8 % / 41.4 % (two reports)",
    ("9-layer", True): "51.1 % / 50.2 % (two reports)",
}


def settings():
    return [(arch, bn) for arch in ("3-layer", "9-layer") for bn in (False, True)]


def run(ctx) -> dict:
    rows, headline, figures = [], [], []
    best = (-np.inf, "")
    schedule = ctx.cyclical(2)
    for arch, bn in settings():
        key = f"{arch}-{'bn' if bn else 'nobn'}"
        rec = ctx.train_run(key, hidden=ARCHS[arch], seeds=ctx.seeds, batch_norm=bn,
                            schedule=schedule)
        name = f"{arch}, {'BN' if bn else 'no BN'}"
        cell = test_cell(rec)
        rows.append([name, pct(rec["last_val_accuracy"]), cell, REPORTS[(arch, bn)]])
        headline.append([name, cell, REPORTS[(arch, bn)]])
        path, rel = ctx.figure_path(key)
        plot_panels(path, f"{arch} {list(ARCHS[arch])}, {'with' if bn else 'without'} BN "
                    f"(lambda 0.005, {schedule.cycles} cycles)", training_panels(rec["history"]))
        figures.append(rel)
        if mean_test(rec) > best[0]:
            best = (mean_test(rec), f"{cell} ({name})")
    return {"summary": f"best test {best[1]}", "headline": headline, "figures": figures,
            "tables": [{"title": "Test accuracy", "columns": [
                "setting", "final validation accuracy", "test accuracy (ours)", "reports"],
                "rows": rows}]}
