"""Scaling benchmark: the same slice of the real study suite on 1, 2, ... Dask workers.

``python -m experiments.bench --scaling 1,2 --data-dir DIR`` runs
``python -m experiments.run --only init_sensitivity,lr_bn --seeds 1`` on the CIFAR-10 in
DIR once per worker count (``--workers N``, each into a fresh output folder, in the same
invocation, one after the other) and prints one line per count and, for each count after
the first, a line ``scaling N vs M workers: R.RRx`` with the ratio of wall times (below
1 is faster); with ``--repeats R`` the counts take turns R times and each count's best
time counts.  The slice is about 3 CPU-minutes of training on the full data: enough
that cluster start-up and data loading in each worker are a small part of it.  It
checks that every run's test accuracies agree across the counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDIES = "init_sensitivity,lr_bn"


def suite_command(workers: int, data_dir: str, out: Path, studies: str, seeds: int,
                  quick: bool = False) -> list:
    return [sys.executable, "-m", "experiments.run", "--only", studies, "--seeds", str(seeds),
            "--data-dir", str(data_dir), "--workers", str(workers), "--out", str(out),
            "--no-progress", *(["--quick"] if quick else [])]


def accuracies(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return {(s, k): r.get("test_accuracy") for s, e in results["studies"].items()
            for k, r in e["runs"].items()}


def run_scaling(counts: list[int], data_dir: str, *, studies: str = STUDIES,
                seeds: int = 1, repeats: int = 1, quick: bool = False) -> dict:
    """Wall times of the suite slice per worker count, and their ratios to the first.

    With ``repeats`` > 1 the counts take turns (1, 2, 1, 2, ...), so a slow spell of a
    shared machine hits every count alike, and each count's best time is compared.
    """
    from experiments.bench.runners import BenchError

    walls: dict[int, list[float]] = {n: [] for n in counts}
    same = {n: True for n in counts}
    reference = None
    with tempfile.TemporaryDirectory(prefix="xpnet-scaling-") as tmp:
        for round_ in range(repeats):
            for n in counts:
                out = Path(tmp) / f"workers-{n}-{round_}"
                command = suite_command(n, data_dir, out, studies, seeds, quick)
                start = time.perf_counter()
                proc = subprocess.run(command, capture_output=True, text=True,
                                      env={k: v for k, v in os.environ.items()
                                           if k not in ("XPNET_WORKERS", "XPNET_SCHEDULER")})
                wall = time.perf_counter() - start
                if proc.returncode != 0:
                    last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                    raise BenchError(f"The suite failed with --workers {n} ({last}); run "
                                     f"{' '.join(command)} to see why.")
                acc = accuracies(out)
                reference = reference or acc
                same[n] = same[n] and acc == reference
                walls[n].append(wall)
                shutil.rmtree(out, ignore_errors=True)
                print(f"workers {n}: {wall:.1f} s wall for --only {studies} --seeds {seeds} "
                      f"({len(acc)} runs; test accuracies "
                      f"{'identical to the first' if acc == reference else 'DIFFER from the first'}"
                      f" invocation)", flush=True)
    rows = [{"workers": n, "wall_s": min(walls[n]), "walls_s": walls[n],
             "same_numbers": same[n]} for n in counts]
    first = rows[0]
    best = "best of " + str(repeats) + " " if repeats > 1 else ""
    for row in rows[1:]:
        row["ratio"] = row["wall_s"] / first["wall_s"]
        print(f"scaling {row['workers']} vs {first['workers']} workers: {row['ratio']:.2f}x "
              f"({best}{row['wall_s']:.1f} s / {first['wall_s']:.1f} s)", flush=True)
    return {"studies": studies, "seeds": seeds, "repeats": repeats, "rows": rows}
