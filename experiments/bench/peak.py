"""The training step as a share of the machine's own GEMM peak (``--peak``, ``--compare``).

The physical limit of a training step is the speed of its matrix products.  This bench
measures, in the same run:

* **the GEMM peak** -- the best rate of a large square float32 product ``A @ B`` on the
  bench's device (one core with the bench's default of one BLAS thread; a GPU's own
  peak on a GPU): :func:`gemm_peak`;
* **the step's useful FLOPs** -- forward, and backward without the input's gradient
  (nobody needs it), counted from the layer sizes: :func:`step_flops` (63.2 MFLOP per
  model for the 3072-50-50-10 net at batch 100; batch norm, the loss and the update are
  not counted: they are the overhead the share measures);
* **each step's share of the peak** -- for M models in lockstep, ``M * flops / (s per
  step) / peak``, timed inside :func:`xpnet.training.loop.train` between two of its
  steps (set-up, batch orders and records excluded), with the M models sharing one
  batch order (a lambda sweep: one seed) and with their own (one seed each); and layer
  norm + Adam's step against batch norm + SGD's, both with their own batches, as a ratio.

``--json`` saves the figures; ``--compare BEFORE.json[,...] AFTER.json[,...]`` prints the
shares of two sets of runs side by side (the best of each set per row).  Only library API
that predates this module is used, so the same bench times an older checkout of the
library (``PYTHONPATH=<checkout>/src``).
"""

from __future__ import annotations

import json
import math
import time

import numpy as np

from experiments.bench.runners import D_IN, DTYPE, ETA, HIDDEN, LAM, N_CLASSES, BenchError
from xpnet.network.network import Network, NetworkConfig
from xpnet.training import Callback, TrainConfig, train
from xpnet.training.optim import Adam
from xpnet.training.schedules import ConstantLR

#: The product size of the GEMM peak on a CPU and on a GPU.
PEAK_N = {"cpu": 2048, "gpu": 8192}
MODES = ("shared", "own")


