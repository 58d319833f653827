"""Study 6: constant learning rates with momentum, with and without batch norm.

2-layer [50], momentum 0.8, lambda 0, 10 epochs, eta in {0.0005, 0.03, 0.8}.  Two runs
(BN on, BN off), each one lockstep network of 3 rates x N seeds (a
:class:`~experiments.studies.kit.Grid`): the rate is per model (``ConstantLR(eta=(...))``).
A model that diverges stops at its step and is reported there with its last finite
figures; the others train on.
"""

from __future__ import annotations

import numpy as np

from experiments.report.markdown import CHANCE, DIFFERS_BY, TRAINED_ABOVE, differs, ours_runs
from experiments.studies.kit import ARCHS, BATCH, Grid, column, metric, test_cell
from xpnet import ConstantLR
from xpnet.plots import BarPanel, Curve, Panel, Ref, plot_bars, plot_panels

NAME = "lr_bn"
DESCRIPTION = ("2-layer [50], BN on and off, constant eta in {0.0005, 0.03, 0.8}, momentum 0.8, "
               "lambda 0, 10 epochs: test accuracy (divergence reported). One lockstep run per "
               "BN setting, the rates per model.")
ETAS = (0.0005, 0.03, 0.8)
EPOCHS = 10
MOMENTUM = 0.8
REPORTS = {True: ("42.3 %", "49.7 %", "44.9 %"),
           False: ("21.1 %", "50.5 %", "could not be trained")}
#: The same as accuracies (None: the report's net could not be trained).
REPORTS_ACC = {True: (0.423, 0.497, 0.449), False: (0.211, 0.505, None)}
#: What report 001 states of its set-up against ours, said of every difference here.
SETUP = ("the set-ups differ: report 001 trained on 49,000 images, ours on {n_train:,}, from "
         f"He initialisation, with batch 100, lambda 0 and momentum {MOMENTUM} for {EPOCHS} "
         "epochs")
#: What else is known of a cell: (BN, index into ETAS) -> words.
KNOWN = {
    (False, 0): ("at eta 0.0005 ten epochs move the weights only a short way from where they "
                 "start, so the outcome depends most on the initial weights and the number of "
                 "steps, where the set-ups differ (an explanation we have not tested)"),
}
TAGS = {True: "BN", False: "no BN"}


def run(ctx) -> dict:
    per_epoch = len(ctx.data.y_train) // BATCH
    n = len(ctx.seeds)
    grid = Grid(ctx.seeds, eta=ETAS)
    schedule = ConstantLR(grid.values("eta"), steps=EPOCHS * per_epoch, cycle_length=per_epoch)
    handles = {bn: ctx.submit_train(
        "bn" if bn else "nobn", grid, hidden=ARCHS["2-layer"], lam=0.0,
        batch_norm=bn, schedule=schedule,
        train=ctx.train_config(momentum=MOMENTUM, evals_per_cycle=2)) for bn in (True, False)}
    recs = {bn: handles[bn].result() for bn in (True, False)}
    cols = [grid.columns(eta=eta) for eta in ETAS]

    rows, headline, series = [], [], {}
    for bn, rec in recs.items():
        cells = [test_cell(rec, c) for c in cols]
        rows.append([TAGS[bn]] + [f"{c} (reports: {r})"
                                  for c, r in zip(cells, REPORTS[bn], strict=True)])
        headline += [[f"2-layer, {TAGS[bn]}, eta {eta:g}", cell, REPORTS[bn][i]]
                     for i, (eta, cell) in enumerate(zip(ETAS, cells, strict=True))]
        div = column(rec, "diverged_step") >= 0
        series[TAGS[bn]] = ([100 * column(rec, "test_accuracy", c) for c in cols],
                            [div[c] for c in cols],
                            [100 * column(rec, "last_val_accuracy", c) for c in cols])

    bars, bars_rel = ctx.figure_path("bars")
    plot_bars(bars, f"2-layer [50], momentum {MOMENTUM}, {EPOCHS} epochs: test accuracy",
              [BarPanel("", "test accuracy (%)", [f"eta = {eta:g}" for eta in ETAS], series,
                        xlabel="constant learning rate", chance=100 * CHANCE)],
              caption="Bar: mean test accuracy of the seeds that trained; dot: one seed. A "
              "hatched bar labelled 'diverged': every seed diverged (its height is their last "
              "finite validation accuracy). Dotted line: chance.", ymax=75)

    panels = []
    for i, eta in enumerate(ETAS):
        lines = [Curve(TAGS[bn], recs[bn]["history"]["steps"],
                       100 * metric(recs[bn], "val_accuracy")[:, cols[i]],
                       "-" if bn else "--", seeds="each",
                       diverged=column(recs[bn], "diverged_step", cols[i]))
                 for bn in (True, False)]
        panels.append(Panel(f"eta = {eta:g}", "validation accuracy (%)", lines,
                            refs=[Ref(100 * CHANCE, "chance", "grey", width=1.0)],
                            ylim=(0, 65)))
    curves, curves_rel = ctx.figure_path("curves")
    plot_panels(curves, "Validation accuracy with constant learning rates, BN vs no BN", panels,
                caption=f"One line per seed ({n} seeds); an x ends the line of a seed that "
                "diverged (its loss became non-finite or above 1e4) at its last finite record "
                f"point. Dotted line: chance ({100 * CHANCE:g} %).", sharey=True, legend=0,
                panel_height=3.3)

    n_div = sum("diverged" in h[1] for h in headline)
    return {"summary": f"{n_div} of {len(headline)} settings diverged", "headline": headline,
            "differences": differences(recs, cols, len(ctx.data.y_train)),
            "figures": [bars_rel, curves_rel],
            "tables": [{"title": "Test accuracy (ours, with the reports' figure)",
                        "columns": ["", *[f"eta = {eta:g}" for eta in ETAS]], "rows": rows}]}


def differences(recs: dict, cols: list, n_train: int) -> list[dict]:
    """Every cell where ours and report 001 differ (``report.markdown.differs``; where the
    report could not train, a cell differs if any of our seeds trained)."""
    out = []
    for bn, rec in recs.items():
        for i, eta in enumerate(ETAS):
            cause = difference(bn, i, column(rec, "test_accuracy", cols[i]), n_train)
            if cause:
                out.append({"setting": f"2-layer, {TAGS[bn]}, eta {eta:g}",
                            "ours": test_cell(rec, cols[i]), "reports": REPORTS[bn][i],
                            "cause": cause})
    return out


def difference(bn: bool, i: int, test_accuracy, n_train: int = 45000) -> str | None:
    """What is known of cell (``bn``, ``ETAS[i]``) if ours differs from the report's."""
    reports = REPORTS_ACC[bn][i]
    acc = np.asarray(test_accuracy, dtype=np.float64)
    finite = acc[np.isfinite(acc)]
    if reports is None:
        if not (finite > CHANCE / 100 + TRAINED_ABOVE).any():
            return None
        words = "ours trained where the report's net could not"
    elif not differs(acc, reports):
        return None
    else:
        words = KNOWN.get((bn, i), "no other cause is known")
        if finite.size > 1 and (np.abs(finite - reports) > DIFFERS_BY).all():
            words += (f"; none of our {finite.size} seeds comes within "
                      f"{100 * DIFFERS_BY:g} points of the report's figure")
    return (f"{SETUP.format(n_train=n_train)}; {words}. The report gives one run, "
            f"{ours_runs(acc.size)}.")
