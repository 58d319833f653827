"""Study 11: normalization x optimizer, and dropout against L2 — a study past the reports.

Part 1.  The reports' 3-layer [50, 50] and 9-layer [50, 30, 20, 20, 10, 10, 10, 10] nets
(lambda 0.005, He init) with no normalization, batch norm (Ioffe & Szegedy 2015) or layer
norm (Ba, Kiros & Hinton 2016), each trained by

- SGD as the reports train: no momentum, the cyclical rate in [1e-5, 1e-1], 2 cycles
  with n_s = 5 epochs (``ctx.cyclical(2)``);
- Adam (Kingma & Ba 2015; betas 0.9 / 0.999, eps 1e-8, the same L2 in the gradient) at
  a constant rate for the same number of steps.  The rate comes from a short
  learning-rate range test per depth and normalization (Smith 2017, sec. 3.3, as the
  ``lr_range`` study runs it: the rate rising log-linearly from 1e-5 to 1e-1 over 2
  epochs, with Adam): :data:`RATE_FACTOR` times the rate at the sweep's peak mean
  validation accuracy, to one significant digit — a constant rate has to stay stable for
  the whole run, not only the sweep's last steps.

Normalization and optimizer are run-wide, so each (depth, normalization, optimizer) is one
lockstep run with the seeds as its models.

Part 2.  Dropout 0 / 0.1 / 0.3 on the hidden layers against lambda 0 / 0.001 / 0.005 on
the 3-layer batch-norm net with the reports' SGD: one lockstep run, dropout and lambda
per model (3 x 3 x seeds models).

The text compares the results with the papers' claims by rules stated in its notes; every
sentence of it is computed from the numbers.
"""

from __future__ import annotations

import numpy as np

from experiments.report.markdown import CHANCE, pct
from experiments.studies.depth_bn import REPORTS
from experiments.studies.kit import ARCHS, BATCH, Grid, column, metric, test_cell
from experiments.studies.lr_range import suggest_bounds
from xpnet.plots import PALETTE, BarPanel, Curve, Panel, plot_bars, plot_panels, plot_xy
from xpnet.training.optim import Adam
from xpnet.training.schedules import ConstantLR, RangeTestLR

NAME = "norm_opt"
DESCRIPTION = ("Past the reports: 3-layer and 9-layer nets, no normalization / batch norm / "
               "layer norm x SGD (the reports' cyclical rate) / Adam (constant rate from a "
               "range test), lambda 0.005: test accuracy and curves; dropout 0 / 0.1 / 0.3 "
               "x lambda 0 / 0.001 / 0.005 on the 3-layer net.")
DEPTHS = ("3-layer", "9-layer")
NORMS = (None, "batch", "layer")
NORM_TAGS = {None: "no norm", "batch": "batch norm", "layer": "layer norm"}
OPTIMIZERS = ("SGD", "Adam")
OPT_TAGS = {"SGD": "SGD (cyclical)", "Adam": "Adam (constant)"}
RANGE = (1e-5, 1e-1)
RANGE_EPOCHS = 2
RANGE_POINTS = 30
#: Adam's constant rate: this times the range test's peak rate.
RATE_FACTOR = 0.1
DROPOUTS = (0.0, 0.1, 0.3)
LAMS = (0.0, 0.001, 0.005)
#: A difference counts as clear when the means differ by more than the two settings'
#: seed stds added, and by at least this (half a point).
MIN_GAP = 0.005
#: The Adam runs wait on their range tests.
CHAINED = True


def key(depth: str, norm, opt: str) -> str:
    return f"{depth}-{norm or 'none'}-{opt.lower()}"


def adam_rate(eta, val_accuracy) -> tuple[float, float]:
    """``(peak rate, Adam's rate)`` from a range test: ``eta`` ``(T,)``, ``val_accuracy``
    ``(T, k)`` over seeds (see :func:`experiments.studies.lr_range.suggest_bounds`)."""
    peak = suggest_bounds(eta, val_accuracy)["eta_max"]
    return peak, float(f"{RATE_FACTOR * peak:.1g}")


