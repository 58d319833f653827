"""Study 3: 3-layer and 9-layer nets, batch norm on and off, the reports' defaults.

Each (architecture, BN) setting is one run with the seeds as its M models.
"""

from __future__ import annotations

import numpy as np

from experiments.report.markdown import differs, seeds_cell, unexplained
from experiments.studies.kit import ARCHS, mean_test, seeds_split, test_cell
from xpnet.plots import (
    METRIC_LABELS,
    PALETTE,
    Panel,
    chance_refs,
    metric_curves,
    plot_panels,
    spread_caption,
)

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
#: The same as accuracies.
REPORTS_ACC = {("3-layer", False): 0.52, ("3-layer", True): 0.53,
               ("9-layer", False): (0.498, 0.414), ("9-layer", True): (0.511, 0.502)}


def difference(arch: str, bn: bool, test_accuracy) -> str | None:
    """What is known of a setting whose accuracy differs from the reports' (``differs``)."""
    acc = np.asarray(test_accuracy, dtype=np.float64)
    if not differs(acc, REPORTS_ACC[arch, bn]):
        return None
    if arch == "9-layer" and not bn:
        return unexplained(acc.size, "the two reports differ by 8.4 points on this setting "
                                     "themselves, so one run of it varies widely")
    return unexplained(acc.size)


def settings():
    return [(arch, bn) for arch in ("3-layer", "9-layer") for bn in (False, True)]


def run(ctx) -> dict:
    rows, headline, figures, differences = [], [], [], []
    best = (-np.inf, "")
    schedule = ctx.cyclical(2)
    handles = {(arch, bn): ctx.submit_train(f"{arch}-{'bn' if bn else 'nobn'}",
                                            hidden=ARCHS[arch], seeds=ctx.seeds,
                                            batch_norm=bn, schedule=schedule)
               for arch, bn in settings()}
    recs = {setting: handle.result() for setting, handle in handles.items()}
    for arch, bn in settings():
        rec = recs[(arch, bn)]
        name = f"{arch}, {'BN' if bn else 'no BN'}"
        cell = test_cell(rec)
        rows.append([name, seeds_cell(rec["last_val_accuracy"]), cell, REPORTS[(arch, bn)]])
        headline.append([name, cell, REPORTS[(arch, bn)]])
        cause = difference(arch, bn, rec["test_accuracy"])
        if cause:
            differences.append({"setting": name, "ours": cell, "reports": REPORTS[(arch, bn)],
                                "cause": cause})
        if mean_test(rec) > best[0]:
            best = (mean_test(rec), f"{cell} ({name})")
    figures.append(figure(ctx, recs, schedule.cycles))
    return {"summary": f"best test {best[1]}", "headline": headline, "figures": figures,
            "differences": differences,
            "tables": [{"title": "Test accuracy", "columns": [
                "setting", "final validation accuracy", "test accuracy (ours)", "reports"],
                "rows": rows}]}


def figure(ctx, recs: dict, cycles: int) -> str:
    """The comparison on one page: a column per depth, a row per metric, shared axes."""
    panels = []
    for metric in ("loss", "accuracy"):
        for arch in ("3-layer", "9-layer"):
            curves = []
            for bn in (False, True):  # BN drawn last, on top
                rec = recs[(arch, bn)]
                curves += metric_curves(rec["history"], metric,
                                        label=f"{'BN' if bn else 'no BN'}, ",
                                        color=PALETTE[0] if bn else PALETTE[1],
                                        per_seed=seeds_split(rec))
            panels.append(Panel(f"{arch} {list(ARCHS[arch])}", METRIC_LABELS[metric], curves,
                                refs=chance_refs(metric, ctx.data.n_classes)))
    path, rel = ctx.figure_path("curves")
    plot_panels(path, f"Depth and batch norm (lambda 0.005, {cycles} cycles)", panels,
                ncols=2, sharex=True, sharey="row", legend=1, panel_height=2.9,
                caption="Solid: training set, dashed: validation set; blue: with BN, orange: "
                        f"without. {spread_caption(len(ctx.seeds))}")
    return rel
