"""Study 8: when batch norm's epsilon breaks its scale invariance.

Batch norm divides by ``sqrt(var + eps)`` (Ioffe & Szegedy 2015, algorithm 1), so it is
invariant to the scale of its input only while ``var >> eps``.  With weights drawn from
N(0, sigma^2) the pre-activation variance at initialisation is about
``fan_in * sigma^2 * E[h^2]`` — for sigma = 1e-4 and fan-in 50 about 2.5e-7, far below
the usual eps = 1e-5 — so batch norm's output shrinks by ``sqrt(var / (var + eps))``
instead of being normalised, and the shrinkage compounds layer after layer.  The
``init_sensitivity`` study sees it: the 9-layer BN net at sigma 1e-4 stays at chance.

Here: 3-layer [50, 50] and 9-layer [50, 30, 20, 20, 10, 10, 10, 10], BN on, weights
N(0, sigma^2) with sigma in {1e-1, 1e-3, 1e-4}, eps in {1e-3, 1e-5, 1e-8}.  One lockstep
run per architecture whose 3 sigmas x 3 eps x N seeds models differ in sigma, eps and
seed (a :class:`~experiments.studies.kit.Grid`; eps is per model, like lambda:
``Network.create(bn_eps=...)``).  A shorter
schedule than the reports' (1 cycle, n_s = 2 epochs, eta 1e-5..1e-1, lambda 0.005): the
question is whether a net trains at all.  A second, cheap run per architecture
measures the per-layer pre-activation variance at initialisation (train mode, 1,000
training images) of the same models.
"""

from __future__ import annotations

import numpy as np

from experiments.report.markdown import CHANCE, TRAINED_ABOVE, sci
from experiments.studies.kit import ARCHS, BATCH, EPS_CLAIM, Grid, column, mean_test, test_cell
from experiments.suite import tasks
from xpnet import CyclicalLR, to_numpy
from xpnet.plots import PALETTE, BarPanel, Curve, Panel, Ref, plot_bars, plot_panels

NAME = "bn_eps"
DESCRIPTION = ("Batch norm's eps vs tiny initial weights (eps in sqrt(var + eps): Ioffe & Szegedy "
               "2015, alg. 1): 3-layer and 9-layer BN nets, weights N(0, sigma^2), sigma in "
               "{1e-1, 1e-3, 1e-4}, eps in {1e-3, 1e-5, 1e-8}, eps per model in one lockstep run "
               "per architecture, 1 cycle of 4 epochs: test accuracy and per-layer "
               "pre-activation variance at initialisation.")
SIGMAS = (1e-1, 1e-3, 1e-4)
EPS = (1e-3, 1e-5, 1e-8)
N_S_EPOCHS = 2
PROBE_SIZE = 1000
STUCK = 0.15  # a net below this test accuracy has not learnt (chance: 0.10)


def init_variances(env, spec: dict, callbacks) -> dict:
    """Per layer and model, the pre-activation variance at initialisation ``(K, M)``.

    Variance over ``spec["probe_size"]`` training images, averaged over the layer's
    units; rows 1..K-1 are the hidden layers (batch norm's inputs), row K the scores.
    """
    net = tasks.make_net(env, spec)
    X = env.split("train").X[:spec["probe_size"], ...]
    hidden = [to_numpy(s).astype(np.float64).var(axis=1).mean(axis=-1)
              for s, _ in net.layer_inputs(X)]
    scores, _ = net.forward(X, train=True, update_stats=False)
    out = to_numpy(scores).astype(np.float64).var(axis=1).mean(axis=-1)
    return {"pre_var": np.stack([*hidden, out])}