def gap(a, b) -> tuple[float, bool]:
    """Mean of ``a`` minus mean of ``b`` (accuracies over seeds, NaN ignored), and
    whether the gap is clear (see :data:`MIN_GAP`).  NaN and False if either is empty."""
    a, b = (np.asarray(v, dtype=np.float64) for v in (a, b))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not a.size or not b.size:
        return float("nan"), False
    diff = float(a.mean() - b.mean())
    return diff, abs(diff) > max(float(a.std() + b.std()), MIN_GAP)


def points(diff: float, clear: bool, unit: str = "") -> str:
    """A gap in percentage points, ``"+1.2"`` (then ``unit``), with ``"(within noise)"``
    if not clear."""
    if not np.isfinite(diff):
        return "n/a"
    return f"{100 * diff:+.1f}{unit}" + ("" if clear else " (within noise)")


def verdict(diffs) -> str:
    """How ``(diff, clear)`` gaps that a paper expects positive bear that out."""
    diffs = list(diffs)
    up = sum(c and d > 0 for d, c in diffs)
    down = sum(c and d < 0 for d, c in diffs)
    if up == len(diffs):
        return "agrees"
    if down == len(diffs):
        return "disagrees"
    if up == down == 0:
        return "shows no clear difference"
    return (f"agrees in {up} of {len(diffs)}, disagrees in {down}, no clear difference in "
            f"{len(diffs) - up - down}")


