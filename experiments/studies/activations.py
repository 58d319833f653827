"""Study 9: what batch norm does to the distributions inside the network.

The measurement of Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift" (ICML 2015), section 4.1 and figure 1(b, c):
the 15th, 50th and 85th percentiles of a hidden unit's input to its nonlinearity, over
training, with and without batch norm.  Here for the reports' 9-layer net [50, 30, 20,
20, 10, 10, 10, 10] (lambda 0.005, He init, 2 cycles), one run per BN setting with the
seeds as its models.

At every record point (``evals_per_cycle`` = 20 per cycle, plus before training) a
callback pushes one fixed batch of 1,000 validation images through the net in train
mode (batch statistics, running averages untouched: what the next training step sees)
and keeps, per hidden layer and model, the percentiles of unit 0's ReLU input and the
mean and std over samples and units of the pre-activation (the dense layer's output,
batch norm's input) and of the ReLU input (batch norm's output with BN; the same as
the pre-activation without).  Nothing is measured inside a step.
"""

from __future__ import annotations

import numpy as np

from experiments.suite import tasks as runs
from experiments.suite.context import ARCHS, test_cell
from experiments.report.figures import COLORS, Line, LinePanel, plot_heatmaps, plot_lines
from xpnet import layers, to_numpy
from xpnet.training import Callback

NAME = "activations"
DESCRIPTION = ("Ioffe & Szegedy (2015, sec. 4.1, fig. 1b-c): 15/50/85th percentiles of a hidden "
               "unit's ReLU input and the per-layer mean/std of pre-activations over training, "
               "9-layer net, BN on and off, measured at the record points on a fixed validation "
               "batch.")
ARCH = "9-layer"
PERCENTILES = (15, 50, 85)
#: Layers whose unit 0 the percentile figure follows.
SHOWN_LAYERS = (1, 4, 8)
PROBE_SIZE = 1000
EVALS_PER_CYCLE = 20
TAGS = {True: "BN", False: "no BN"}


def layer_inputs(net, X) -> list:
    """Per hidden layer, ``(s, z)``: the pre-activation (dense output, batch norm's input)
    and the ReLU input (batch norm's output, or ``s`` without BN), each ``(M, n, d)``.

    Train mode (batch statistics of ``X``), running averages untouched.
    """
    _, caches = net.forward(X, train=True, update_stats=False)
    out = []
    for l, (dense_cache, bn_cache, _) in enumerate(caches[:-1], start=1):
        x, W = dense_cache
        s, _ = layers.dense_forward(x, W, net.params.get(f"b{l}"))
        z = s if bn_cache is None else bn_cache[1] * bn_cache[0] + net.params[f"beta{l}"]
        out.append((s, z))
    return out


class ActivationProbe(Callback):
    """Records layer statistics of ``net`` on the inputs ``X`` at every record point."""

    def __init__(self, net, X):
        self.net, self.X = net, X
        self.data = {"steps": [], "percentiles": [], "s_mean": [], "s_std": [], "z_mean": [],
                     "z_std": []}

    def on_record(self, step, history):
        stats = {k: [] for k in self.data if k != "steps"}
        for s, z in layer_inputs(self.net, self.X):
            s, z = to_numpy(s).astype(np.float64), to_numpy(z).astype(np.float64)
            # (3, M) -> (M, 3): the percentiles of unit 0 over the samples, per model.
            stats["percentiles"].append(np.percentile(z[:, :, 0], PERCENTILES, axis=1).T)
            for name, v in (("s", s), ("z", z)):
                stats[f"{name}_mean"].append(v.mean(axis=(1, 2)))
                stats[f"{name}_std"].append(v.std(axis=(1, 2)))
        self.data["steps"].append(int(step))
        for key, per_layer in stats.items():  # each point: (layers, M[, 3])
            self.data[key].append(np.stack(per_layer).tolist())


def train_with_probe(env, spec: dict, callbacks) -> dict:
    """A training run (see :func:`experiments.suite.tasks.train_and_test`) whose record also
    holds ``activations``: the :class:`ActivationProbe` data."""
    net = runs.make_net(env, spec)
    probe = ActivationProbe(net, env.split("val").X[:spec["probe_size"], ...])
    record = runs.fit_and_test(env, spec, net, [*callbacks, probe])
    record["activations"] = probe.data
    return record


def fold_change(std) -> np.ndarray:
    """Max over record points / min over record points of a std ``(T, ...)``."""
    return np.max(std, axis=0) / np.min(std, axis=0)


