"""The summary table of ci/gpu-lease, and its comparison of two suite runs.

``python3 ci/lease_table.py table OUT`` prints one table from what the lease left in OUT:
``parts.tsv`` (one line per part: name, status, seconds, log file) and each part's log
or JSON.  ``python3 ci/lease_table.py compare CPU_OUT CUDA_OUT`` compares the test
accuracies of two ``experiments.run`` outputs and exits 1 if a run differs by more
than ``POINTS``.  Standard library only: it runs before anything is installed, and it
must print a table whatever failed.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

#: The most two devices' test accuracies of one quick run may differ, in points: float32
#: rounding differs between libraries and the quick deep nets amplify it (the loosest of
#: tests/conftest.py's DEPTH_BN_POINTS).
POINTS = 3.0

TITLES = {"install": "install wheels (ci/wheels)", "data": "data",
          "tests-cuda": "tests: core rows on cuda (CuPy)",
          "tests-torch-cuda": "tests: core rows on torch-cuda",
          "quick-cpu": "--quick suite on cpu", "quick-cuda": "--quick suite on cuda",
          "quick-compare": "--quick suite: cuda vs cpu",
          "depth-bn": "depth_bn at full scale on cuda, 3 seeds",
          "bench-cuda": "bench on cuda", "bench-torch-cuda": "bench on torch:cuda",
          "wide-cuda": "wide first layer on cuda (--wide 8,64)"}


def _tail(path: Path, n: int = 1) -> list[str]:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()
                 if ln.strip()]
    except OSError:
        return []
    return lines[-n:]


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------- suite results
def accuracies(out: Path) -> dict:
    """``(study, run) -> mean test accuracy in %`` of an ``experiments.run`` output."""
    data = _json(out / "results.json") or {}
    acc = {}
    for study, entry in data.get("studies", {}).items():
        for key, rec in entry.get("runs", {}).items():
            value = rec.get("test_accuracy") if isinstance(rec, dict) else None
            values = value if isinstance(value, list) else [value]
            values = [v for v in values if isinstance(v, (int, float))]
            if values:
                acc[(study, key)] = 100.0 * sum(values) / len(values)
    return acc


def compare(cpu_out: Path, cuda_out: Path) -> tuple[bool, str]:
    cpu, cuda = accuracies(cpu_out), accuracies(cuda_out)
    common = sorted(set(cpu) & set(cuda))
    if not common:
        return False, f"no runs to compare ({len(cpu)} on cpu, {len(cuda)} on cuda)"
    diffs = {k: abs(cpu[k] - cuda[k]) for k in common}
    worst = max(diffs, key=diffs.get)
    missing = len(set(cpu) ^ set(cuda))
    ok = diffs[worst] <= POINTS and missing == 0
    return ok, (f"{len(common)} runs; max |cuda - cpu| test accuracy {diffs[worst]:.2f} "
                f"points ({'/'.join(worst)}); allowed {POINTS:g}"
                + (f"; {missing} runs on one device only" if missing else ""))


# ----------------------------------------------------------------- per-part results
def _pytest_result(log: Path) -> str:
    for line in reversed(_tail(log, 30)):
        if re.search(r"\d+ (passed|failed|error)", line):
            return line.strip("= ")
    return (_tail(log) or ["no output"])[0][:100]


def _bench_result(out: Path, name: str) -> str:
    data = _json(out / f"{name}.json")
    if not data:
        return (_tail(out / f"{name}.log") or ["no output"])[0][:100]
    single = data.get("single", {})
    parts = [f"one model {_s(single.get('ours_s_per_epoch'))} s/epoch "
             f"(matmul-only {_s(single.get('matmul_s_per_epoch'))}, "
             f"torch eager {_s(single.get('torch_s_per_epoch'))})"]
    sync = data.get("sync_check") or {}
    if sync:
        parts.append(f"host-sync check {'PASS' if sync.get('passed') else 'FAIL'} "
                     f"({sync.get('host_conversions')} conversions)")
    calls = data.get("calls_per_step") or {}
    if calls:
        parts.append("calls/step " + ", ".join(f"{net} {c.get('1')}" for net, c in calls.items()))
    return "; ".join(parts)


def _depth_result(out: Path) -> str:
    acc = accuracies(out / "depth-bn")
    if not acc:
        return (_tail(out / "depth-bn.log") or ["no output"])[0][:100]
    return ", ".join(f"{run} {a:.1f} %" for (_, run), a in sorted(acc.items()))


def _wide_result(out: Path) -> str:
    data = _json(out / "wide-cuda.json")
    if not data:
        return (_tail(out / "wide-cuda.log") or ["no output"])[0][:100]
    return ", ".join(f"k={r['k']}: wide/broadcast {r['wide_over_broadcast']:.2f}x, "
                     f"wide/stacked {r['wide_over_stacked']:.2f}x" for r in data["wide"])


def result_of(out: Path, name: str) -> str:
    log = out / f"{name}.log"
    if name == "wide-cuda":
        return _wide_result(out)
    if name.startswith("tests-"):
        return _pytest_result(log)
    if name.startswith("bench-"):
        return _bench_result(out, name)
    if name == "depth-bn":
        return _depth_result(out)
    if name == "quick-compare" or name.startswith("quick-"):
        acc = accuracies(out / name) if name != "quick-compare" else None
        return (f"{len(acc)} runs with a test accuracy" if acc
                else (_tail(log) or ["no output"])[0][:120])
    return (_tail(log) or ["no output"])[0][:120]


def _s(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def sweep_rows(out: Path) -> list[str]:
    rows = []
    for name, flag in (("bench-cuda", "cuda"), ("bench-torch-cuda", "torch:cuda")):
        data = _json(out / f"{name}.json") or {}
        steps = (data.get("config", {}).get("n_samples", 0)
                 // max(data.get("config", {}).get("batch_size", 1), 1))
        for row in data.get("sweep", []):
            s = row.get("s_per_epoch")
            peak = row.get("peak_bytes")
            rows.append(f"{flag:<12} {row['models']:>5} {_s(s):>9} "
                        f"{(row['models'] * steps / s) if s else 0:>17.4g} "
                        f"{'n/a' if peak is None else f'{peak / 2**20:.0f}':>9} "
                        f"{row.get('calls_per_step', 'n/a')!s:>10}")
    return rows


def table(out: Path) -> str:
    info = (_tail(out / "machine.txt", 5) or ["machine: unknown"])
    lines = ["ci/gpu-lease summary", *info, "",
             f"{'part':<42} {'status':<8} {'s':>5}  result"]
    total = 0
    for line in _tail(out / "parts.tsv", 100):
        name, status, secs, *_ = (line.split("\t") + ["", "", ""])[:3]
        total += int(secs) if secs.isdigit() else 0
        lines.append(f"{TITLES.get(name, name):<42} {status:<8} {secs:>5}  "
                     f"{result_of(out, name)}")
    lines.append(f"{'sum of the parts (some run side by side)':<42} {'':<8} {total:>5}")
    sweep = sweep_rows(out)
    config = (_json(out / "bench-cuda.json") or _json(out / "bench-torch-cuda.json") or {})
    config = config.get("config", {})
    if sweep:
        lines += ["", f"lockstep sweep (the bench: an epoch of {config.get('n_samples')} "
                      f"{config.get('data')} images at batch {config.get('batch_size')}; "
                      "calls/step of the array-API step, counted on the CPU):",
                  f"{'device':<12} {'M':>5} {'s/epoch':>9} {'models x steps/s':>17} "
                  f"{'peak MiB':>9} {'calls/step':>10}", *sweep]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "table":
        print(table(Path(argv[1])))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        ok, line = compare(Path(argv[1]), Path(argv[2]))
        print(("same numbers: " if ok else "DIFFERENT: ") + line)
        return 0 if ok else 1
    print("usage: lease_table.py table OUT | compare CPU_OUT CUDA_OUT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