def run(ctx) -> dict:
    schedule = ctx.cyclical(2)
    steps = schedule.total_steps
    runs = {}
    for depth in DEPTHS:
        for norm in NORMS:
            runs[depth, norm, "SGD"] = ctx.submit_train(
                key(depth, norm, "SGD"), hidden=ARCHS[depth], seeds=ctx.seeds, norm=norm,
                schedule=schedule)
    dropout_grid = Grid(ctx.seeds, dropout=DROPOUTS, lam=LAMS)
    dropout_run = ctx.submit_train("3-layer-dropout-lam", dropout_grid,
                                   hidden=ARCHS["3-layer"], schedule=schedule)
    per_epoch = len(ctx.data.y_train) // BATCH
    sweep_steps = max(RANGE_EPOCHS * per_epoch, 40)
    sweep = RangeTestLR(*RANGE, steps=sweep_steps, cycle_length=sweep_steps, spacing="log")
    sweep_train = ctx.train_config(evals_per_cycle=RANGE_POINTS,
                                   train_eval_size=None if ctx.quick else 2000)
    for depth in DEPTHS:  # the Adam runs, planned first: each waits on its range test
        for norm in NORMS:
            ctx.plan(key(depth, norm, "Adam"), after=f"range-{depth}-{norm or 'none'}",
                     hidden=ARCHS[depth], seeds=ctx.seeds, norm=norm, optimizer=Adam(),
                     schedule=ConstantLR(eta=1e-3, steps=steps,
                                         cycle_length=schedule.cycle_length))
    ranges = {(depth, norm): ctx.submit_train(
        f"range-{depth}-{norm or 'none'}", hidden=ARCHS[depth], seeds=ctx.seeds, norm=norm,
        schedule=sweep, train=sweep_train, optimizer=Adam())
        for depth in DEPTHS for norm in NORMS}
    rates = {}
    for (depth, norm), handle in ranges.items():  # each Adam run starts once its test is in
        rec = handle.result()
        eta = np.asarray(rec["history"]["eta"], dtype=np.float64).reshape(-1)
        rates[depth, norm] = adam_rate(eta, metric(rec, "val_accuracy"))
        constant = ConstantLR(eta=rates[depth, norm][1], steps=steps,
                              cycle_length=schedule.cycle_length)
        runs[depth, norm, "Adam"] = ctx.submit_train(
            key(depth, norm, "Adam"), hidden=ARCHS[depth], seeds=ctx.seeds, norm=norm,
            schedule=constant, optimizer=Adam())
    recs = {setting: handle.result() for setting, handle in runs.items()}
    dropout_rec = dropout_run.result()
    acc = {setting: column(rec, "test_accuracy") for setting, rec in recs.items()}

    rows = []
    for depth in DEPTHS:
        for norm in NORMS:
            reports = "—" if norm == "layer" else REPORTS[depth, norm == "batch"]
            rows.append([depth, NORM_TAGS[norm], test_cell(recs[depth, norm, "SGD"]),
                         test_cell(recs[depth, norm, "Adam"]), f"{rates[depth, norm][1]:g}",
                         reports])
    gain_rows, gains = [], {}
    for depth in DEPTHS:
        for opt in OPTIMIZERS:
            gains[depth, opt] = {
                "bn": gap(acc[depth, "batch", opt], acc[depth, None, opt]),
                "ln": gap(acc[depth, "layer", opt], acc[depth, None, opt]),
                "bn_ln": gap(acc[depth, "batch", opt], acc[depth, "layer", opt])}
            g = gains[depth, opt]
            gain_rows.append([depth, OPT_TAGS[opt], points(*g["bn"]), points(*g["ln"]),
                              points(*g["bn_ln"])])
    range_rows = [[depth, NORM_TAGS[norm], f"{rates[depth, norm][0]:g}",
                   f"{rates[depth, norm][1]:g}"] for depth in DEPTHS for norm in NORMS]
    bn_buys = "; ".join(f"{opt} {points(*gains['3-layer', opt]['bn'])} / "
                        f"{points(*gains['9-layer', opt]['bn'])}" for opt in OPTIMIZERS)
    dropout_rows, dropout_notes = dropout_section(dropout_rec, dropout_grid)
    early = early_points(recs, schedule)
    return {
        "summary": f"batch norm vs none, test points (3-layer / 9-layer): {bn_buys}",
        "headline": [["test accuracy points batch norm adds over no normalization, "
                      "3-layer / 9-layer", bn_buys, "— (reports: SGD only)"]],
        "figures": [bars_figure(ctx, recs, rates), curves_figure(ctx, recs, rates),
                    dropout_figure(ctx, dropout_rec, dropout_grid)],
        "tables": [
            {"title": "Test accuracy by normalization and optimizer (lambda 0.005)",
             "columns": ["net", "normalization", "SGD, cyclical [1e-5, 0.1]",
                         "Adam, constant rate", "Adam's rate", "reports (SGD)"],
             "rows": rows,
             "note": f"{steps} update steps each (2 cycles of n_s = {schedule.n_s}); mean ± "
                     "population std over the seeds, one lockstep run per cell."},
            {"title": "What normalization buys (test accuracy, percentage points)",
             "columns": ["net", "optimizer", "batch norm − none", "layer norm − none",
                         "batch norm − layer norm"],
             "rows": gain_rows,
             "note": "Difference of the seed means; '(within noise)' where it is no larger "
                     "than the two settings' seed stds added (or half a point)."},
            {"title": "Adam's rate from the range test",
             "columns": ["net", "normalization", "rate at the sweep's peak val. accuracy",
                         "Adam's constant rate"],
             "rows": range_rows,
             "note": f"Log-linear sweep from {RANGE[0]:g} to {RANGE[1]:g} over "
                     f"{sweep_steps} steps ({sweep_steps / per_epoch:g} epochs) with Adam, "
                     "the seeds as its models; Adam's rate "
                     f"is {RATE_FACTOR:g} x the peak's, to one significant digit."},
            {"title": "Dropout against L2 (3-layer, batch norm, SGD cyclical): test accuracy",
             "columns": ["dropout", *[f"lambda {lam:g}" for lam in LAMS]],
             "rows": dropout_rows,
             "note": "One lockstep run: dropout rate and lambda per model, "
                     f"{len(ctx.seeds)} seed(s) each."},
        ],
        "notes": [*paper_notes(gains, early, acc), *dropout_notes],
    }


def early_points(recs: dict, schedule) -> dict:
    """Validation accuracy at the record point nearest a quarter of training, per
    (depth, norm, optimizer): ``(step, (k,) accuracies)``."""
    out = {}
    for setting, rec in recs.items():
        steps = np.asarray(rec["history"]["steps"])
        i = int(np.argmin(np.abs(steps - schedule.total_steps / 4)))
        out[setting] = (int(steps[i]), metric(rec, "val_accuracy")[i])
    return out


def _count(flags) -> str:
    flags = list(flags)
    return f"{sum(flags)} of {len(flags)}"


