"""Successive halving against the full search, in one run (``--halving``).

The lambda grid of the ``lambda_halving`` study (27 lambdas over the lambda search's fine
range, ``--halving-seeds`` seeds each) trained as one lockstep network twice in this
process: in full, then with successive halving (eta = 3, three geometric rungs: 27
configurations become 9, 3 and 1), both with the reports' cyclical schedule shortened
to ``--halving-n-s`` steps per half-cycle, 2 cycles.  Printed: each run's best lambda
(the best mean validation accuracy at the end among the models that reached it), its
test accuracy, the model-steps and the wall time, and the two ratios.  With random
images (no ``--data-dir``) the accuracies mean nothing; the ratios still hold.
"""

from __future__ import annotations

import math
import time

import numpy as np

from experiments.bench.runners import D_IN, DTYPE, HIDDEN, N_CLASSES
from experiments.studies.lambda_halving import ETA, lambda_grid
from xpnet.backend.devices import get_backend, to_numpy
from xpnet.network.network import Network, NetworkConfig
from xpnet.search.halving import Halving, geometric_rungs
from xpnet.training import DeviceSplit, TrainConfig, record_steps, train
from xpnet.training.schedules import CyclicalLR

#: The goal of issue 27: at most this fraction of the full search's wall time ...
GOAL_TIME = 0.45
#: ... for a best model within this many test-accuracy points of the full search's best.
GOAL_POINTS = 0.5


def halving_data(args):
    """Host ``(X, y)`` pairs for train, val and test: CIFAR-10 or random images."""
    n, n_val = args.n_samples, args.halving_val
    if args.data_dir is not None:
        from xpnet.data import load_cifar10

        ds = load_cifar10(args.data_dir, download=args.download, progress=False,
                          n_val=max(n_val, 1000))
        return ((ds.X_train[:n], ds.y_train[:n]), (ds.X_val[:n_val], ds.y_val[:n_val]),
                (ds.X_test, ds.y_test), "CIFAR-10")
    rng = np.random.default_rng(args.seed)
    total = n + 2 * n_val
    X = rng.standard_normal((total, D_IN), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, total)
    return ((X[:n], y[:n]), (X[n:n + n_val], y[n:n + n_val]), (X[n + n_val:], y[n + n_val:]),
            "random")


def _best(history, n_seeds: int, lam_count: int) -> int:
    """Index of the lambda whose seeds reached the end with the best mean val accuracy."""
    last = history.metrics["val_accuracy"][-1].reshape(lam_count, n_seeds)
    score = np.where(np.isfinite(last).all(axis=1), last.mean(axis=1), -np.inf)
    return int(np.argmax(score))


def _run(backend, splits, lams, seeds, schedule, config, halving):
    """Train the grid once; returns its row of figures."""
    grid_lam = np.repeat(lams, len(seeds))
    grid_seeds = np.tile(seeds, len(lams))
    net = Network.create(NetworkConfig(d_in=D_IN, hidden=HIDDEN, n_classes=N_CLASSES),
                         seeds=grid_seeds, lam=grid_lam, device=backend, dtype=DTYPE)
    tr, va, te = splits
    backend.synchronize()
    start = time.perf_counter()
    history = train(net, schedule, tr, va, config, progress=False, halving=halving)
    backend.synchronize()
    wall = time.perf_counter() - start
    best = _best(history, len(seeds), len(lams))
    survivors = np.arange(net.n_models) if history.survivors is None else history.survivors
    test = np.full(len(grid_lam), np.nan)
    test[survivors] = to_numpy(net.evaluate(te.X, te.y, te.Y)["accuracy"])
    cols = slice(best * len(seeds), (best + 1) * len(seeds))
    dropped = (history.dropped_step if history.dropped_step is not None
               else np.full(len(grid_lam), -1))
    steps = int(np.where(dropped >= 0, dropped, history.stopped_step).sum())
    return {"best_lambda": float(lams[best]),
            "val_accuracy": float(np.mean(history.metrics["val_accuracy"][-1, cols])),
            "test_accuracy": float(np.mean(test[cols])), "model_steps": steps, "wall_s": wall}


def run_halving(args) -> dict:
    """Time the full search and the halving search of one grid; print and return both."""
    backend = get_backend(args.device)
    (Xtr, ytr), (Xva, yva), (Xte, yte), source = halving_data(args)
    splits = tuple(DeviceSplit.from_host(backend, X, y, N_CLASSES, DTYPE)
                   for X, y in ((Xtr, ytr), (Xva, yva), (Xte, yte)))
    lams = lambda_grid(args.halving_lambdas)
    seeds = np.arange(args.halving_seeds)
    schedule = CyclicalLR(1e-5, 1e-1, n_s=args.halving_n_s, cycles=2)
    config = TrainConfig(batch_size=args.batch_size, evals_per_cycle=10,
                         train_eval_size=min(1000, args.n_samples))
    n_rungs = max(1, round(math.log(len(lams), ETA)))
    rungs = geometric_rungs(record_steps(schedule.total_steps, schedule.cycle_length,
                                         config.evals_per_cycle), n_rungs, ETA)
    halving = Halving(rungs=rungs, eta=ETA, group_size=len(seeds))
    print(f"halving bench: {len(lams)} lambdas x {len(seeds)} seed(s) = "
          f"{len(lams) * len(seeds)} models, {D_IN}-{'-'.join(map(str, HIDDEN))}-{N_CLASSES} "
          f"BN {DTYPE}, {args.n_samples} {source} training images, batch {args.batch_size}, "
          f"{schedule.total_steps} steps (cyclical, n_s {args.halving_n_s}, 2 cycles), "
          f"{len(Xva)} val images; rungs at steps {list(rungs)}, eta {ETA}; device "
          f"{backend.flag}", flush=True)
    # A short warm-up, so neither timed run pays for first-call costs.
    warm = CyclicalLR(1e-5, 1e-1, n_s=2, cycles=1)
    _run(backend, splits, lams[:2], seeds[:1], warm, TrainConfig(
        batch_size=args.batch_size, evals_per_cycle=1, train_eval_size=100), None)
    rows = {"full": _run(backend, splits, lams, seeds, schedule, config, None),
            "halving": _run(backend, splits, lams, seeds, schedule, config, halving)}
    print(f"{'run':<9}{'best lambda':>12}{'val acc':>9}{'test acc':>10}{'model-steps':>13}"
          f"{'wall (s)':>10}")
    for name, row in rows.items():
        print(f"{name:<9}{row['best_lambda']:>12.4g}{100 * row['val_accuracy']:>8.2f}%"
              f"{100 * row['test_accuracy']:>9.2f}%{row['model_steps']:>13,}"
              f"{row['wall_s']:>10.1f}")
    full, half = rows["full"], rows["halving"]
    time_ratio = half["wall_s"] / full["wall_s"]
    steps_ratio = half["model_steps"] / full["model_steps"]
    gap = 100 * (full["test_accuracy"] - half["test_accuracy"])
    met = time_ratio <= GOAL_TIME and gap <= GOAL_POINTS
    print(f"halving/full: wall time {time_ratio:.2f}x, model-steps {steps_ratio:.2f}x; best "
          f"model's test accuracy {-gap:+.2f} points against the full search's (goal: <= "
          f"{GOAL_TIME}x time, at most {GOAL_POINTS} points lower: "
          f"{'met' if met else 'not met'})", flush=True)
    return {"halving": {"rows": rows, "rungs": list(rungs), "time_ratio": time_ratio,
                        "model_steps_ratio": steps_ratio, "test_gap_points": gap,
                        "goal_met": met, "data": source}}
