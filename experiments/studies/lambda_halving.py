"""Lambda search with successive halving inside the lockstep network, beside the full search.

One grid, 27 lambdas x 3 seeds (9 x 2 with --quick) over the lambda search's fine range,
trained twice as one lockstep Network each: in full, and with successive halving
(eta = 3, rungs at about a 27th, a ninth and a third of the run: 27 configurations
become 9, 3 and 1).  A configuration is one lambda with its seeds, ranked by their mean
validation accuracy at each rung.  The report compares the best lambda each finds, its
test accuracy, and the model-steps and compute time each spent.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.report.markdown import pct
from experiments.studies.kit import ARCHS, Grid, column, metric
from xpnet import Halving
from xpnet.search.halving import geometric_rungs
from xpnet.search.sweep import fine_grid, grid_spacing, log_uniform_grid
from xpnet.training import record_steps

NAME = "lambda_halving"
DESCRIPTION = ("3-layer [50, 50] with BN: 27 lambdas x 3 seeds over the lambda search's fine "
               "range, 2 cycles, trained in full and with successive halving (eta = 3) in "
               "the model axis; best lambda, test accuracy, model-steps and time of each.")
ETA = 3
#: The reports' best lambda: the fine range is the lambda search's around the coarse
#: value nearest it.
REPORTS_BEST = 0.005


def lambda_grid(n: int) -> np.ndarray:
    """``n`` lambdas over the fine range of the lambda search (8 coarse values, log10 in
    [-5, -1]) around the coarse value nearest :data:`REPORTS_BEST`: ``(n,)``."""
    coarse = log_uniform_grid(-5, -1, 8)
    centre = coarse[int(np.argmin(np.abs(np.log10(coarse) - math.log10(REPORTS_BEST))))]
    return fine_grid(float(centre), grid_spacing(coarse), n)


def best_config(rec: dict, n_seeds: int) -> int:
    """The configuration (lambda index) with the best mean last validation accuracy,
    among those that reached the end (all of them in the full search)."""
    last = column(rec, "last_val_accuracy").reshape(-1, n_seeds)
    survivors = rec["history"].get("survivors")
    if survivors is not None:
        alive = np.zeros(last.shape[0], dtype=bool)
        alive[np.asarray(survivors) // n_seeds] = True
        last = np.where(alive[:, None], last, np.nan)
    score = np.where(np.isfinite(last).all(axis=1), last.mean(axis=1), -np.inf)
    return int(np.argmax(score))


def model_steps(rec: dict) -> int:
    """Steps summed over the models (the record's ``model_steps`` under halving)."""
    return int(rec.get("model_steps") or rec["n_models"] * rec["history"]["stopped_step"])


def curves_figure(ctx, recs: dict, lams: np.ndarray, n_seeds: int, rungs) -> str:
    """Each model's validation accuracy against the step, coloured by log10(lambda): the
    full search and the halving run side by side; a halving curve ends at its rung."""
    from matplotlib import cm, colors

    from xpnet.plots import page_figure, save_page

    path, rel = ctx.figure_path("curves")
    fig, axes = page_figure(2, sharey=True, panel_height=3.6)
    norm = colors.Normalize(np.log10(lams).min(), np.log10(lams).max())
    cmap = cm.viridis
    for ax, (label, rec) in zip(axes, recs.items(), strict=True):
        steps = np.asarray(rec["history"]["steps"])
        acc = 100 * metric(rec, "val_accuracy")
        best = best_config(rec, n_seeds)
        for m in range(acc.shape[1]):
            lam_index = m // n_seeds
            ax.plot(steps, acc[:, m], color=cmap(norm(np.log10(lams[lam_index]))),
                    lw=2.0 if lam_index == best else 0.7, alpha=1.0 if lam_index == best else 0.6)
        ax.plot([], [], color="0.2", lw=2.0, label=f"best: lambda = {lams[best]:.3g}")
        if label == "halving":
            for k, step in enumerate(rungs):
                ax.axvline(step, color="0.35", ls=":", lw=1.0,
                           label="rungs (eta = 3)" if k == 0 else None)
        ax.set_title(f"{label}: {model_steps(rec):,} model-steps")
        ax.set_xlabel("training step")
        ax.legend(loc="lower right", fontsize="small")
    axes[0].set_ylabel("validation accuracy (%)")
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="log10(lambda)")
    save_page(fig, path, f"Lambda search, 3-layer [50, 50] with BN: {len(lams)} lambdas x "
              f"{n_seeds} seeds, in full and with successive halving",
              caption="One line per model (lambda and seed), coloured by its lambda; the "
                      "thick lines are the best lambda's seeds. With halving each line ends "
                      "at the rung that dropped its lambda.")
    return rel


