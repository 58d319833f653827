"""Training-speed benchmark: our step against a matmul-only floor and PyTorch eager.

Run ``python -m experiments.bench --device cpu`` (or ``cuda``, ``torch``, ``torch:cuda``,
``torch:mps``).  Every figure comes from the same run:

* **ours** -- seconds per epoch of the real :func:`xpnet.training.loop.train` loop (batch
  gathers, forward, backward, on-device divergence tracking, the SGD update) for a
  3072-50-50-10 batch-norm network in float32 at batch 100;
* **generic step** -- where the backend carries a specialised training step (the
  CPU's :mod:`xpnet.backend.numpy_step`), the same loop with the array-API reference step
  :func:`xpnet.step.backprop.loss_and_data_gradients` instead: the ratio says what the
  specialised step buys;
* **layer norm + Adam** -- the same loop for the same net with layer norm instead of
  batch norm and the Adam update instead of SGD (the recipe's options, through the
  backend's own step), against the same matmul-only floor and against today's recipe;
* **matmul-only** -- the same matrix products with the same shapes and dtype on the
  same backend, batch gathers included, nothing else: the floor any implementation
  of this step pays;
* **torch eager** -- the same net, loss and SGD in PyTorch eager mode (autograd) on the
  same device, when ``torch`` is importable; on a torch device, on the very tensors
  ours trains on, so the ratio compares our array-API step with PyTorch's own on one
  library;
* **sweep** (``--sweep``, on by default on cuda) -- M models in lockstep on the model
  axis: model-epochs per second, the speed-up over training the M models one after
  another, and the ratio to a matmul-only step with the model axis;
* **calls per step** -- array-library calls (kernel launches on a GPU) per training step
  of the generic step, counted on the CPU for the 3-layer and 9-layer nets at M = 1 and
  64, and per M in the sweep: :mod:`experiments.bench.calls`;
* **wide first layer** (``--wide 8,64``) -- instead of all of the above, the first
  layer's forward product and weight gradient for k models sharing a batch as one wide
  product against the batched form, on this device: :mod:`experiments.bench.wide`;
* **peak GPU memory** held by CuPy's pool (and PyTorch's allocator), "n/a" off CUDA;
* **host-sync check** (cuda, torch devices) -- proof that the training step never waits
  for the GPU, so it cannot contain a device-to-host copy: see
  :mod:`experiments.bench.syncs`.

* **halving** (``--halving``) -- instead of all of the above, a 27-lambda grid trained in
  full and with successive halving in one process: wall-time and model-steps ratios and
  the best model of each (:mod:`experiments.bench.halving`).
* **scaling** (``--scaling 1,2``) -- instead of all of the above, the wall time of a
  slice of the real suite per number of Dask workers: :mod:`experiments.bench.scaling`.
* **share of peak** (``--peak``, ``--compare``) -- instead: :mod:`experiments.bench.peak`.

Timings are the best of ``--repeats`` runs of ``--epochs`` epochs each, after a
warm-up, taken round-robin across the contenders (:mod:`experiments.bench.runners`).
Thread counts come from the environment: the ``experiments`` package defaults
``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` to 1 before NumPy
loads, which PyTorch's intra-op pool follows too, so both sides get the same count;
set them (say to 2) to bench multi-threaded BLAS.  The data are random standard-normal
images of the right shape (so the bench runs anywhere) unless ``--data-dir`` points at
CIFAR-10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from experiments.bench.calls import NETS, calls_line, calls_per_step
from experiments.bench.machine import machine_info, torch_available
from experiments.bench.peak import compare_lines, read_results, run_peak
from experiments.bench.runners import (
    D_IN,
    DTYPE,
    ETA,
    HIDDEN,
    LAM,
    N_CLASSES,
    generic_backend,
    load_data,
    make_net,
    matmul_runner,
    ours_runner,
    own_peak_bytes,
    pool_reset,
    race,
    step_name,
    torch_runner,
    torch_tensors,
)
from experiments.bench.syncs import check_host_syncs, sync_line
from experiments.suite.args import Parser, positive_int, positive_int_list
from xpnet.backend.devices import USER_DEVICES, get_backend
from xpnet.base.atomic import write_text_atomic
from xpnet.errors import OutputError, XpnetError
from xpnet.training import DeviceSplit
from xpnet.training.optim import Adam


# ----------------------------------------------------------------------------- options
def parse_args(argv=None):
    p = Parser(prog="python -m experiments.bench",
               description="Time the xpnet training step against a matmul-only step and "
                           "PyTorch eager.")
    p.add_argument("--device", choices=USER_DEVICES, default="cpu",
                   help="cpu (NumPy), cuda (CuPy), torch (PyTorch on the CPU), torch:cuda, "
                        "torch:mps")
    p.add_argument("--epochs", type=positive_int, default=1,
                   help="epochs per timed repetition (default 1)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="timed repetitions; the best is reported (default 3; 1 with "
                        "--scaling, whose repetitions take minutes)")
    p.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                   help="lockstep sweep over --models (default: on for GPUs, off for CPUs)")
    p.add_argument("--models", type=positive_int_list, default=[1, 8, 64, 256],
                   help="model counts M for the sweep (default 1,8,64,256)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--data-dir", default=None,
                   help="use CIFAR-10 from this folder instead of random images")
    p.add_argument("--download", action="store_true",
                   help="with --data-dir: download CIFAR-10 there if it is missing")
    p.add_argument("--n-samples", type=positive_int, default=45000,
                   help="training images (default 45000)")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of the random data")
    p.add_argument("--scaling", type=positive_int_list, default=None, metavar="N,M",
                   help="instead: run a slice of the real study suite (--only "
                        "init_sensitivity,lr_bn --seeds 1) with --workers N, then M, ... and "
                        "print the wall-time ratios; needs --data-dir or $XPNET_DATA")
    p.add_argument("--halving", action="store_true",
                   help="instead: train a lambda grid in full and with successive halving "
                        "(eta 3) in one run and print the time and model-steps ratios")
    p.add_argument("--halving-lambdas", type=positive_int, default=27,
                   help="with --halving: lambdas in the grid (default 27)")
    p.add_argument("--halving-seeds", type=positive_int, default=1,
                   help="with --halving: seeds per lambda (default 1)")
    p.add_argument("--halving-n-s", type=positive_int, default=200,
                   help="with --halving: steps per half-cycle, 2 cycles (default 200)")
    p.add_argument("--halving-val", type=positive_int, default=2000,
                   help="with --halving: validation images (default 2000)")
    p.add_argument("--wide", type=positive_int_list, default=None, metavar="K,K",
                   help="instead: time the first layer's forward product and weight gradient "
                        "for K models sharing a batch as one wide product against the "
                        "batched form (e.g. 8,64)")
    p.add_argument("--peak", action="store_true", help="instead: each step's share of the "
                   "GEMM peak measured in the same run, for --models (default 1,8,64,256)")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), default=None,
                   help="instead: the shares of --peak --json files before/after (F1,F2 F3)")
    p.add_argument("--check-syncs", action="store_true",
                   help="run only the host-sync check of the training step (cuda, torch "
                        "devices)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    if args.sweep is None:
        args.sweep = args.device in ("cuda", "torch:cuda", "torch:mps")
    if args.repeats is None:
        args.repeats = 1 if args.scaling else 3
    if args.batch_size > args.n_samples:
        p.error(f"--batch-size {args.batch_size} is larger than --n-samples {args.n_samples}")
    if args.download and args.data_dir is None:
        p.error("--download needs --data-dir (without it the bench uses random images)")
    if args.scaling and not (args.data_dir or os.environ.get("XPNET_DATA")):
        p.error("--scaling runs the real suite: pass --data-dir with CIFAR-10 (or set "
                "XPNET_DATA)")
    if args.check_syncs and args.device == "cpu":
        p.error("--check-syncs needs --device cuda or a torch device (NumPy arrays live on "
                "the host: nothing can wait for a device)")
    return args


# ------------------------------------------------------------------------------ output
def _fmt_s(x):
    return "n/a" if x is None else (f"{x:.3g}" if x < 10 else f"{x:.1f}")


def _fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def _fmt_bytes(n):
    return "n/a" if n is None else f"{n / 2**20:.0f} MiB"


def _check_json_folder(path):
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise OutputError(f"The folder of --json {path} does not exist; create it or pass "
                          "another path.")


def write_json(path, data):
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, rename)."""
    _check_json_folder(path)
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