def step_flops(sizes, batch: int) -> int:
    """Useful FLOPs of one model's training step: ``2 n d_in d_out`` per layer forward,
    the same for each weight gradient, and for each input gradient but the first layer's.

    >>> step_flops((3072, 50, 50, 10), 100)
    63240000
    """
    products = [2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return 2 * sum(products) + sum(products[1:])


def gemm_peak(backend, n: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` float32 products of two ``(n, n)`` matrices."""
    if n is None:
        n = PEAK_N["cpu" if backend.name in ("cpu", "strict") or backend.flag == "torch"
                   else "gpu"]
    rng = np.random.default_rng(0)
    A, B = (backend.asarray(rng.standard_normal((n, n), dtype=np.float32)) for _ in "AB")
    C = A @ B  # warm-up (a GPU's first product loads its kernels)
    backend.synchronize()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        C = A @ B
        backend.synchronize()
        best = min(best, time.perf_counter() - t0)
    del C
    return 2.0 * n ** 3 / best


class _StepClock(Callback):
    """Seconds between the end of step ``start - 1`` and of the run's last step."""

    def __init__(self, backend, start: int, total: int):
        self.backend, self.start, self.total = backend, start, total
        self.t0 = self.seconds = None

    def on_step_end(self, step):
        if step == self.start - 1 or step == self.total - 1:
            self.backend.synchronize()
            now = time.perf_counter()
            if step == self.start - 1:
                self.t0 = now
            else:
                self.seconds = now - self.t0


def make_peak_net(backend, n_models: int, mode: str, norm: str = "batch"):
    """The 3072-50-50-10 net of M models: one seed and M lambdas around the bench's
    (``shared``: one batch order) or seeds 0..M-1 (``own``: a batch order each)."""
    config = NetworkConfig(d_in=D_IN, hidden=HIDDEN, n_classes=N_CLASSES, norm=norm)
    lam = LAM * np.geomspace(0.1, 10.0, n_models) if n_models > 1 else LAM
    seeds = 0 if mode == "shared" else list(range(n_models))
    return Network.create(config, n_models=n_models, seeds=seeds, lam=lam, device=backend,
                          dtype=DTYPE)


def step_runner(net, split, *, steps: int, warmup: int, batch_size: int, optimizer=None):
    """A function that trains ``warmup + steps`` steps and returns seconds per timed step."""
    total = warmup + steps
    config = TrainConfig(batch_size=batch_size, evals_per_cycle=1, train_eval_size=100,
                         optimizer=optimizer)

    def run():
        clock = _StepClock(net.backend, warmup, total)
        train(net, ConstantLR(eta=ETA, steps=total, cycle_length=total), split, None, config,
              callbacks=[clock], progress=False)
        return clock.seconds / steps

    return run


def _race(runners: dict, repeats: int) -> dict:
    best = {name: math.inf for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            best[name] = min(best[name], run())
    return best


def measure_peak(backend, split, models, *, batch_size: int = 100, repeats: int = 3,
                 flop_budget: float = 30e9, warmup: int = 3, peak: float | None = None) -> dict:
    """The figures of ``--peak`` (see the module docstring) as a JSON-ready dict.

    Each timing covers about ``flop_budget`` useful FLOPs (at least 3 steps, at most the
    epoch's steps less the warm-up); the contenders of one M run round-robin.
    """
    sizes = (D_IN, *HIDDEN, N_CLASSES)
    flops = step_flops(sizes, batch_size)
    peak = gemm_peak(backend) if peak is None else peak
    spe = split.size // batch_size
    rows = []
    for M in models:
        steps = int(min(max(3, math.ceil(flop_budget / (M * flops))), max(1, spe - warmup)))
        modes = MODES if M > 1 else MODES[:1]
        runners = {mode: step_runner(make_peak_net(backend, M, mode), split, steps=steps,
                                     warmup=warmup, batch_size=batch_size)
                   for mode in modes}
        runners["layer_adam"] = step_runner(
            make_peak_net(backend, M, "own", norm="layer"), split, steps=steps,
            warmup=warmup, batch_size=batch_size, optimizer=Adam())
        seconds = _race(runners, repeats)
        del runners
        if M == 1:
            seconds["own"] = seconds["shared"]  # one model: one batch order either way
        row = {"models": M, "steps": steps,
               "s_per_step": {mode: seconds[mode] for mode in MODES},
               "share": {mode: M * flops / seconds[mode] / peak for mode in MODES}}
        row["layer_adam_over_recipe"] = seconds["layer_adam"] / seconds["own"]
        rows.append(row)
        print(_row_line(row), flush=True)
    return {"gemm_peak_flops": peak, "step_flops_per_model": flops, "sizes": list(sizes),
            "batch_size": batch_size, "rows": rows}


def header_lines(result: dict) -> list[str]:
    """What the shares are shares of: the peak and the step's FLOPs."""
    return [f"GEMM peak {result['gemm_peak_flops'] / 1e9:.1f} GFLOP/s (float32, best square "
            f"product); useful FLOPs per model and step {result['step_flops_per_model'] / 1e6:.1f}"
            " M (forward + backward without the input's gradient)",
            f"{'M':>5} {'shared batch':>13} {'own batches':>12} {'ms/step shared':>15} "
            f"{'ms/step own':>12} {'LN+Adam/BN+SGD':>17}"]


def _row_line(row: dict) -> str:
    s, t = row["share"], row["s_per_step"]
    return (f"{row['models']:>5} {s['shared']:>12.0%} {s['own']:>12.0%} "
            f"{t['shared'] * 1e3:>15.3g} {t['own'] * 1e3:>12.3g}"
            + f" {row['layer_adam_over_recipe']:>16.2f}x")


def _best(results: list[dict]) -> dict:
    """Per (M, mode) the best share among ``results``; per M the best LN + Adam ratio."""
    best = {}
    for result in results:
        for row in result["peak"]["rows"]:
            for mode, share in row["share"].items():
                key = (row["models"], mode)
                best[key] = max(best.get(key, 0.0), share)
            key = (row["models"], "LN+Adam")
            best[key] = min(best.get(key, math.inf), row["layer_adam_over_recipe"])
    return best


def compare_lines(before: list[dict], after: list[dict]) -> list[str]:
    """Before/after table of the shares of peak of two sets of ``--peak --json`` files
    (``LN+Adam`` rows: layer norm + Adam's time over batch norm + SGD's, own batches)."""
    b, a = _best(before), _best(after)
    lines = [f"share of GEMM peak, best of {len(before)} run(s) before and {len(after)} after",
             f"{'M':>5} {'batches':>8} {'before':>8} {'after':>8} {'after/before':>13}"]
    for key in sorted(k for k in a if k in b):
        fmt = (lambda x: f"{x:.2f}x") if key[1] == "LN+Adam" else (lambda x: f"{x:.0%}")
        lines.append(f"{key[0]:>5} {key[1]:>8} {fmt(b[key]):>8} {fmt(a[key]):>8} "
                     f"{a[key] / b[key]:>12.2f}x")
    return lines


def read_results(paths: str) -> list[dict]:
    """The ``--peak --json`` files named in ``paths`` (comma-separated)."""
    out = []
    for path in paths.split(","):
        try:
            with open(path, encoding="utf-8") as f:
                result = json.load(f)
            result["peak"]["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            raise BenchError(f"{path} is not a file that --peak --json wrote; run "
                             "python -m experiments.bench --peak --json FILE first.") from None
        out.append(result)
    return out


def run_peak(backend, split, args) -> dict:
    """``--peak``: print the header, then each M's shares as it is measured."""
    flops = step_flops((D_IN, *HIDDEN, N_CLASSES), args.batch_size)
    print("measuring the GEMM peak...", flush=True)
    peak = gemm_peak(backend)
    for line in header_lines({"gemm_peak_flops": peak, "step_flops_per_model": flops}):
        print(line, flush=True)
    return measure_peak(backend, split, args.models, batch_size=args.batch_size,
                        repeats=args.repeats, peak=peak)
