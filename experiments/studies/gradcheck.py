"""Study 1: analytic gradients against centred differences, per layer and parameter.

float64, reduced problem (the first ``d`` features of ``n`` training images), one model
per config; every config is one cached run.
"""

from __future__ import annotations

import re

import numpy as np

from experiments.report.markdown import sci
from experiments.studies.kit import ARCHS
from xpnet import Network, NetworkConfig, get_backend, one_hot
from xpnet.network.gradcheck import check_gradients
from xpnet.plots import DotPanel, plot_dot_rows

NAME = "gradcheck"
DESCRIPTION = ("Analytic vs numerical gradients in float64 on a reduced problem: K = 2, 3, 4, 9 "
               "layers, BN on/off, lambda 0 and 0.01; max and mean relative error per parameter.")
REPORTS_WORST = "7e-3 (W1, 3-layer, BN); 0.3-1.0 with a buggy BN"
THRESHOLD = 1e-6
#: The reports' worst relative error (W1, 3-layer, BN): the second reference line.
REPORTS_WORST_VALUE = 7e-3
#: Parameter kinds in the order a layer holds them.
KINDS = ("W", "b", "gamma", "beta")


def configs(quick: bool) -> list[tuple[int, bool, float]]:
    """``(K, batch_norm, lam)`` triples; --quick keeps K = 2, 3 and lambda 0.01."""
    ks, lams = ((2, 3), (0.01,)) if quick else ((2, 3, 4, 9), (0.0, 0.01))
    return [(k, bn, lam) for k in ks for bn in (True, False) for lam in lams]


def hidden_for(k: int) -> tuple[int, ...]:
    return ARCHS[f"{k}-layer"]


def label(k: int, bn: bool, lam: float) -> str:
    return f"{k}-layer, {'BN' if bn else 'no BN'}, lambda {lam:g}"


def check_config(env, spec: dict, callbacks) -> dict:
    """One gradient check as its spec says (a run: see :mod:`experiments.suite.tasks`).

    Always on the CPU, whatever --device says: the reference runs in extended
    precision there, which no GPU offers.
    """
    d, n = spec["d"], spec["n"]
    X = np.asarray(env.data.X_train[:n, :d], dtype=np.float64)
    Y = one_hot(env.data.y_train[:n], env.data.n_classes)
    config = NetworkConfig(d_in=d, hidden=tuple(spec["hidden"]), n_classes=env.data.n_classes,
                           norm="batch" if spec["batch_norm"] else None)
    net = Network.create(config, seeds=spec["seed"], lam=spec["lam"],
                         device=get_backend("cpu"), dtype="float64")
    errors = check_gradients(net, X, Y, threshold=spec["threshold"])
    return {"params": [e.to_dict() for e in errors]}


def run(ctx) -> dict:
    d, n = (10, 5) if ctx.quick else (20, 10)
    handles = {}
    for k, bn, lam in configs(ctx.quick):
        key = f"K{k}-{'bn' if bn else 'nobn'}-lam{lam:g}"
        spec = {"K": k, "hidden": hidden_for(k), "batch_norm": bn, "lam": lam, "d": d,
                "n": n, "seed": 0, "threshold": THRESHOLD, "data": ctx.data_sizes()}
        handles[(k, bn, lam)] = ctx.submit(key, spec, check_config)
    results = {cfg: handle.result()["params"] for cfg, handle in handles.items()}
    return summarise(ctx, results, d, n)


def network_order(name: str) -> tuple[int, int]:
    """Sort key of a parameter name (``"gamma3"``): its layer, then its kind's place."""
    kind, layer = re.fullmatch(r"([A-Za-z]+)(\d+)", name).groups()
    return int(layer), KINDS.index(kind) if kind in KINDS else len(KINDS)


def summarise(ctx, results: dict, d: int, n: int) -> dict:
    """Tables, headline and figures from ``{(K, bn, lam): [ParamError dicts]}``."""
    summary_rows, detail_rows = [], []
    worst = (-1.0, "", "")
    for (k, bn, lam), params in results.items():
        params = sorted(params, key=lambda p: network_order(p["name"]))
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
    figures = [figure(ctx, k, {cfg: params for cfg, params in results.items() if cfg[0] == k})
               for k in sorted({k for k, _, _ in results})]
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
            {"title": "Per parameter", "appendix": True,
             "columns": ["config", "parameter", "shape", "max rel. error", "mean rel. error",
                         f"share < {THRESHOLD:g}"],
             "rows": detail_rows},
        ],
        "figures": figures,
    }


def figure(ctx, k: int, results: dict) -> str:
    """One K's figure: a row per layer, a panel per (BN, lambda), a marker per kind."""
    panels = []
    for (_, bn, lam), params in sorted(results.items(), key=lambda item: (not item[0][1],
                                                                          item[0][2])):
        series = {kind: np.full(k, np.nan) for kind in KINDS}
        for p in params:
            layer, kind = network_order(p["name"])
            series[KINDS[kind]][layer - 1] = p["max_rel_error"]
        panels.append(DotPanel(f"{'BN' if bn else 'no BN'}, lambda {lam:g}",
                               {kind: v for kind, v in series.items() if np.isfinite(v).any()}))
    rows = [f"layer {l}" for l in range(1, k)] + [f"layer {k} (output)"]
    path, rel = ctx.figure_path(f"K{k}")
    plot_dot_rows(
        path, f"Gradient check, {k}-layer {list(hidden_for(k))}: max relative error per "
        "parameter", rows, panels, "max relative error (log scale)",
        refs=[(THRESHOLD, f"target {THRESHOLD:.0e}".replace("e-0", "e-")),
              (REPORTS_WORST_VALUE,
               f"reports' worst\n{REPORTS_WORST_VALUE:.0e}".replace("e-0", "e-"))],
        caption="Each marker is one parameter array's largest relative error between the "
                "analytic and the centred-difference gradient (float64, one seed); layers in "
                "network order from the input (top). With BN the hidden layers have no bias "
                "b (beta takes its place).")
    return rel
