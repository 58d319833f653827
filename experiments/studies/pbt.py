"""Population-based training inside the lockstep network, against the same population
without it and against a tuned single setting.

Two parts, each a population of 16 models (8 with --quick) that start from random
settings, one lockstep network each, trained twice: with :class:`xpnet.PBT` (every 2
epochs the worst quarter takes the best quarter's state and perturbs its rate scale and
lambda by 0.8 or 1.2, or with probability 0.25 draws them afresh) and without.

1. The 3-layer [50, 50] net with batch norm, the lambda search's final budget (3 cycles),
   exploring the rate scale, lambda and dropout; against lambda 0.005 (the reports' best,
   the lambda search's range) trained as the lambda search's final run is.
2. The 9-layer net *without* batch norm, 2 cycles as ``depth_bn``, exploring the rate scale
   and lambda; against the same net with batch norm at lambda 0.005.

A model's rate scale is its peak rate over the reports' 0.1: its row of the schedule
(drawn at the start; a child takes its parent's) times the factor PBT explores (1 at the
start, kept in [0.2, 5]).  Reported: the test accuracy of the model
with the best validation accuracy and the best test accuracy in the population, the
ensemble of the 4 best by validation accuracy, and the model-steps each run spent.
"""

from __future__ import annotations

import numpy as np

from experiments.report.markdown import pct
from experiments.studies.kit import ARCHS, column, test_cell
from xpnet import PBT, CyclicalLR
from xpnet.training import History

NAME = "pbt"
DESCRIPTION = ("Population-based training in the model axis: 16 models exploring rate scale "
               "and lambda (+ dropout), 3-layer BN (3 cycles) and 9-layer without BN "
               "(2 cycles), against the same population without PBT and a tuned setting; "
               "best test accuracy, ensemble of 4, model-steps, the discovered schedules.")
#: The reports' best lambda and peak rate.
REPORTS_LAMBDA, ETA_MAX = 0.005, 0.1
ENSEMBLE = 4
#: part -> (architecture, norm, cycles, initial log10 rate-scale range, explored space)
PARTS = {
    "3-layer BN": ("3-layer", "batch", 3, (-0.7, 0.3),
                   {"rate_scale": (0.2, 5.0), "lam": (1e-5, 1e-1),
                    "dropout": [0.0, 0.1, 0.2, 0.3]}),
    "9-layer no BN": ("9-layer", None, 2, (-1.3, 0.0),
                      {"rate_scale": (0.2, 5.0), "lam": (1e-5, 1e-1)}),
}


def population(n: int, scale_range, with_dropout: bool, seed: int = 36) -> dict:
    """``n`` random starting settings: log-uniform lambda in [1e-5, 1e-1] and rate scale
    in ``10 ** scale_range``, dropout from {0, 0.1, 0.2} (or 0), one seed each."""
    rng = np.random.default_rng(seed)
    lam = 10 ** rng.uniform(-5, -1, n)
    scale = 10 ** rng.uniform(*scale_range, n)
    dropout = rng.choice([0.0, 0.1, 0.2], n) if with_dropout else np.zeros(n)
    return {"lam": tuple(float(v) for v in lam), "scale": tuple(float(v) for v in scale),
            "dropout": tuple(float(v) for v in dropout), "seeds": tuple(range(n))}


def model_steps(rec: dict) -> int:
    return int(rec.get("model_steps") or rec["n_models"] * rec["history"]["stopped_step"])


def best_by_val(rec: dict) -> int:
    """The model with the best last validation accuracy (diverged ones never)."""
    val = column(rec, "last_val_accuracy")
    val[column(rec, "diverged_step") >= 0] = np.nan
    return int(np.nanargmax(np.where(np.isfinite(val), val, -np.inf)))


def schedules(rec: dict, scale0) -> list[dict]:
    """Each final model's lineage (:meth:`xpnet.History.lineage`) with ``scale``: its
    effective rate scale (its root's row of the schedule times PBT's factor)."""
    history = History.from_dict(rec["history"])
    out = []
    for place in range(rec["n_models"]):
        line = history.lineage(place)
        root = line["ancestry"][0][1]
        line["scale"] = [scale0[root] * f for f in line["rate_scale"]]
        line["root"] = root
        out.append(line)
    return out


def schedules_figure(ctx, lines: dict, total: dict) -> str:
    """Each final model's rate scale and lambda over the steps, one colour per root
    ancestor; the model with the best validation accuracy drawn thick."""
    from matplotlib import cm

    from xpnet.plots import page_figure, save_page

    path, rel = ctx.figure_path("schedules")
    fig, axes = page_figure(4, ncols=2, panel_height=2.8, sharex=False)
    for row, (part, (models, best)) in enumerate(lines.items()):
        roots = sorted({m["root"] for m in models})
        colour = {r: cm.tab10(k % 10) for k, r in enumerate(roots)}
        for col, (key, label) in enumerate((("scale", "rate scale"), ("lam", "lambda"))):
            ax = axes[2 * row + col]
            for m, line in enumerate(models):
                steps = [*line["steps"], total[part]]
                values = [*line[key], line[key][-1]]
                ax.step(steps, values, where="post", color=colour[line["root"]],
                        lw=2.4 if m == best else 0.9, alpha=1.0 if m == best else 0.7)
            ax.set_yscale("log")
            ax.set_title(f"{part}: {label}")
            ax.set_xlabel("training step")
            ax.set_ylabel(label)
    save_page(fig, path, "PBT's discovered schedules: each final model's rate scale and "
              "lambda over the steps",
              caption="One line per final model, coloured by the model it descends from "
                      "at step 0 (lines of one colour share an ancestor); thick: the model "
                      "with the best validation accuracy. Rate scale: its peak rate over "
                      "0.1.")
    return rel