def paper_notes(gains: dict, early: dict, acc: dict) -> list[str]:
    """Where our numbers agree with the papers' claims, by the rule of :func:`gap`."""
    cells = [(d, o) for d in DEPTHS for o in OPTIMIZERS]
    sgd = [gains[d, "SGD"]["bn"] for d in DEPTHS]
    deeper = ("; the difference is larger in the deeper net" if sgd[1][0] > sgd[0][0] else
              "; the difference is not larger in the deeper net" if np.isfinite(sgd[1][0])
              else "")
    adam = [gains[d, "Adam"]["bn"] for d in DEPTHS]
    smaller = [abs(a[0]) < abs(s[0]) for a, s in zip(adam, sgd, strict=True)]
    faster = [gap(early[d, n, "Adam"][1], early[d, n, "SGD"][1]) for d in DEPTHS
              for n in NORMS]
    step = early[DEPTHS[0], NORMS[0], "SGD"][0]
    final = [gap(acc[d, n, "Adam"], acc[d, n, "SGD"]) for d in DEPTHS for n in NORMS]
    ln_none = [gains[c]["ln"] for c in cells]
    bn_ln = [gains[c]["bn_ln"] for c in cells]
    return [
        "Ioffe & Szegedy (2015) introduce batch norm to train deep nets faster and to higher "
        "accuracy with SGD. With the reports' SGD, batch norm changes test accuracy by "
        f"{points(*sgd[0], ' points')} (3-layer) and {points(*sgd[1], ' points')} (9-layer): "
        f"ours {verdict(sgd)}{deeper}.",
        f"With Adam, batch norm changes test accuracy by {points(*adam[0], ' points')} "
        f"(3-layer) and {points(*adam[1], ' points')} (9-layer): smaller in size than with "
        f"SGD in {sum(smaller)} of {len(smaller)} depths"
        + (", so here Adam's per-weight step sizes do part of what batch norm does for SGD."
           if all(smaller) else "."),
        "Ba, Kiros & Hinton (2016) find layer norm better than no normalization, and in "
        "their convolutional experiments batch norm still ahead of it. Ours, over the 4 "
        f"(depth, optimizer) settings: layer norm vs none {verdict(ln_none)}; batch norm vs "
        f"layer norm {verdict(bn_ln)}.",
        "Kingma & Ba (2015) find Adam converging faster than SGD-type methods on multilayer "
        f"nets. Ours: Adam's validation accuracy at step {step} (a quarter of training) "
        f"against SGD's, over the 6 (depth, normalization) settings: {verdict(faster)} (by "
        "then SGD's cyclical rate has just risen from 1e-5 to its peak, 0.1).",
        "At the end, Adam's test accuracy is clearly above SGD's in "
        f"{sum(c and d > 0 for d, c in final)}, clearly below it in "
        f"{sum(c and d < 0 for d, c in final)} and within noise in "
        f"{sum(not c for _, c in final)} of the 6 settings. SGD's cyclical rate falls back "
        "to 1e-5 at the end of each cycle and Adam's constant rate never does, so this "
        "compares the two recipes, not the update rules alone.",
    ]


def dropout_section(rec: dict, grid: Grid) -> tuple[list, list[str]]:
    """The dropout x lambda table's rows, and a note on whether dropout replaces L2."""
    rows = [[f"{d:g}", *[test_cell(rec, grid.columns(dropout=d, lam=lam)) for lam in LAMS]]
            for d in DROPOUTS]
    acc = {(d, lam): column(rec, "test_accuracy", grid.columns(dropout=d, lam=lam))
           for d in DROPOUTS for lam in LAMS}
    means = {k: np.nanmean(v) if np.isfinite(v).any() else -np.inf for k, v in acc.items()}
    best = max(means, key=means.get)
    l2_only = max((k for k in acc if k[0] == 0.0 and k[1] > 0), key=means.get)
    drop_only = max((k for k in acc if k[0] > 0 and k[1] == 0.0), key=means.get)
    diff, clear = gap(acc[drop_only], acc[l2_only])
    outcome = ("dropout alone does as well as L2 alone here" if not clear or diff > 0
               else "dropout alone does not replace L2 here")
    return rows, [
        f"Dropout vs L2: the best setting is dropout {best[0]:g} with lambda {best[1]:g} "
        f"({pct(acc[best])}); the best dropout without L2 (dropout {drop_only[0]:g}) "
        f"against the best L2 without dropout (lambda {l2_only[1]:g}): "
        f"{points(diff, clear, ' points')}, so {outcome}."]


