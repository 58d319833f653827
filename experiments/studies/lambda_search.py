"""Study 4: coarse-to-fine search of the L2 strength lambda, then a final run.

Each search step is ONE Network whose M models are the lambdas (one seed, so one
initialisation and batch order): the values train together on the model axis.
"""

from __future__ import annotations

import numpy as np

from experiments.report.markdown import differs, pct, unexplained
from experiments.studies.kit import ARCHS, column, seeds_split, test_cell
from xpnet.plots import plot_panels, plot_xy, spread_caption, training_panels
from xpnet.search.sweep import (
    best_value,
    fine_grid,
    grid_spacing,
    log_uniform_grid,
    search_scores,
)

NAME = "lambda_search"
DESCRIPTION = ("3-layer [50, 50] with BN: coarse search (8 lambdas, log10 in [-5, -1], 2 cycles), "
               "fine search (8 around the best, 3 cycles), final run with the best lambda.")
N_VALUES = 8
REPORTS_BEST = "~0.003-0.007"
REPORTS_TEST = "53.4 %"
REPORTS_TEST_ACC = 0.534
#: Later runs wait on earlier ones (coarse → fine → final): start this study's runs first
#: (see ``Context.priority``).
CHAINED = True


def _search(ctx, key: str, grid, cycles: int):
    """Train the ``grid`` of lambdas as one lockstep run; its scores and best lambda."""
    rec = ctx.submit_train(key, hidden=ARCHS["3-layer"], seeds=0, lam=grid,
                           schedule=ctx.cyclical(cycles)).result()
    scores = search_scores(column(rec, "last_val_accuracy"), column(rec, "diverged_step"))
    return scores, best_value(grid, scores)


def run(ctx) -> dict:
    hidden = ARCHS["3-layer"]
    coarse = log_uniform_grid(-5, -1, N_VALUES)
    # The later links, for the suite's estimate (their lambdas wait on the searches).
    ctx.plan("fine", after="coarse", hidden=hidden, seeds=0, lam=coarse,
             schedule=ctx.cyclical(3))
    ctx.plan("final", after="fine", hidden=hidden, seeds=ctx.seeds, schedule=ctx.cyclical(3))
    score_c, best_c = _search(ctx, "coarse", coarse, 2)
    fine = fine_grid(best_c, grid_spacing(coarse), N_VALUES)
    score_f, best = _search(ctx, "fine", fine, 3)

    final_schedule = ctx.cyclical(3)
    rec = ctx.submit_train("final", hidden=hidden, seeds=ctx.seeds, lam=best,
                           schedule=final_schedule).result()
    cell = test_cell(rec)

    path, rel = ctx.figure_path("search")
    chosen = score_f[int(np.argmin(np.abs(np.asarray(fine) - best)))]  # best is on the grid
    plot_xy(path, "Lambda search, 3-layer [50, 50] with BN", "log10(lambda)",
            "validation accuracy at the end (%)",
            {"coarse search (2 cycles)": (np.log10(coarse), 100 * score_c),
             "fine search (3 cycles)": (np.log10(fine), 100 * score_f)},
            marks=[(np.log10(best), 100 * chosen, f"chosen: lambda = {best:.3g}")],
            caption="One seed per lambda, all lambdas of a search trained together. The "
                    "coarse search ran 2 cycles and the fine one 3, so their accuracies are "
                    "not on one scale: compare points within a search, not across.")
    path2, rel2 = ctx.figure_path("final")
    plot_panels(path2, f"Final run: lambda = {best:.4g}, {final_schedule.cycles} cycles",
                training_panels(rec["history"], n_classes=ctx.data.n_classes,
                                per_seed=seeds_split(rec)),
                caption=f"Solid: training set, dashed: validation set. "
                        f"{spread_caption(len(ctx.seeds))}")

    def search_rows(values, scores, best_value):
        return [[f"{v:.3g}", f"{np.log10(v):.2f}", pct(s), "yes" if v == best_value else ""]
                for v, s in zip(values, scores, strict=True)]

    columns = ["lambda", "log10(lambda)", "validation accuracy", "best of this search"]
    not_one_scale = ("The coarse search ran 2 cycles and the fine one 3: their accuracies are "
                     "not on one scale.")
    return {
        "summary": f"best lambda {best:.4g}, final test {cell}",
        "headline": [["best lambda", f"{best:.4g}", REPORTS_BEST],
                     [f"final run, lambda {best:.4g}, 3 cycles", cell, REPORTS_TEST]],
        "differences": [{"setting": f"final run, lambda {best:.4g}, 3 cycles", "ours": cell,
                         "reports": REPORTS_TEST, "cause": unexplained(len(ctx.seeds))}]
        if differs(column(rec, "test_accuracy"), REPORTS_TEST_ACC) else [],
        "tables": [
            {"title": "Coarse search (2 cycles, one seed)", "columns": columns,
             "rows": search_rows(coarse, score_c, best_c)},
            {"title": "Fine search (3 cycles, one seed)", "columns": columns,
             "rows": search_rows(fine, score_f, best), "note": not_one_scale},
            {"title": "Final run", "columns": ["lambda", "cycles", "test accuracy (ours)",
                                               "best lambda (reports)", "test (reports)"],
             "rows": [[f"{best:.4g}", final_schedule.cycles, cell, REPORTS_BEST,
                       REPORTS_TEST]]},
        ],
        "figures": [rel, rel2],
    }