def run(ctx) -> dict:
    n = 8 if ctx.quick else 16
    handles, starts, budgets = {}, {}, {}
    for part, (arch, norm, cycles, scale_range, space) in PARTS.items():
        start = population(n, scale_range, with_dropout=norm is not None)
        starts[part] = start
        base = ctx.cyclical(cycles)
        budgets[part] = base.total_steps
        schedule = CyclicalLR(base.eta_min, tuple(ETA_MAX * s for s in start["scale"]),
                              n_s=base.n_s, cycles=cycles)
        grid_values = {"lam": start["lam"]}
        if norm is not None:
            grid_values["dropout"] = start["dropout"]
        settings = dict(hidden=ARCHS[arch], norm=norm, schedule=schedule, ensemble=ENSEMBLE,
                        seeds=start["seeds"], **grid_values)
        epochs = 2
        pbt = PBT(epochs, unit="epochs", fraction=0.25, resample=0.25, space=space)
        handles[part, "PBT"] = ctx.submit_train(f"{arch}-pbt", pbt=pbt, **settings)
        handles[part, "no PBT"] = ctx.submit_train(f"{arch}-population", **settings)
    fixed = {"3-layer BN": ctx.submit_train("3-layer-lambda", hidden=ARCHS["3-layer"],
                                            seeds=ctx.seeds, lam=REPORTS_LAMBDA,
                                            schedule=ctx.cyclical(3)),
             "9-layer no BN": ctx.submit_train("9-layer-bn", hidden=ARCHS["9-layer"],
                                               seeds=ctx.seeds, lam=REPORTS_LAMBDA,
                                               norm="batch", schedule=ctx.cyclical(2))}
    recs = {key: h.result() for key, h in handles.items()}
    fixed_recs = {part: h.result() for part, h in fixed.items()}

    search_steps = (8 * ctx.cyclical(2).total_steps + 8 * ctx.cyclical(3).total_steps
                    + len(ctx.seeds) * ctx.cyclical(3).total_steps)
    rows, lines, found = [], {}, {}
    for part in PARTS:
        for how in ("PBT", "no PBT"):
            rec = recs[part, how]
            test = column(rec, "test_accuracy")
            best = best_by_val(rec)
            found[part, how] = (test[best], rec["ensemble_test_accuracy"])
            rows.append([part, f"population of {n}, {how}", pct(test[best]),
                         pct(np.nanmax(test)), pct(rec["ensemble_test_accuracy"]),
                         f"{model_steps(rec):,}"])
        rec = fixed_recs[part]
        setting = ("lambda 0.005 (the lambda search's final run)" if part == "3-layer BN"
                   else "with BN, lambda 0.005")
        rows.append([part, setting, test_cell(rec), "", "", f"{model_steps(rec):,}"])
        models = schedules(recs[part, "PBT"], starts[part]["scale"])
        lines[part] = (models, best_by_val(recs[part, "PBT"]))
    rows.append(["3-layer BN", "the lambda search, all its runs", "", "", "",
                 f"{search_steps:,}"])
    rel = schedules_figure(ctx, lines, budgets)

    history = History.from_dict(recs["3-layer BN", "PBT"]["history"])
    pbt_best, pbt_ens = found["3-layer BN", "PBT"]
    deep_best, _ = found["9-layer no BN", "PBT"]
    deep_bn = float(np.nanmean(column(fixed_recs["9-layer no BN"], "test_accuracy")))
    winner = lines["3-layer BN"][0][lines["3-layer BN"][1]]
    schedule_rows = []
    for s, sc, lam, place in zip(winner["steps"], winner["scale"], winner["lam"],
                                 winner["places"], strict=True):
        row = [s, f"{sc:.3g}", f"{lam:.3g}", place]
        if not schedule_rows or row[1:] != schedule_rows[-1][1:]:  # the changes only
            schedule_rows.append(row)
    return {
        "summary": f"3-layer BN: PBT's best-by-validation model tests {pct(pbt_best)}, its "
                   f"ensemble of {ENSEMBLE} {pct(pbt_ens)}; 9-layer without BN: PBT "
                   f"{pct(deep_best)} against {pct(deep_bn)} with BN",
        "headline": [["PBT, 3-layer BN: best model / ensemble of 4",
                      f"{pct(pbt_best)} / {pct(pbt_ens)}", "n/a"],
                     ["PBT, 9-layer without BN (with BN, lambda 0.005)",
                      f"{pct(deep_best)} ({pct(deep_bn)})", "n/a"]],
        "tables": [
            {"title": "Population-based training against the same population and a tuned "
                      "setting",
             "columns": ["part", "run", "test: best by validation", "test: best of all",
                         f"test: ensemble of {ENSEMBLE}", "model-steps"],
             "rows": rows,
             "note": "The best by validation is the model a user would keep; the best of all "
                     "peeks at the test set. The ensemble averages the probabilities of the "
                     f"{ENSEMBLE} models with the best validation accuracy. PBT's exploits cost "
                     "no model-steps: a copy is one gather along the model axis."},
            {"title": "The schedule the best 3-layer BN model followed under PBT",
             "columns": ["from step", "rate scale", "lambda", "trained in place"],
             "rows": schedule_rows,
             "note": f"{len(history.pbt_events)} exploits at {len(history.pbt_steps)} "
                     "action points."},
        ],
        "figures": [rel],
        "notes": ["PBT is greedy: it ranks by the validation accuracy at each action point, "
                  "so it favours what is good now (a low lambda, a rate that pays off soon) "
                  "over what would be best at the end; the cyclical schedule makes the "
                  "ranking noisier at high rates."],
    }
