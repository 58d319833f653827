"""Study 7: choosing the cyclical schedule's bounds with the learning-rate range test.

Method: Smith, "Cyclical Learning Rates for Training Neural Networks" (WACV 2017),
section 3.3: train for a few epochs while the rate rises from a tiny to a large value,
plot accuracy against the rate, and read the bounds off the plot: eta_min where the
accuracy starts to rise, eta_max where it slows, becomes ragged or starts to fall.

Here: the 3-layer net [50, 50] (lambda 0.005, He init), BN on and off.  The rate rises
from 1e-5 to 1 over 4 epochs, linearly (the paper's sweep) and log-linearly (even in
log(eta), which also resolves the small rates); one lockstep run per BN setting holds
both sweeps x N seeds (a :class:`~experiments.studies.kit.Grid`; the sweep's spacing is a
per-model schedule parameter).  Validation
accuracy (all 5,000 images) and training loss (eval mode, first 2,000 training images)
are recorded 60 times per sweep.

The bounds rule, applied to the log-linear sweep (the linear one spends 99 % of its
steps above 0.01 and cannot show where learning starts), on the mean over seeds of
the validation accuracy ``a(eta)``:

- eta_max: the rate at the highest ``a`` (where accuracy stops rising; a seed that
  diverged counts from then on as missing);
- eta_min: the onset of learning, the first rate at which ``a`` has risen a tenth of
  the way from its first value to its peak — but at most eta_max / 10, so that the
  cycle spans at least a decade (Smith's "base_lr at the onset").

Both are rounded to 2 significant digits.  Then the reports' schedule (2 cycles,
n_s = 5 epochs, lambda 0.005) trains with the suggested bounds and with the reports'
fixed [1e-5, 1e-1] (one lockstep run per BN setting: 2 bounds x N seeds, the bounds
per model), and their test accuracies stand side by side.
"""

from __future__ import annotations

import numpy as np

from experiments.report.markdown import CHANCE, mean_or_nan
from experiments.studies.kit import ARCHS, BATCH, Grid, column, metric, test_cell
from xpnet import CyclicalLR
from xpnet.plots import BarPanel, Curve, Panel, Ref, plot_bars, plot_panels
from xpnet.training.schedules import RangeTestLR

NAME = "lr_range"
DESCRIPTION = ("Learning-rate range test (Smith 2017, 'Cyclical Learning Rates for Training "
               "Neural Networks', sec. 3.3): 3-layer [50, 50], BN on and off, eta rising "
               "linearly and log-linearly from 1e-5 to 1 over 4 epochs; suggested bounds vs "
               "the reports' [1e-5, 1e-1] in the reports' 2-cycle schedule.")
ARCH = "3-layer"
ETA_RANGE = (1e-5, 1.0)
REPORTS_BOUNDS = (1e-5, 1e-1)
EPOCHS = 4
POINTS = 60
TRAIN_EVAL = 2000
SWEEPS = ("log", "linear")
ONSET = 0.1  # eta_min: where accuracy has risen this share of the way to its peak
TAGS = {True: "BN", False: "no BN"}
#: Later runs wait on earlier ones (range test → final run): start this study's runs first
#: (see ``Context.priority``).
CHAINED = True


def suggest_bounds(eta, accuracy) -> dict:
    """The bounds rule (module docstring) on one sweep: ``eta`` ``(T,)`` rising,
    ``accuracy`` ``(T, k)`` over seeds (NaN once diverged).

    Returns ``eta_min``, ``eta_max``, ``onset`` (unclipped) and ``peak`` (the mean
    accuracy there).
    """
    eta = np.asarray(eta, dtype=np.float64)
    a = np.array([mean_or_nan(row) for row in np.asarray(accuracy, dtype=np.float64)])
    a = np.where(np.isfinite(a), a, -np.inf)
    top = int(np.argmax(a))
    rise = a[top] - a[0]
    onset_at = int(np.argmax(a >= a[0] + ONSET * rise)) if rise > 0 else 0
    eta_max = float(f"{eta[top]:.2g}")
    onset = float(f"{eta[onset_at]:.2g}")
    return {"eta_min": float(f"{min(onset, eta_max / 10):.2g}"), "eta_max": eta_max,
            "onset": onset, "peak": float(a[top])}