# -------------------------------------------------------------------------------- main
def _sync_check(backend, split, batch_size):
    """Warm a fresh one-model net up for an epoch, run the host-sync check, print it."""
    net = make_net(backend, 1)
    ours_runner(net, split, epochs=1, batch_size=batch_size)()
    res = check_host_syncs(net, split, batch_size=batch_size)
    print(sync_line(res), flush=True)
    return res


def run(args):
    if args.scaling:
        from experiments.bench.scaling import run_scaling

        result = run_scaling(args.scaling, args.data_dir or os.environ["XPNET_DATA"],
                             repeats=args.repeats)
        if args.json:
            write_json(args.json, result)
        return 0 if all(row["same_numbers"] for row in result["rows"]) else 1
    if args.compare:
        print("\n".join(compare_lines(*(read_results(p) for p in args.compare))))
        return 0
    if args.json is not None:
        _check_json_folder(args.json)
    if args.halving:
        from experiments.bench.halving import run_halving

        result = run_halving(args)
        if args.json:
            write_json(args.json, result)
        return 0
    backend = get_backend(args.device)
    if args.wide:
        from experiments.bench.wide import measure_wide, wide_lines

        rows = measure_wide(backend, args.wide, repeats=max(args.repeats, 5))
        print(f"device {backend.flag}\n" + "\n".join(wide_lines(rows)), flush=True)
        if args.json:
            write_json(args.json, {"device": backend.flag, "wide": rows})
        return 0
    use_torch = not args.no_torch and not args.check_syncs and torch_available()
    info = machine_info(backend, use_torch)
    X_host, y_host, source = load_data(args)
    B = args.batch_size
    steps_per_epoch = args.n_samples // B
    library = f"CuPy {info['cupy']}" if "cupy" in info else f"PyTorch {info.get('torch')}"
    print(f"device {backend.flag}" + (f" ({info['gpu']}, {library})" if "gpu" in info else "")
          + f" | {platform.machine()}, {info['cpu_count']} CPUs ({info['cpus_usable']} usable)"
          + f" | NumPy {info['numpy']} ({info['blas']}"
          + (f", BLAS threads {info['blas_threads']}" if "blas_threads" in info else "")
          + (f", {info['thread_env']}" if info["thread_env"] else "") + ")"
          + (f" | PyTorch {info['torch']} (threads: {info['torch_threads']})"
             if "torch" in info else " | PyTorch: not used"), flush=True)
    print(f"net {D_IN}-{'-'.join(map(str, HIDDEN))}-{N_CLASSES} with batch norm, {DTYPE}, "
          f"batch {B}, {args.n_samples} {source} images ({steps_per_epoch} steps/epoch); "
          f"best of {args.repeats} x {args.epochs} epoch(s) after a warm-up", flush=True)

    split = DeviceSplit.from_host(backend, X_host, y_host, N_CLASSES, backend.dtype(DTYPE))
    result = {"device": backend.flag, "info": info,
              "config": {"sizes": [D_IN, *HIDDEN, N_CLASSES], "batch_norm": True,
                         "dtype": DTYPE, "batch_size": B, "n_samples": args.n_samples,
                         "data": source, "epochs": args.epochs, "repeats": args.repeats,
                         "eta": ETA, "lam": LAM}}

    if args.peak:
        result["peak"] = run_peak(backend, split, args)
        if args.json:
            write_json(args.json, result)
        return 0
    if args.check_syncs:
        res = _sync_check(backend, split, B)
        result["sync_check"] = res
        if args.json:
            write_json(args.json, result)
        return 0 if res["passed"] else 1

    # (a) one model
    def ours(back, M=1):
        return lambda: ours_runner(make_net(back, M), split, epochs=args.epochs, batch_size=B)

    builders = {"ours": ours(backend),
                "matmul": lambda: matmul_runner(split, backend, n_models=1,
                                                epochs=args.epochs, batch_size=B)}
    generic = generic_backend(backend)
    if generic is not None:  # the same loop with the array-API reference step
        builders["generic"] = ours(generic)
    runners = {name: build() for name, build in builders.items()}
    # The options' line: layer norm and Adam through the same fast step, in the same race.
    runners["layer_adam"] = ours_runner(make_net(backend, 1, norm="layer"), split,
                                        epochs=args.epochs, batch_size=B, optimizer=Adam())
    torch_peak_fn = None

    def torch_eager():
        X, y = torch_tensors(backend, split, X_host, y_host)
        return torch_runner(X, y, epochs=args.epochs, batch_size=B)

    if use_torch:
        runners["torch"], torch_peak_fn = torch_eager()
    times = race(runners, args.repeats, args.epochs)
    t_ours, t_mm, t_torch = times["ours"], times["matmul"], times.get("torch")
    t_generic = times.get("generic")
    del runners
    # Each contender's own peak, one at a time outside the race (the data excluded).
    peaks = {name: own_peak_bytes(backend, build) for name, build in builders.items()}
    if backend.name == "torch":  # one allocator for both: measured the same way
        peaks["torch"] = own_peak_bytes(backend, lambda: torch_eager()[0]) if use_torch \
            else None
    else:
        peaks["torch"] = torch_peak_fn() if torch_peak_fn else None
    single = {"ours_s_per_epoch": t_ours, "matmul_s_per_epoch": t_mm,
              "ours_over_matmul": t_ours / t_mm,
              "step": step_name(backend), "generic_s_per_epoch": t_generic,
              "step_over_generic": None if t_generic is None else t_ours / t_generic,
              "torch_s_per_epoch": t_torch,
              "ours_over_torch": None if t_torch is None else t_ours / t_torch,
              "peak_bytes": peaks}
    result["single"] = single
    print(f"ours {_fmt_s(t_ours)} s/epoch | matmul-only {_fmt_s(t_mm)} s/epoch | "
          f"ours/matmul {_fmt_ratio(single['ours_over_matmul'])} | "
          + (f"generic step {_fmt_s(t_generic)} s/epoch | {single['step']}/generic "
             f"{_fmt_ratio(single['step_over_generic'])} | " if t_generic is not None else "")
          + (f"torch eager {_fmt_s(t_torch)} s/epoch | "
             f"ours/torch {_fmt_ratio(single['ours_over_torch'])}"
             if t_torch is not None else "torch eager n/a"), flush=True)
    t_layer_adam = times["layer_adam"]
    result["layer_adam"] = {"ours_s_per_epoch": t_layer_adam,
                            "ours_over_matmul": t_layer_adam / t_mm,
                            "over_recipe": t_layer_adam / t_ours}
    print(f"layer norm + Adam: ours {_fmt_s(t_layer_adam)} s/epoch | ours/matmul "
          f"{_fmt_ratio(t_layer_adam / t_mm)} | vs batch norm + SGD "
          f"{_fmt_ratio(t_layer_adam / t_ours)}", flush=True)

    counts = [calls_per_step(net, M, batch_size=B) for net in NETS for M in (1, 64)]
    result["calls_per_step"] = {net: {str(c.n_models): c.total for c in counts if c.net == net}
                                for net in NETS}
    print(calls_line(counts), flush=True)

    # (b) lockstep sweep
    sweep = []
    if args.sweep:
        print(f"lockstep sweep (M models on the model axis, one seed and batch order each):\n"
              f"{'M':>5} {'s/epoch':>9} {'model-epochs/s':>15} {'vs one-after-another':>21} "
              f"{'matmul-only s/epoch':>20} {'ours/matmul':>12} {'GPU peak (ours)':>16} "
              f"{'calls/step':>11}",
              flush=True)
        for M in args.models:
            pool_reset(backend)
            runners = {"ours": ours(backend, M)(),
                       "matmul": matmul_runner(split, backend, n_models=M,
                                               epochs=args.epochs, batch_size=B)}
            times = race(runners, args.repeats, args.epochs)
            t_m, t_mm_m = times["ours"], times["matmul"]
            del runners
            peak = own_peak_bytes(backend, ours(backend, M))
            calls = calls_per_step("3-layer", M, batch_size=B).total
            row = {"models": M, "s_per_epoch": t_m, "model_epochs_per_s": M / t_m,
                   "speedup_vs_sequential": M * t_ours / t_m, "matmul_s_per_epoch": t_mm_m,
                   "ours_over_matmul": t_m / t_mm_m, "peak_bytes": peak,
                   "calls_per_step": calls}
            sweep.append(row)
            print(f"{M:>5} {_fmt_s(t_m):>9} {row['model_epochs_per_s']:>15.3g} "
                  f"{_fmt_ratio(row['speedup_vs_sequential']):>21} {_fmt_s(t_mm_m):>20} "
                  f"{_fmt_ratio(row['ours_over_matmul']):>12} {_fmt_bytes(peak):>16} "
                  f"{'varies' if calls is None else calls:>11}",
                  flush=True)
        result["sweep"] = sweep

    # (c) peak GPU memory per contender, and the host-sync check
    if backend.name == "cuda":
        import cupy

        free, total = cupy.cuda.runtime.memGetInfo()
        result["gpu_used_bytes_at_end"] = int(total - free)
    if backend.name == "cuda" or backend.flag == "torch:cuda":
        names = {"ours": "ours", "matmul": "matmul-only", "generic": "generic step",
                 "torch": "torch eager"}
        print("peak GPU memory in use per contender, one model, data excluded: "
              + " | ".join(f"{names[k]} {_fmt_bytes(v)}" for k, v in peaks.items()
                           if v is not None or k == "torch"), flush=True)
        pool_reset(backend)
    else:
        print(f"peak GPU memory: n/a ({backend.flag})", flush=True)
    if backend.name in ("cuda", "torch"):
        result["sync_check"] = _sync_check(backend, split, B)
    else:
        print("host-sync check: needs --device cuda or a torch device", flush=True)
        result["sync_check"] = None

    if args.json:
        write_json(args.json, result)
        print(f"figures written to {args.json}", flush=True)
    if result["sync_check"] is not None and not result["sync_check"]["passed"]:
        print("bench: the training step waited for the GPU (see the host-sync check "
              "above); find the host copy in xpnet.training.loop.", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    try:
        return run(parse_args(argv))
    except XpnetError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