def run(ctx) -> dict:
    schedule = ctx.cyclical(2)
    handles = {}
    for bn in (True, False):
        spec = ctx.train_spec(hidden=ARCHS[ARCH], seeds=ctx.seeds, batch_norm=bn,
                              schedule=schedule,
                              train=ctx.train_config(evals_per_cycle=EVALS_PER_CYCLE))
        spec["probe_size"] = PROBE_SIZE
        handles[bn] = ctx.submit("bn" if bn else "nobn", spec, train_with_probe,
                                 steps=schedule.total_steps, cost=runs.estimated_seconds(spec))
    recs = {bn: handles[bn].result() for bn in (True, False)}
    acts = {bn: {k: np.asarray(v, dtype=np.float64) for k, v in rec["activations"].items()}
            for bn, rec in recs.items()}  # steps (T,), stats (T, L, M[, 3])
    n_layers = len(ARCHS[ARCH])
    figures = [percentile_figure(ctx, acts), std_figure(ctx, acts)]

    rows = []
    for l in range(n_layers):
        row = [str(l + 1)]
        for bn, key in ((False, "z_std"), (True, "s_std"), (True, "z_std")):
            std = acts[bn][key][:, l, :]  # (T, M)
            row += [_spread(std[0]), _spread(std[-1]), f"{np.median(fold_change(std)):.1f}x"]
        rows.append(row)
    # Per layer, the median over seeds of max/min of the ReLU input's std.
    folds = {bn: np.median(fold_change(acts[bn]["z_std"]), axis=1) for bn in (True, False)}
    worst = {bn: (float(folds[bn].max()), int(np.argmax(folds[bn])) + 1) for bn in folds}
    ours = "; ".join(f"{TAGS[bn]} {worst[bn][0]:.1f}x (layer {worst[bn][1]})"
                     for bn in (False, True))
    acc_rows = [[TAGS[bn], test_cell(recs[bn])] for bn in (True, False)]
    return {
        "summary": f"largest change of a layer's ReLU-input std over training: {ours}",
        "headline": [[f"{ARCH}, largest change of a layer's ReLU-input std over training "
                      "(max/min over the record points)", ours,
                      "— (Ioffe & Szegedy 2015, fig. 1: BN keeps the distribution steady)"]],
        "figures": figures,
        "tables": [
            {"title": "Std of the layer inputs over training (fixed validation batch, "
                      "train-mode BN)",
             "columns": ["layer", "no BN: ReLU input, start", "end", "max/min",
                         "BN: pre-activation, start", "end", "max/min",
                         "BN: ReLU input, start", "end", "max/min"],
             "rows": rows,
             "note": (f"Std over the {PROBE_SIZE} samples and all units of a layer, mean ± "
                      "population std over seeds at the first and last record point; "
                      "max/min: the largest over the smallest std of the record points, "
                      "median over seeds.")},
            {"title": "Test accuracy of the probed runs", "columns": ["setting", "test accuracy"],
             "rows": acc_rows},
        ]}


def _spread(values) -> str:
    v = np.asarray(values, dtype=np.float64)
    digits = 2 if abs(v.mean()) < 100 else 0
    return (f"{v.mean():.{digits}f}" if v.size == 1
            else f"{v.mean():.{digits}f} ± {v.std():.{digits}f}")


def percentile_figure(ctx, acts) -> str:
    panels = []
    for l in SHOWN_LAYERS:
        for bn in (False, True):
            steps = acts[bn]["steps"]
            pct = acts[bn]["percentiles"][:, l - 1, 0, :]  # (T, 3), seed 0
            lines = [Line(f"{p}th percentile", steps, pct[:, i], color=COLORS[i],
                          style="-" if p == 50 else "--", width=1.8 if p == 50 else 1.3)
                     for i, p in enumerate(PERCENTILES)]
            panels.append(LinePanel(f"{TAGS[bn]}: layer {l}, unit 0", "ReLU input", lines))
    path, rel = ctx.figure_path("percentiles")
    plot_lines(path, f"{ARCH} net: the input of one ReLU over training (cf. Ioffe & Szegedy "
               "2015, fig. 1b-c)", panels,
               f"15th / 50th / 85th percentiles over a fixed batch of {PROBE_SIZE} validation "
               "images of unit 0's ReLU input (the batch norm output with BN), seed 0, "
               "measured in train mode at each record point. Left: no BN; right: BN; the "
               "two panels of a row share their y axis.",
               ncols=2, height=2.5, legend_panel=0, sharey="row")
    return rel


def std_figure(ctx, acts) -> str:
    n_layers = len(ARCHS[ARCH])
    labels = [str(l) for l in range(1, n_layers + 1)]
    panels = [("no BN: ReLU input\n(= pre-activation)", acts[False]["z_std"][:, :, 0].T,
               acts[False]["steps"], labels, "update step"),
              ("BN: pre-activation\n(batch norm's input)", acts[True]["s_std"][:, :, 0].T,
               acts[True]["steps"], labels, "update step"),
              ("BN: ReLU input\n(batch norm's output)", acts[True]["z_std"][:, :, 0].T,
               acts[True]["steps"], labels, "update step")]
    path, rel = ctx.figure_path("std_heatmap")
    plot_heatmaps(path, f"{ARCH} net: per-layer std of the layer inputs over training", panels,
                  f"Colour: log10 of the std over a fixed batch of {PROBE_SIZE} validation "
                  "images and all units of a layer (rows: hidden layers 1-8, top to bottom), "
                  "seed 0, at each record point. A steady colour along a row is a steady "
                  "distribution.", cbar_label="log10(std)", ylabel="hidden layer")
    return rel
