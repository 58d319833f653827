"""Study 4: coarse-to-fine search of the L2 strength lambda, then a final run.

Each search step is ONE Network whose M models are the lambdas (one seed, so one
initialisation and batch order): the values train together on the model axis.
"""

from __future__ import annotations

import numpy as np

from experiments.common import ARCHS, column, test_cell
from xpnet.plots import plot_panels, plot_xy, training_panels
from xpnet.report import pct
from xpnet.sweep import best_index, fine_grid, grid_spacing, log_uniform_grid

NAME = "lambda_search"
DESCRIPTION = ("3-layer [50, 50] with BN: coarse search (8 lambdas, log10 in [-5, -1], 2 cycles), "
               "fine search (8 around the best, 3 cycles), final run with the best lambda.")
N_VALUES = 8
REPORTS_BEST = "~0.003-0.007"
REPORTS_TEST = "53.4 %"


def run(ctx) -> dict:
    hidden = ARCHS["3-layer"]
    coarse = log_uniform_grid(-5, -1, N_VALUES)
    rec_c = ctx.train_run("coarse", hidden=hidden, seeds=0, lam=coarse,
                          schedule=ctx.cyclical(2))
    score_c = column(rec_c, "last_val_accuracy")
    score_c[column(rec_c, "diverged_step") >= 0] = np.nan
    best_c = float(coarse[best_index(score_c)])

    fine = fine_grid(best_c, grid_spacing(coarse), N_VALUES)
    rec_f = ctx.train_run("fine", hidden=hidden, seeds=0, lam=fine, schedule=ctx.cyclical(3))
    score_f = column(rec_f, "last_val_accuracy")
    score_f[column(rec_f, "diverged_step") >= 0] = np.nan
    best = float(fine[best_index(score_f)])

    final_schedule = ctx.cyclical(3)
    rec = ctx.train_run("final", hidden=hidden, seeds=ctx.seeds, lam=best,
                        schedule=final_schedule)
    cell = test_cell(rec)

    path, rel = ctx.figure_path("search")
    plot_xy(path, "Lambda search, 3-layer [50, 50] with BN", "log10(lambda)",
            "validation accuracy (end of training)",
            {"coarse (2 cycles)": (np.log10(coarse), score_c),
             "fine (3 cycles)": (np.log10(fine), score_f)})
    path2, rel2 = ctx.figure_path("final")
    plot_panels(path2, f"Final run: lambda = {best:.4g}, {final_schedule.cycles} cycles",
                training_panels(rec["history"]))

    def search_rows(values, scores, best_value):
        return [[f"{v:.3g}", f"{np.log10(v):.2f}", pct(s), "best" if v == best_value else ""]
                for v, s in zip(values, scores)]

    columns = ["lambda", "log10(lambda)", "validation accuracy", ""]
    return {
        "summary": f"best lambda {best:.4g}, final test {cell}",
        "headline": [["best lambda", f"{best:.4g}", REPORTS_BEST],
                     [f"final run, lambda {best:.4g}, 3 cycles", cell, REPORTS_TEST]],
        "tables": [
            {"title": "Coarse search (2 cycles, one seed)", "columns": columns,
             "rows": search_rows(coarse, score_c, best_c)},
            {"title": "Fine search (3 cycles, one seed)", "columns": columns,
             "rows": search_rows(fine, score_f, best)},
            {"title": "Final run", "columns": ["lambda", "cycles", "test accuracy (ours)",
                                               "best lambda (reports)", "test (reports)"],
             "rows": [[f"{best:.4g}", final_schedule.cycles, cell, REPORTS_BEST,
                       REPORTS_TEST]]},
        ],
        "figures": [rel, rel2],
    }