def run(ctx) -> dict:
    n = len(ctx.seeds)
    per_epoch = len(ctx.data.y_train) // BATCH
    steps = max(EPOCHS * per_epoch, 40)
    grid = Grid(ctx.seeds, spacing=SWEEPS)
    sweep = RangeTestLR(*ETA_RANGE, steps=steps, cycle_length=steps,
                        spacing=grid.values("spacing"))
    train = ctx.train_config(evals_per_cycle=POINTS,
                             train_eval_size=None if ctx.quick else TRAIN_EVAL)
    finals_grid = Grid(ctx.seeds, bounds=("range test", "reports"))
    for bn in (True, False):  # the final runs, planned first: each waits on its range test
        ctx.plan(f"final-{'bn' if bn else 'nobn'}", finals_grid,
                 after=f"range-{'bn' if bn else 'nobn'}", hidden=ARCHS[ARCH], batch_norm=bn,
                 schedule=ctx.cyclical(2))
    tests = {bn: ctx.submit_train(f"range-{'bn' if bn else 'nobn'}", grid, hidden=ARCHS[ARCH],
                                  batch_norm=bn, schedule=sweep, train=train)
             for bn in (True, False)}
    cols = {s: grid.columns(spacing=s) for s in SWEEPS}
    ranges, bounds, finals = {}, {}, {}
    for bn in (True, False):  # each final run starts once its range test is in
        ranges[bn] = rec = tests[bn].result()
        eta = np.asarray(rec["history"]["eta"], dtype=np.float64)
        bounds[bn] = {s: suggest_bounds(eta[:, cols[s][0]],
                                        metric(rec, "val_accuracy")[:, cols[s]])
                      for s in SWEEPS}
        lo, hi = bounds[bn]["log"]["eta_min"], bounds[bn]["log"]["eta_max"]
        schedule = ctx.cyclical(2)
        ours = [b == "range test" for b in finals_grid.values("bounds")]
        schedule = CyclicalLR(eta_min=tuple(lo if o else REPORTS_BOUNDS[0] for o in ours),
                              eta_max=tuple(hi if o else REPORTS_BOUNDS[1] for o in ours),
                              n_s=schedule.n_s, cycles=schedule.cycles)
        finals[bn] = ctx.submit_train(f"final-{'bn' if bn else 'nobn'}", finals_grid,
                                      hidden=ARCHS[ARCH], batch_norm=bn, schedule=schedule)
    finals = {bn: handle.result() for bn, handle in finals.items()}
    ours_cols = finals_grid.columns(bounds="range test")
    reports_cols = finals_grid.columns(bounds="reports")

    rows, bars = [], {"range-test bounds": ([], [], []),
                      f"reports' bounds [{REPORTS_BOUNDS[0]:g}, {REPORTS_BOUNDS[1]:g}]": (
                          [], [], [])}
    for bn in (True, False):
        b, rec = bounds[bn], finals[bn]
        rows.append([TAGS[bn], f"{b['log']['eta_min']:g}", f"{b['log']['eta_max']:g}",
                     f"{b['log']['onset']:g}", f"{b['linear']['eta_max']:g}",
                     f"{100 * b['log']['peak']:.1f} %", test_cell(rec, ours_cols),
                     test_cell(rec, reports_cols)])
        div = column(rec, "diverged_step") >= 0
        for (values, diverged, last), c in zip(bars.values(), (ours_cols, reports_cols),
                                               strict=True):
            values.append(100 * column(rec, "test_accuracy", c))
            diverged.append(div[c])
            last.append(100 * column(rec, "last_val_accuracy", c))
    figures = [range_figure(ctx, ranges, bounds, cols, steps),
               final_figure(ctx, bounds, bars)]
    ours = "; ".join(f"{TAGS[bn]} [{bounds[bn]['log']['eta_min']:g}, "
                     f"{bounds[bn]['log']['eta_max']:g}]: {test_cell(finals[bn], ours_cols)} vs "
                     f"{test_cell(finals[bn], reports_cols)}" for bn in (True, False))
    return {
        "summary": "range-test bounds vs the reports' bounds, test accuracy: " + ours,
        "headline": [[f"{ARCH}, 2 cycles: range-test bounds vs the reports' [1e-5, 1e-1] "
                      "(test accuracy)", ours, "[1e-5, 1e-1], fixed: 52 / 53 % (no BN / BN)"]],
        "figures": figures,
        "tables": [{
            "title": "Suggested bounds and test accuracy with them",
            "columns": ["setting", "eta_min (suggested)", "eta_max (suggested)",
                        "onset of learning", "eta_max by the linear sweep",
                        "peak val. acc. of the sweep", "test acc., suggested bounds",
                        "test acc., reports' [1e-5, 1e-1]"],
            "rows": rows,
            "note": (f"Bounds from the log-linear sweep's mean validation accuracy over "
                     f"{n} seed(s): eta_max at its peak, eta_min at the onset of learning "
                     f"(a tenth of the rise to the peak), at most eta_max / 10. Test "
                     "accuracies: the reports' 2-cycle schedule, mean ± population std "
                     "over seeds.")}]}