def run(ctx) -> dict:
    n_s = max(1, N_S_EPOCHS * len(ctx.data.y_train) // BATCH)
    schedule = CyclicalLR(1e-5, 1e-1, n_s=n_s, cycles=1)
    grid = Grid(ctx.seeds, sigma=SIGMAS, eps=EPS)
    models = dict(grid=grid, init="normal", batch_norm=True, schedule=schedule)
    handles, probes = {}, {}
    for arch in ("3-layer", "9-layer"):
        handles[arch] = ctx.submit_train(arch, hidden=ARCHS[arch], **models)
        spec = ctx.train_spec(hidden=ARCHS[arch], **models)
        spec["probe_size"] = PROBE_SIZE
        probes[arch] = ctx.submit(f"{arch}-init", spec, init_variances)
    recs = {arch: h.result() for arch, h in handles.items()}
    pre_var = {arch: np.asarray(h.result()["pre_var"], dtype=np.float64)
               for arch, h in probes.items()}  # (K, M)
    cols = {(sigma, eps): grid.columns(sigma=sigma, eps=eps) for sigma in SIGMAS for eps in EPS}

    acc_rows, var_rows, cells = [], [], []
    for arch in recs:
        for sigma in SIGMAS:
            acc_rows.append([arch, f"{sigma:g}"] + [test_cell(recs[arch], cols[sigma, eps])
                                                   for eps in EPS])
            row = [arch, f"{sigma:g}"]
            for eps in EPS:
                var = pre_var[arch][:, cols[sigma, eps]]
                smallest = float(np.mean(var[:-1].min(axis=0)))
                scores = float(np.mean(var[-1]))
                row.append(f"{smallest / eps:.2g} x eps; scores {sci(scores)}")
                cells.append((scores, mean_test(recs[arch], cols[sigma, eps])))
            var_rows.append(row)
    rule = rule_of_thumb(cells)
    deep = " / ".join(test_cell(recs["9-layer"], cols[1e-4, eps]) for eps in EPS)
    figures = [variance_figure(ctx, pre_var, cols), accuracy_figure(ctx, recs, cols)]
    return {
        "summary": f"9-layer, sigma 1e-4, eps {' / '.join(f'{e:g}' for e in EPS)}: {deep}",
        "headline": [["9-layer BN, sigma 1e-4, eps 1e-3 / 1e-5 / 1e-8 (1 cycle of 4 epochs)",
                      deep, "not studied (3-layer BN, eps 1e-5: ~53.6 % at every sigma)"]],
        "figures": figures,
        "notes": [rule],
        "evidence": {EPS_CLAIM: eps_evidence(recs["9-layer"], cols)},
        "tables": [
            {"title": "Test accuracy (BN, 1 cycle, n_s = 2 epochs)",
             "columns": ["architecture", "sigma", *[f"eps = {e:g}" for e in EPS]],
             "rows": acc_rows,
             "note": "Mean ± population std over seeds."},
            {"title": "Pre-activation variance at initialisation: smallest batch-norm input "
                      "(as a multiple of eps) and class scores",
             "columns": ["architecture", "sigma", *[f"eps = {e:g}" for e in EPS]],
             "rows": var_rows,
             "note": (f"Variance over {PROBE_SIZE} training images (train-mode BN) of each "
                      "layer's pre-activation, averaged over its units and over seeds: the "
                      "smallest over the batch-norm inputs (hidden layers) divided by eps, "
                      "and that of the class scores (the output layer).")}]}


def eps_evidence(rec: dict, cols: dict) -> str:
    """What the 9-layer run says of the claim that eps stalls a deep BN net from weights
    N(0, 1e-4^2): it should train with a smaller eps (1e-8) and not with the usual 1e-5."""
    cells = {eps: test_cell(rec, cols[1e-4, eps]) for eps in EPS}
    trained = {eps: mean_test(rec, cols[1e-4, eps]) > CHANCE + TRAINED_ABOVE for eps in EPS}
    if trained[1e-8] and not trained[1e-5]:
        verdict = "supported"
    elif not trained[1e-8]:
        verdict = "not supported (a smaller eps does not rescue the net)"
    else:
        verdict = "not decided (the net trains with eps 1e-5 in this shorter schedule too)"
    return (f"{verdict}: the 9-layer BN net from sigma 1e-4 reaches {cells[1e-8]} with eps "
            f"1e-8 against {cells[1e-5]} with eps 1e-5 ({cells[1e-3]} with 1e-3), in 1 cycle "
            f"of {2 * N_S_EPOCHS} epochs.")


def rule_of_thumb(cells) -> str:
    """The rule the measurements support, from ``(score variance at init, test accuracy)``
    per setting."""
    trained = [v for v, acc in cells if np.isfinite(acc) and acc >= STUCK]
    stuck = [v for v, acc in cells if not (np.isfinite(acc) and acc >= STUCK)]
    if not stuck:
        found = "every setting trained"
    elif trained and min(trained) > max(stuck):
        found = (f"every net whose class scores kept a variance of at least "
                 f"{sci(min(trained))} at initialisation trained, every one at or below "
                 f"{sci(max(stuck))} stayed at chance")
    else:
        found = (f"nets at chance had score variances up to {sci(max(stuck))}, trained "
                 f"ones down to {sci(min(trained))}" if trained else "no setting trained")
    return ("Rule of thumb: keep eps below the variance of every batch norm's input at "
            "initialisation, about fan_in x sigma^2 / 2 for a layer after a normalised ReLU "
            "(~1 with He init). A layer whose input variance is below eps shrinks the "
            "signal by about var / eps instead of normalising it, and the shrinkage "
            f"compounds with depth. Here {found}.")


def variance_figure(ctx, pre_var, cols) -> str:
    panels = []
    for arch, var in pre_var.items():
        K = var.shape[0]
        layers_x = np.arange(1, K + 1)
        for sigma in SIGMAS:
            lines = [Curve(f"eps = {eps:g}", layers_x, var[:, cols[sigma, eps]],
                           color=PALETTE[j], seeds="each", marker="o" if j == 1 else None)
                     for j, eps in enumerate(EPS)]
            panels.append(Panel(
                f"{arch}, sigma = {sigma:g}", "pre-activation variance", lines,
                xlabel="layer", logy=True,
                refs=[Ref(eps, None, PALETTE[j], width=1.0) for j, eps in enumerate(EPS)],
                xticks=(layers_x, [*map(str, layers_x[:-1]), "out"])))
    path, rel = ctx.figure_path("init_variance")
    plot_panels(path, "Pre-activation variance at initialisation, BN nets, weights N(0, sigma^2)",
                panels,
                caption=f"Variance over {PROBE_SIZE} training images of each layer's "
                "pre-activation (batch norm's input; 'out': the class scores), averaged over "
                "units, one line per seed (they overlap). Dotted line of the same colour: that "
                "eps. Where a line falls below its eps, batch norm shrinks instead of "
                "normalising and the deeper layers collapse.", ncols=3, panel_height=2.9,
                sharey=True, legend=0)
    return rel


def accuracy_figure(ctx, recs, cols) -> str:
    panels = []
    for arch, rec in recs.items():
        div = column(rec, "diverged_step") >= 0
        series = {f"eps = {eps:g}": (
            [100 * column(rec, "test_accuracy", cols[s, eps]) for s in SIGMAS],
            [div[cols[s, eps]] for s in SIGMAS],
            [100 * column(rec, "last_val_accuracy", cols[s, eps]) for s in SIGMAS])
            for eps in EPS}
        panels.append(BarPanel(f"{arch} {list(ARCHS[arch])}", "test accuracy (%)",
                               [f"sigma = {s:g}" for s in SIGMAS], series,
                               xlabel="std of the initial weights", chance=100 * CHANCE))
    path, rel = ctx.figure_path("accuracy")
    plot_bars(path, "BN nets from tiny initial weights: test accuracy against batch norm's eps",
              panels, caption="Bar: mean test accuracy over seeds; dot: one seed; dotted line: "
              "chance. 1 cycle of 4 epochs, eta 1e-5..1e-1, lambda 0.005.", ncols=2, ymax=75)
    return rel