def run(ctx) -> dict:
    n_lams, seeds = (9, (0, 1)) if ctx.quick else (27, (0, 1, 2))
    lams = lambda_grid(n_lams)
    grid = Grid(seeds, lam=tuple(float(v) for v in lams))
    schedule = ctx.cyclical(2)
    train = ctx.train_config()
    n_rungs = round(math.log(n_lams, ETA))
    rungs = geometric_rungs(record_steps(schedule.total_steps, schedule.cycle_length,
                                         train.evals_per_cycle), n_rungs, ETA)
    halving = Halving(rungs=rungs, eta=ETA, group_size=len(seeds))
    hidden = ARCHS["3-layer"]
    handles = {"full search": ctx.submit_train("full", grid, hidden=hidden, schedule=schedule,
                                               train=train),
               "halving": ctx.submit_train("halving", grid, hidden=hidden, schedule=schedule,
                                           train=train, halving=halving)}
    recs = {label: h.result() for label, h in handles.items()}

    rows, found = [], {}
    full_steps = model_steps(recs["full search"])
    full_time = recs["full search"].get("compute_s") or float("nan")
    for label, rec in recs.items():
        best = best_config(rec, len(seeds))
        cols = list(range(best * len(seeds), (best + 1) * len(seeds)))
        test = float(np.mean(column(rec, "test_accuracy", cols)))
        val = float(np.mean(column(rec, "last_val_accuracy", cols)))
        found[label] = (float(lams[best]), test)
        steps, seconds = model_steps(rec), rec.get("compute_s") or float("nan")
        rows.append([label, f"{lams[best]:.4g}", pct(val), pct(test), f"{steps:,}",
                     f"{steps / full_steps:.2f}x", f"{seconds:.1f}", f"{seconds / full_time:.2f}x"])
    rel = curves_figure(ctx, recs, lams, len(seeds), rungs)

    history = recs["halving"]["history"]
    dropped = np.asarray(history["dropped_step"])
    rung_rows = [[k + 1, step, int(np.sum(dropped == step)) // len(seeds),
                  int(np.sum((dropped < 0) | (dropped > step))) // len(seeds)]
                 for k, step in enumerate(rungs)]
    (lam_full, test_full), (lam_half, test_half) = found["full search"], found["halving"]
    gap = 100 * (test_full - test_half)
    return {
        "summary": f"halving picked lambda {lam_half:.4g} (test {pct(test_half)}) with "
                   f"{model_steps(recs['halving']) / full_steps:.2f}x the model-steps; the full "
                   f"search picked {lam_full:.4g} (test {pct(test_full)})",
        "headline": [["best lambda, full search / halving", f"{lam_full:.4g} / {lam_half:.4g}",
                      "n/a"],
                     ["test accuracy of the best lambda, full search / halving",
                      f"{pct(test_full)} / {pct(test_half)}", "n/a"]],
        "tables": [
            {"title": f"Full search and successive halving: {n_lams} lambdas x {len(seeds)} "
                      "seeds, 2 cycles",
             "columns": ["run", "best lambda", "its validation accuracy", "its test accuracy",
                         "model-steps", "vs full", "compute (s)", "vs full"],
             "rows": rows,
             "note": f"Accuracies are the mean over the {len(seeds)} seeds of the chosen "
                     f"lambda; the test gap is {gap:+.2f} points. Compute times are each "
                     "run's own process time; runs trained side by side share the machine, so "
                     "the bench (python -m experiments.bench --halving) measures the time "
                     "ratio in one process."},
            {"title": "Halving rungs", "columns": ["rung", "step", "lambdas dropped",
                                                   "lambdas kept"],
             "rows": rung_rows},
        ],
        "figures": [rel],
        "notes": ["A rung ranks the lambdas by their seeds' mean validation accuracy at that "
                  "step; early in the cyclical schedule those are noisy, so halving can drop "
                  "the lambda the full search would pick."],
    }