def bars_figure(ctx, recs: dict, rates: dict) -> str:
    """Test accuracy by normalization, grouped by optimizer, a panel per depth."""
    panels = []
    for depth in DEPTHS:
        series = {}
        for norm in NORMS:
            values, diverged, last = [], [], []
            for opt in OPTIMIZERS:
                rec = recs[depth, norm, opt]
                values.append(100 * column(rec, "test_accuracy"))
                diverged.append(column(rec, "diverged_step") >= 0)
                last.append(100 * column(rec, "last_val_accuracy"))
            series[NORM_TAGS[norm]] = (values, diverged, last)
        panels.append(BarPanel(f"{depth} {list(ARCHS[depth])}", "test accuracy (%)",
                               [OPT_TAGS[o] for o in OPTIMIZERS], series,
                               xlabel="optimizer", chance=100 * CHANCE))
    path, rel = ctx.figure_path("bars")
    top = max(np.nanmax(np.concatenate([np.ravel(v) for p in panels
                                        for v, _, _ in p.series.values()] + [[0.0]])), 0.0)
    plot_bars(path, "What batch norm buys with each optimizer: test accuracy by "
              "normalization (lambda 0.005)", panels, ymax=max(75.0, top + 25.0),
              caption=f"Bar: mean over {len(ctx.seeds)} seed(s); dot: one seed. SGD: the "
              "reports' cyclical rate in [1e-5, 0.1], 2 cycles, no momentum. Adam: a constant "
              "rate from a range test per net and normalization ("
              + "; ".join(f"{d} {NORM_TAGS[n]} {rates[d, n][1]:g}" for d in DEPTHS
                          for n in NORMS) + "), the same number of steps.")
    return rel


def curves_figure(ctx, recs: dict, rates: dict) -> str:
    """Validation accuracy over training: a panel per (depth, optimizer), a curve per norm."""
    panels = []
    for depth in DEPTHS:
        for opt in OPTIMIZERS:
            curves = []
            for i, norm in enumerate(NORMS):
                rec = recs[depth, norm, opt]
                label = NORM_TAGS[norm] + (f" (eta {rates[depth, norm][1]:g})"
                                           if opt == "Adam" else "")
                curves.append(Curve(label, rec["history"]["steps"],
                                    100 * metric(rec, "val_accuracy"), "-", PALETTE[i]))
            panels.append(Panel(f"{depth}, {OPT_TAGS[opt]}", "validation accuracy (%)", curves,
                                refs=[(100 * CHANCE, f"chance ({100 * CHANCE:g} %)")]))
    path, rel = ctx.figure_path("curves")
    plot_panels(path, "Validation accuracy over training by normalization and optimizer",
                panels, ncols=2, sharex=True, sharey=True, panel_height=2.9,
                caption=f"Line: median over {len(ctx.seeds)} seed(s), band: their range. "
                "Rows: depth; columns: optimizer. SGD's rate rises and falls twice (the "
                "reports' cyclical schedule); Adam's is constant.")
    return rel


def dropout_figure(ctx, rec: dict, grid: Grid) -> str:
    """Test accuracy against the dropout rate, a line per lambda."""
    series = {f"lambda {lam:g}": (list(DROPOUTS), 100 * np.stack(
        [column(rec, "test_accuracy", grid.columns(dropout=d, lam=lam)) for d in DROPOUTS]))
        for lam in LAMS}
    path, rel = ctx.figure_path("dropout")
    plot_xy(path, "Dropout against L2: 3-layer [50, 50], batch norm, the reports' SGD",
            "dropout rate of the hidden layers", "test accuracy (%)", series,
            caption=f"Point: median over {len(ctx.seeds)} seed(s); bar: their range. All "
            "nine (dropout, lambda) settings trained together in one lockstep run.")
    return rel