def range_figure(ctx, ranges, bounds, cols, steps) -> str:
    panels = []
    for key, ylabel, scale in (("val_accuracy", "validation accuracy (%)", 100),
                               ("train_loss", "training loss", 1)):
        for bn in (True, False):
            rec = ranges[bn]
            eta = np.asarray(rec["history"]["eta"], dtype=np.float64)
            # The linear sweep's first record after step 0 is already at ~1e-2: its line
            # starts there rather than bridge three decades without data.
            first = {"log": 0, "linear": 1}
            lines = [Curve(f"{'log-linear' if s == 'log' else 'linear'} sweep",
                           eta[first[s]:, cols[s][0]],
                           scale * metric(rec, key)[first[s]:, cols[s]],
                           "-" if s == "log" else "--", seeds="each",
                           diverged=column(rec, "diverged_step", cols[s]))
                     for s in SWEEPS]
            b = bounds[bn]["log"]
            chance = [Ref(100 * CHANCE, "chance", "grey", width=1.0)] if scale == 100 else []
            marks = [Ref(b["eta_min"], f"suggested eta_min = {b['eta_min']:g}", "#009E73", "-.",
                         axis="x"),
                     Ref(b["eta_max"], f"suggested eta_max = {b['eta_max']:g}", "#009E73", "-",
                         axis="x")]
            panels.append(Panel(
                f"{TAGS[bn]}: {'accuracy' if scale == 100 else 'loss'}", ylabel, lines,
                xlabel="learning rate eta (log scale)", logx=True, refs=chance + marks,
                spans=[(*REPORTS_BOUNDS, "reports' range [1e-5, 0.1]", "grey")],
                ylim=(0, 65) if scale == 100 else (0, 4)))
    path, rel = ctx.figure_path("range_test")
    plot_panels(path, f"Learning-rate range test, {ARCH} {list(ARCHS[ARCH])}, eta from 1e-5 "
                f"to 1 in {steps} steps", panels,
                caption="One line per seed. Solid: rate rising evenly in log(eta); dashed: "
                "rising linearly (the paper's sweep). Training loss: eval mode, first 2,000 "
                "training images. Green: the bounds suggested by the log-linear sweep (eta_max "
                "at its peak validation accuracy, eta_min at the onset of learning, at most "
                "eta_max/10); grey band: the reports' fixed range. An x ends a seed that "
                "diverged.", ncols=2, panel_height=3.2, legend=0)
    return rel


def final_figure(ctx, bounds, bars) -> str:
    groups = [f"{TAGS[bn]}\nsuggested [{bounds[bn]['log']['eta_min']:g}, "
              f"{bounds[bn]['log']['eta_max']:g}]" for bn in (True, False)]
    path, rel = ctx.figure_path("bounds_test")
    plot_bars(path, f"{ARCH}, the reports' 2-cycle schedule: range-test bounds vs the "
              "reports' bounds",
              [BarPanel("", "test accuracy (%)", groups, bars, chance=100 * CHANCE)],
              caption="Bar: mean test accuracy over the seeds that trained; dot: one seed. "
              "Same net, lambda, schedule length and seeds; only eta_min and eta_max differ.",
              ymax=75)
    return rel
