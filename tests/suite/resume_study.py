"""A study for the checkpoint tests (tests/suite/test_run_checkpoints.py): four runs of the
kinds a checkpoint must carry whole: plain SGD, successive halving, dropout, Adam."""

from __future__ import annotations

from experiments.studies.kit import Grid
from xpnet import Adam, Halving

NAME = "resume"
DESCRIPTION = "Four runs a checkpoint must carry whole: plain, halving, dropout, Adam."
HIDDEN = (20, 10)


def run(ctx) -> dict:
    seeds = ctx.seeds
    schedule = ctx.cyclical(2)  # --quick: 100 steps, a record every 5
    lams = Grid(seeds, lam=(0.0, 0.005, 0.02))
    handles = {
        "plain": ctx.submit_train("plain", lams, hidden=HIDDEN, schedule=schedule),
        "halving": ctx.submit_train(
            "halving", Grid(seeds, lam=(0.0, 0.001, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)),
            hidden=HIDDEN, schedule=schedule,
            halving=Halving(rungs=(20, 50), eta=3, group_size=len(seeds))),
        "dropout": ctx.submit_train("dropout", Grid(seeds, dropout=(0.1, 0.3)), hidden=HIDDEN,
                                    schedule=schedule),
        "adam": ctx.submit_train("adam", lams, hidden=HIDDEN, schedule=schedule,
                                 optimizer=Adam()),
    }
    records = {key: handle.result() for key, handle in handles.items()}
    return {"summary": ", ".join(f"{key} {len(rec['test_accuracy'])} models"
                                 for key, rec in records.items())}
