"""Study 2: a 4-layer [50, 30, 20] BN net must fit 100 training images exactly.

A sanity check of the whole training path: no regularisation, batch 10, a cyclical
rate; the training accuracy should reach 100 % while validation stays low.
"""

from __future__ import annotations

from experiments.report.markdown import differs, seeds_cell, unexplained
from experiments.studies.kit import ARCHS, metric, test_cell
from xpnet import CyclicalLR
from xpnet.plots import plot_panels, spread_caption, training_panels

NAME = "overfit"
DESCRIPTION = ("4-layer [50, 30, 20] with BN on 100 training images, lambda 0: to 100 % "
               "training accuracy.")
N_SAMPLES = 100
BATCH = 10


def run(ctx) -> dict:
    # 60 epochs of 10 steps: cheap enough to keep at full scale under --quick too.
    schedule = CyclicalLR(1e-5, 1e-1, n_s=100, cycles=3)
    rec = ctx.submit_train("4-layer-bn-100", hidden=ARCHS["4-layer"], seeds=ctx.seeds, lam=0.0,
                           schedule=schedule, n_train=N_SAMPLES,
                           train=ctx.train_config(batch_size=BATCH, evals_per_cycle=20)
                           ).result()
    train_acc = metric(rec, "train_accuracy")
    val_acc = metric(rec, "val_accuracy")
    path, rel = ctx.figure_path("accuracy")
    plot_panels(path, f"Overfitting {N_SAMPLES} images: 4-layer [50, 30, 20] with BN, lambda 0",
                training_panels(rec["history"], n_classes=ctx.data.n_classes,
                                metrics=("accuracy", "loss")),
                caption=f"Training on the {N_SAMPLES} images (solid) vs the validation set "
                        f"(dashed). {spread_caption(len(ctx.seeds))}")
    final_train = train_acc[-1]
    return {
        "summary": f"final training accuracy {seeds_cell(final_train)}",
        "headline": [["4-layer BN, 100 images: training accuracy", seeds_cell(final_train),
                      "100 %"]],
        "differences": [{"setting": "4-layer BN, 100 images: training accuracy",
                         "ours": seeds_cell(final_train), "reports": "100 %",
                         "cause": unexplained(len(ctx.seeds))}]
        if differs(final_train, 1.0) else [],
        "tables": [{"title": "Final figures", "columns": [
            "setting", "training accuracy", "validation accuracy", "test accuracy", "reports"],
            "rows": [[f"4-layer [50, 30, 20], BN, {N_SAMPLES} images, batch {BATCH}",
                      seeds_cell(final_train), seeds_cell(val_acc[-1]), test_cell(rec),
                      "100 % training accuracy"]]}],
        "figures": [rel],
    }
