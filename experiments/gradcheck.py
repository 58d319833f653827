"""Study 1: analytic gradients against centred differences, per layer and parameter.

float64, reduced problem (the first ``d`` features of ``n`` training images), one model
per config; every config is one cached run.
"""

from __future__ import annotations

import numpy as np

from experiments.common import ARCHS
from xpnet import Network, NetworkConfig, get_backend, one_hot
from xpnet.gradcheck import check_gradients
from xpnet.plots import plot_grouped_bars
from xpnet.report import sci

NAME = "gradcheck"
DESCRIPTION = ("Analytic vs numerical gradients in float64 on a reduced problem: K = 2, 3, 4, 9 "
               "layers, BN on/off, lambda 0 and 0.01; max and mean relative error per parameter.")
REPORTS_WORST = "7e-3 (W1, 3-layer, BN); 0.3-1.0 with a buggy BN"
THRESHOLD = 1e-6


def configs(quick: bool) -> list[tuple[int, bool, float]]:
    """``(K, batch_norm, lam)`` triples; --quick keeps K = 2, 3 and lambda 0.01."""
    ks, lams = ((2, 3), (0.01,)) if quick else ((2, 3, 4, 9), (0.0, 0.01))
    return [(k, bn, lam) for k in ks for bn in (True, False) for lam in lams]


def hidden_for(k: int) -> tuple[int, ...]:
    return ARCHS[f"{k}-layer"]


def label(k: int, bn: bool, lam: float) -> str:
    return f"{k}-layer, {'BN' if bn else 'no BN'}, lambda {lam:g}"


def run(ctx) -> dict:
    d, n = (10, 5) if ctx.quick else (20, 10)
    X = np.asarray(ctx.data.X_train[:n, :d], dtype=np.float64)
    Y = one_hot(ctx.data.y_train[:n], ctx.data.n_classes)
    # Always on the CPU, whatever --device says: the reference runs in extended
    # precision there, which no GPU offers.
    cpu = get_backend("cpu")
    results = {}
    for k, bn, lam in configs(ctx.quick):
        key = f"K{k}-{'bn' if bn else 'nobn'}-lam{lam:g}"
        spec = {"K": k, "hidden": hidden_for(k), "batch_norm": bn, "lam": lam, "d": d,
                "n": n, "seed": 0, "threshold": THRESHOLD, "data": ctx.data_sizes()}

        def compute(k=k, bn=bn, lam=lam):
            config = NetworkConfig(d_in=d, hidden=hidden_for(k), n_classes=ctx.data.n_classes,
                                   batch_norm=bn)
            net = Network.create(config, seeds=0, lam=lam, device=cpu, dtype="float64")
            errors = check_gradients(net, X, Y, threshold=THRESHOLD)
            return {"params": [e.to_dict() for e in errors]}

        results[(k, bn, lam)] = ctx.run_once(key, spec, compute)["params"]
    return summarise(ctx, results, d, n)


def summarise(ctx, results: dict, d: int, n: int) -> dict:
    """Tables, headline and figures from ``{(K, bn, lam): [ParamError dicts]}``."""
    summary_rows, detail_rows = [], []
    worst = (-1.0, "", "")
    for (k, bn, lam), params in results.items():
        top = max(params, key=lambda p: p["max_rel_error"])
        share = float(np.mean([p["share_below"] for p in params]))
        summary_rows.append([label(k, bn, lam), top["name"], sci(top["max_rel_error"]),
                             sci(np.mean([p["mean_rel_error"] for p in params])),
                             f"{100 * share:.1f} %"])
        for p in params:
            detail_rows.append([label(k, bn, lam), p["name"], "x".join(map(str, p["shape"][1:])),
                                sci(p["max_rel_error"]), sci(p["mean_rel_error"]),
                                f"{100 * p['share_below']:.1f} %"])
        if top["max_rel_error"] > worst[0]:
            worst = (top["max_rel_error"], top["name"], label(k, bn, lam))
    figures = []
    for k in sorted({k for k, _, _ in results}):
        names = []
        for (kk, _, _), params in results.items():
            names += [p["name"] for p in params if kk == k and p["name"] not in names]
        series = {}
        for (kk, bn, lam), params in results.items():
            if kk != k:
                continue
            by_name = {p["name"]: p["max_rel_error"] for p in params}
            series[f"{'BN' if bn else 'no BN'}, lambda {lam:g}"] = (
                [by_name.get(nm, np.nan) for nm in names], None)
        path, rel = ctx.figure_path(f"K{k}")
        plot_grouped_bars(path, f"Gradient check, {k}-layer: max relative error per parameter",
                          names, series, "max relative error (log)", xlabel="parameter",
                          logy=True)
        figures.append(rel)
    return {
        "summary": f"worst max relative error {sci(worst[0])} ({worst[1]}, {worst[2]})",
        "headline": [["worst max relative error (gradients)",
                      f"{sci(worst[0])} ({worst[1]}, {worst[2]})", REPORTS_WORST]],
        "tables": [
            {"title": "Per config", "columns": ["config", "worst parameter", "max rel. error",
                                                "mean rel. error", f"share < {THRESHOLD:g}"],
             "rows": summary_rows,
             "note": (f"Reduced problem: first {d} features of {n} training images, float64, "
                      "fourth-order centred differences. Reports: worst 7e-3 (W1, 3-layer, "
                      "BN); a buggy BN gave 0.3-1.0.")},
            {"title": "Per parameter", "columns": ["config", "parameter", "shape",
                                                   "max rel. error", "mean rel. error",
                                                   f"share < {THRESHOLD:g}"],
             "rows": detail_rows},
        ],
        "figures": figures,
    }
