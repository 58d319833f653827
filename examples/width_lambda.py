"""Width x lambda: 3-layer BN nets of widths 25, 50 and 100 with lambda 1e-4, 1e-3 and 1e-2,
and the share of hidden units left dead (never active on 1,000 validation images).

A study of your own, run through the suite's engine with
``python -m experiments.run --study examples/width_lambda.py``: one lockstep run per
width holds every lambda x seed (a Grid), a run function defined here measures dead
units after training, and the report gets a table and a figure.
"""

from __future__ import annotations

import numpy as np

from experiments.studies.kit import Grid, column, test_cell
from experiments.suite import tasks
from xpnet import to_numpy
from xpnet.plots import plot_xy

NAME = "width_lambda"
DESCRIPTION = ("3-layer BN nets, widths 25 / 50 / 100 x lambda 1e-4 / 1e-3 / 1e-2: test accuracy "
               "and the share of dead hidden units.")
WIDTHS = (25, 50, 100)
LAMBDAS = (1e-4, 1e-3, 1e-2)
PROBE_SIZE = 1000


def train_and_count_dead_units(env, spec: dict, callbacks) -> dict:
    """Train as the suite does, then add ``dead_share`` ``(M,)``: per model, the share of
    hidden units whose ReLU input is <= 0 for every one of ``spec["probe_size"]``
    validation images (eval mode)."""
    net = tasks.make_net(env, spec)
    record = tasks.fit_and_test(env, spec, net, callbacks)
    X = env.split("val").X[:spec["probe_size"], ...]
    dead = [np.all(to_numpy(z) <= 0, axis=1) for _, z in net.layer_inputs(X, train=False)]
    record["dead_share"] = np.concatenate(dead, axis=-1).mean(axis=-1)  # (M, units) -> (M,)
    return record


def run(ctx) -> dict:
    grid = Grid(ctx.seeds, lam=LAMBDAS)
    handles = {width: ctx.submit_train(f"width-{width}", grid, hidden=(width, width),
                                       fn=train_and_count_dead_units,
                                       extra={"probe_size": PROBE_SIZE})
               for width in WIDTHS}
    records = {width: handle.result() for width, handle in handles.items()}

    rows, accuracy, dead = [], {}, {}
    for width, rec in records.items():
        cols = [grid.columns(lam=lam) for lam in LAMBDAS]
        rows.append([str(width)] + [f"{test_cell(rec, c)}; "
                                    f"{100 * column(rec, 'dead_share', c).mean():.0f} % dead"
                                    for c in cols])
        accuracy[f"width {width}"] = (np.log10(LAMBDAS),
                                      np.stack([100 * column(rec, "test_accuracy", c)
                                                for c in cols]))
        dead[width] = [100 * column(rec, "dead_share", c).mean() for c in cols]

    path, rel = ctx.figure_path("accuracy")
    plot_xy(path, "Test accuracy against lambda, per width (3-layer, BN)", "log10(lambda)",
            "test accuracy (%)", accuracy,
            caption=f"Marker: median over {len(grid.seeds)} seeds; bar: their range.")
    best = max(((w, lam, test_cell(records[w], grid.columns(lam=lam)))
                for w in WIDTHS for lam in LAMBDAS),
               key=lambda item: np.nanmean(column(records[item[0]], "test_accuracy",
                                                  grid.columns(lam=item[1]))))
    most_dead = max(((w, lam) for w in WIDTHS for lam in LAMBDAS),
                    key=lambda wl: dead[wl[0]][LAMBDAS.index(wl[1])])
    most = (f"most: width {most_dead[0]}, lambda {most_dead[1]:g}"
            if max(map(max, dead.values())) > 0 else "no unit died in any setting")
    return {
        "summary": f"best: width {best[0]}, lambda {best[1]:g}: {best[2]}",
        "tables": [{"title": "Test accuracy; share of dead hidden units",
                    "columns": ["width", *[f"lambda = {lam:g}" for lam in LAMBDAS]],
                    "rows": rows,
                    "note": ("A unit is dead when its ReLU input is <= 0 for all "
                             f"{PROBE_SIZE} validation images (eval mode), averaged over "
                             f"seeds; {most}.")}],
        "figures": [rel],
    }
