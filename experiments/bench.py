"""Training-speed benchmark: our step against a matmul-only floor and PyTorch eager.

Run ``python -m experiments.bench --device cpu`` or ``--device cuda``.  Every figure
comes from the same run:

* **ours** -- seconds per epoch of the real :func:`xpnet.train.train` loop (batch
  gathers, forward, backward, on-device divergence tracking, the SGD update) for a
  3072-50-50-10 batch-norm network in float32 at batch 100;
* **matmul-only** -- the same matrix products with the same shapes and dtype on the
  same backend, batch gathers included, nothing else: the floor any implementation
  of this step pays;
* **torch eager** -- the same net, loss and SGD in PyTorch eager mode on the same
  device, when ``torch`` is importable;
* **sweep** (``--sweep``, on by default on cuda) -- M models in lockstep on the model
  axis: model-epochs per second, the speed-up over training the M models one after
  another, and the ratio to a matmul-only step with the model axis;
* **peak GPU memory** held by CuPy's pool (and PyTorch's allocator), "n/a" on cpu;
* **host-sync check** (cuda) -- proof that the training step never waits for the GPU,
  so it cannot contain a device-to-host copy: see :func:`check_host_syncs`.

Timings are the best of ``--repeats`` runs of ``--epochs`` epochs each, after a
warm-up, taken round-robin across the contenders.  Thread counts come from the
environment: the ``experiments`` package defaults ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` to 1 before NumPy loads, which PyTorch's
intra-op pool follows too, so both sides get the same count; set them (say to 2)
to bench multi-threaded BLAS.  The data are random standard-normal images of the right shape (so the bench
runs anywhere) unless ``--data-dir`` points at CIFAR-10.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import time

import numpy as np

from xpnet.atomic import write_text_atomic
from xpnet.backend import get_backend
from xpnet.errors import OutputError, XpnetError
from xpnet.network import Network, NetworkConfig
from xpnet.schedules import ConstantLR
from xpnet.train import DeviceSplit, batch_orders, gather, train

D_IN, HIDDEN, N_CLASSES = 3072, (50, 50), 10
ETA, LAM = 0.01, 0.005
DTYPE = "float32"

# The module, not the function: ``xpnet/__init__`` exports ``train`` the function, which
# shadows the submodule attribute, so ``import xpnet.train as m`` gives the function.
train_module = importlib.import_module("xpnet.train")


class BenchError(XpnetError):
    """A bad combination of bench options."""


# ----------------------------------------------------------------------------- options
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one sentence and exit 2, not a usage dump
        self.exit(2, f"bench: {message}; see python -m experiments.bench --help.\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _model_counts(text):
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected a comma-separated list such as 1,8,64,256")
    return [_positive_int(p) for p in parts]


def parse_args(argv=None):
    p = _Parser(prog="python -m experiments.bench",
                description="Time the xpnet training step against a matmul-only step and "
                            "PyTorch eager.")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--epochs", type=_positive_int, default=1,
                   help="epochs per timed repetition (default 1)")
    p.add_argument("--repeats", type=_positive_int, default=3,
                   help="timed repetitions; the best is reported (default 3)")
    p.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                   help="lockstep sweep over --models (default: on for cuda, off for cpu)")
    p.add_argument("--models", type=_model_counts, default=[1, 8, 64, 256],
                   help="model counts M for the sweep (default 1,8,64,256)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--data-dir", default=None,
                   help="use CIFAR-10 from this folder instead of random images")
    p.add_argument("--download", action="store_true",
                   help="with --data-dir: download CIFAR-10 there if it is missing")
    p.add_argument("--n-samples", type=_positive_int, default=45000,
                   help="training images (default 45000)")
    p.add_argument("--batch-size", type=_positive_int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of the random data")
    p.add_argument("--check-syncs", action="store_true",
                   help="run only the host-sync check of the training step (cuda)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the figures to PATH as JSON")
    args = p.parse_args(argv)
    if args.sweep is None:
        args.sweep = args.device == "cuda"
    if args.batch_size > args.n_samples:
        p.error(f"--batch-size {args.batch_size} is larger than --n-samples {args.n_samples}")
    if args.download and args.data_dir is None:
        p.error("--download needs --data-dir (without it the bench uses random images)")
    if args.check_syncs and args.device != "cuda":
        p.error("--check-syncs needs --device cuda (on the cpu nothing can wait for a device)")
    return args


# -------------------------------------------------------------------------------- info
def _machine_info(backend, use_torch):
    info = {"device": backend.name, "python": platform.python_version(),
            "numpy": np.__version__, "cpu_count": os.cpu_count()}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["cpus_usable"] = os.cpu_count()
    try:
        info["blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:
        info["blas"] = "unknown"
    info["thread_env"] = {k: os.environ[k] for k in
                          ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                          if k in os.environ}
    try:
        from threadpoolctl import threadpool_info

        info["blas_threads"] = sorted({int(pool["num_threads"]) for pool in threadpool_info()
                                       if pool.get("user_api") == "blas"})
    except Exception:
        pass
    if backend.name == "cuda":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(backend.device.id)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["cupy"] = cupy.__version__
    if use_torch:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def _torch_available():
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


# -------------------------------------------------------------------------------- data
def load_data(args):
    """Host training images ``(n, 3072)`` float32 and labels ``(n,)`` int64, and a label."""
    if args.data_dir is not None:
        from xpnet.data import load_cifar10

        ds = load_cifar10(args.data_dir, download=args.download, progress=False)
        X, y = ds.X_train[:args.n_samples], ds.y_train[:args.n_samples]
        if X.shape[0] < args.n_samples:
            raise BenchError(f"{args.data_dir} has only {X.shape[0]} training images; "
                             f"pass --n-samples {X.shape[0]} or fewer.")
        return np.ascontiguousarray(X, dtype=np.float32), np.asarray(y, np.int64), "CIFAR-10"
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.n_samples, D_IN), dtype=np.float32)
    y = rng.integers(0, N_CLASSES, args.n_samples)
    return X, y, "random"


# ----------------------------------------------------------------------------- timing
# Each contender is a warmed-up runner: a function that runs ``epochs`` epochs and
# returns once the device is done.  :func:`race` times the runners round-robin, so a
# change in machine load (a shared CPU) hits every contender alike, and keeps the best.

def race(runners: dict, repeats: int, epochs: int) -> dict:
    """Best seconds per epoch of each runner over ``repeats`` round-robin repetitions."""
    best = {name: math.inf for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: t / epochs for name, t in best.items()}


def make_net(backend, n_models):
    config = NetworkConfig(d_in=D_IN, hidden=HIDDEN, n_classes=N_CLASSES, batch_norm=True)
    return Network.create(config, seeds=list(range(n_models)), lam=LAM, device=backend,
                          dtype=DTYPE)


def ours_runner(net, split, backend, *, epochs, batch_size, warmup_steps=10):
    """Runner for :func:`xpnet.train.train` itself (records only at start and end)."""
    steps_per_epoch = split.size // batch_size

    def run(steps):
        schedule = ConstantLR(eta=ETA, steps=steps, cycle_length=steps)
        train(net, schedule, split, None, batch_size=batch_size, progress=False,
              evals_per_cycle=1, train_eval_size=100)
        backend.synchronize()

    backend.synchronize()
    run(min(warmup_steps, steps_per_epoch))
    return lambda: run(epochs * steps_per_epoch)


def matmul_runner(split, backend, *, n_models, epochs, batch_size, warmup_steps=10):
    """Runner for the step's matrix products alone, batch gathers included.

    Forward ``X@W1, H1@W2, H2@W3``; backward ``dW3 = H2^T@G3, G2 = G3@W3^T,
    dW2 = H1^T@G2, G1 = G2@W2^T, dW1 = X^T@G1`` (no input gradient for layer 1), with
    the model axis for M > 1 (each model gathers its own batch, as in lockstep
    training with one seed per model).  For M = 1 the weights are plain 2-D matrices.
    """
    xp = backend.xp
    rng = np.random.default_rng(1)
    sizes = (D_IN, *HIDDEN, N_CLASSES)
    Ws = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        shape = (d_in, d_out) if n_models == 1 else (n_models, d_in, d_out)
        Ws.append(backend.asarray(rng.standard_normal(shape) * math.sqrt(2.0 / d_in),
                                  dtype=DTYPE))
    W1, W2, W3 = Ws
    T = xp.linalg.matrix_transpose
    N = split.size
    steps_per_epoch = N // batch_size
    seeds = list(range(n_models))
    sink = []

    def steps(n_steps, epoch):
        order = backend.asarray(batch_orders(seeds, N, epoch))
        for j in range(n_steps):
            idx = order[..., j * batch_size:(j + 1) * batch_size]
            Xb = gather(xp, split.X, idx, n_models)
            Yb = gather(xp, split.Y, idx, n_models)
            H1 = Xb @ W1
            H2 = H1 @ W2
            G3 = H2 @ W3  # the scores stand in for their gradient
            dW3 = T(H2) @ G3
            G2 = G3 @ T(W3)
            dW2 = T(H1) @ G2
            G1 = G2 @ T(W2)
            dW1 = T(Xb) @ G1
        sink[:] = [dW1, dW2, dW3, Yb]

    def run():
        for e in range(epochs):
            steps(steps_per_epoch, e)
        backend.synchronize()

    backend.synchronize()
    steps(min(warmup_steps, steps_per_epoch), 0)
    backend.synchronize()
    return run


def torch_runner(X_host, y_host, device, *, epochs, batch_size, warmup_steps=10):
    """Runner for the same net in PyTorch eager, data resident on the device.

    Linear(3072, 50, bias=False), BatchNorm1d, ReLU, Linear(50, 50, bias=False),
    BatchNorm1d, ReLU, Linear(50, 10); CrossEntropyLoss; SGD(lr=0.01) with weight decay
    ``2 * lambda`` on the Linear weights only; per-epoch ``randperm`` on the device and
    ``index_select`` batches.  Returns the runner and a function giving PyTorch's peak
    reserved GPU memory (None on the cpu).
    """
    import torch
    from torch import nn

    dev = torch.device("cuda" if device == "cuda" else "cpu")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(D_IN, HIDDEN[0], bias=False), nn.BatchNorm1d(HIDDEN[0], momentum=0.1),
        nn.ReLU(),
        nn.Linear(HIDDEN[0], HIDDEN[1], bias=False), nn.BatchNorm1d(HIDDEN[1], momentum=0.1),
        nn.ReLU(),
        nn.Linear(HIDDEN[1], N_CLASSES),
    ).to(dev)
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    others = [p for p in model.parameters() if all(p is not w for w in weights)]
    opt = torch.optim.SGD([{"params": weights, "weight_decay": 2 * LAM},
                           {"params": others, "weight_decay": 0.0}], lr=ETA)
    loss_fn = nn.CrossEntropyLoss()
    X = torch.from_numpy(X_host).to(dev)
    y = torch.from_numpy(y_host).to(dev)
    N = X.shape[0]
    steps_per_epoch = N // batch_size

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def steps(n_steps):
        perm = torch.randperm(N, device=dev)
        for j in range(n_steps):
            idx = perm[j * batch_size:(j + 1) * batch_size]
            xb, yb = X.index_select(0, idx), y.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()

    def run():
        for _ in range(epochs):
            steps(steps_per_epoch)
        sync()

    model.train()
    steps(min(warmup_steps, steps_per_epoch))
    sync()

    def peak():
        return int(torch.cuda.max_memory_reserved()) if dev.type == "cuda" else None

    return run, peak


# ------------------------------------------------------------------------ GPU memory
def _pool_reset(backend):
    if backend.name == "cuda":
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()


def _pool_bytes(backend):
    """Bytes CuPy's pool holds now: the high-water mark since the last reset."""
    if backend.name != "cuda":
        return None
    import cupy

    return int(cupy.get_default_memory_pool().total_bytes())


# -------------------------------------------------------------------- host-sync check
_SPIN_SOURCE = r"""
extern "C" __global__ void xpnet_bench_spin(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}
"""


def _spinner(backend):
    """A function that queues a kernel keeping the GPU busy for ``seconds`` (cuda only)."""
    import cupy

    kernel = cupy.RawKernel(_SPIN_SOURCE, "xpnet_bench_spin")

    def spin(seconds):
        kernel((1,), (1,), (np.uint64(int(seconds * 1e9)),))

    spin(0.0)  # compile and load now, not inside the checked window
    backend.synchronize()
    return spin


def check_host_syncs(net, split, backend, *, steps=3, spin_seconds=1.0, batch_size=100):
    """Show that the training step of :func:`xpnet.train.train` never waits for the device.

    Method (cuda): right before the first step's batch gather, queue a kernel that keeps
    the GPU busy for ``spin_seconds`` on the same stream, then let ``train`` run
    ``steps`` steps and note the host time until the loop reaches its final record
    point.  Work on one stream runs in order, so any device-to-host copy or other
    synchronisation inside a step (``float(x)``, ``x.get()``, ``bool(x)``, ...) would
    have to wait for the spinner and the loop would take at least ``spin_seconds``.  A
    loop that finishes in a small fraction of it never waited.  ``steps`` stays small
    so the queued kernels fit CUDA's launch queue.  In addition, calls of
    ``xpnet.train.to_numpy`` and ``cupy.asnumpy`` inside the loop are counted (must be
    zero); on the cpu only this count is available.

    Returns a dict: ``passed``, ``loop_host_s``, ``spin_s``, ``total_s``, ``steps``,
    ``to_numpy_calls``, ``asnumpy_calls``.
    """
    for name in ("gather", "_measure", "to_numpy"):
        if not hasattr(train_module, name):
            raise BenchError(f"xpnet.train has no {name}(); update experiments/bench.py's "
                             "host-sync check to the training loop.")
    cuda = backend.name == "cuda"
    spin = _spinner(backend) if cuda else None
    cupy = None
    if cuda:
        import cupy

    state = {"t_start": None, "t_loop": None, "in_loop": False}
    counts = {"to_numpy": 0, "asnumpy": 0}
    orig_gather, orig_measure = train_module.gather, train_module._measure
    orig_to_numpy = train_module.to_numpy
    orig_asnumpy = cupy.asnumpy if cuda else None

    def hooked_gather(*a, **k):
        if state["t_start"] is None:  # first gather of the first step
            backend.synchronize()  # only the spinner is pending from here on
            if cuda:
                spin(spin_seconds)
            state["t_start"] = time.perf_counter()
            state["in_loop"] = True
        return orig_gather(*a, **k)

    def hooked_measure(*a, **k):
        if state["in_loop"]:  # the final record point: the loop is over
            state["t_loop"] = time.perf_counter()
            state["in_loop"] = False
        return orig_measure(*a, **k)

    def hooked_to_numpy(x):
        if state["in_loop"]:
            counts["to_numpy"] += 1
        return orig_to_numpy(x)

    def hooked_asnumpy(*a, **k):
        if state["in_loop"]:
            counts["asnumpy"] += 1
        return orig_asnumpy(*a, **k)

    schedule = ConstantLR(eta=ETA, steps=steps, cycle_length=steps)
    train_module.gather, train_module._measure = hooked_gather, hooked_measure
    train_module.to_numpy = hooked_to_numpy
    if cuda:
        cupy.asnumpy = hooked_asnumpy
    try:
        train(net, schedule, split, None, batch_size=batch_size, progress=False,
              evals_per_cycle=1, train_eval_size=100)
        backend.synchronize()
        t_end = time.perf_counter()
    finally:
        train_module.gather, train_module._measure = orig_gather, orig_measure
        train_module.to_numpy = orig_to_numpy
        if cuda:
            cupy.asnumpy = orig_asnumpy
    if state["t_start"] is None or state["t_loop"] is None:
        raise BenchError("the host-sync check did not see the training loop start and end; "
                         "update experiments/bench.py to the training loop.")
    loop_s = state["t_loop"] - state["t_start"]
    total_s = t_end - state["t_start"]
    no_calls = counts["to_numpy"] == 0 and counts["asnumpy"] == 0
    if cuda:
        # The spinner really held the device (total >= spin) and the loop never waited.
        passed = no_calls and loop_s < 0.25 * spin_seconds and total_s >= 0.9 * spin_seconds
    else:
        passed = no_calls
    return {"passed": bool(passed), "method": "spinner+count" if cuda else "count",
            "steps": steps, "loop_host_s": loop_s, "spin_s": spin_seconds if cuda else None,
            "total_s": total_s, "to_numpy_calls": counts["to_numpy"],
            "asnumpy_calls": counts["asnumpy"]}


def _sync_line(res):
    calls = f"{res['to_numpy_calls']} to_numpy / {res['asnumpy_calls']} asnumpy calls"
    if res["method"] == "count":
        return f"host-sync check: {'PASS' if res['passed'] else 'FAIL'} ({calls} in the loop)"
    return (f"host-sync check: {'PASS' if res['passed'] else 'FAIL'} -- with the GPU held "
            f"busy {res['spin_s']:.2f} s by a kernel queued before step 1, the host ran "
            f"{res['steps']} training steps in {res['loop_host_s'] * 1e3:.1f} ms "
            f"(device done after {res['total_s']:.2f} s); {calls} in the loop; a "
            "device-to-host copy in a step would have waited for the kernel")


# ------------------------------------------------------------------------------ output
def _fmt_s(x):
    return "n/a" if x is None else (f"{x:.3g}" if x < 10 else f"{x:.1f}")


def _fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def _fmt_bytes(n):
    return "n/a" if n is None else f"{n / 2**20:.0f} MiB"


def write_json(path, data):
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"The folder of --json {path} does not exist; create it or pass "
                          "another path.")
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


# -------------------------------------------------------------------------------- main
def run(args):
    backend = get_backend(args.device)
    if args.json is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        raise OutputError(f"The folder of --json {args.json} does not exist; create it or "
                          "pass another path.")
    use_torch = not args.no_torch and not args.check_syncs and _torch_available()
    info = _machine_info(backend, use_torch)
    X_host, y_host, source = load_data(args)
    B = args.batch_size
    steps_per_epoch = args.n_samples // B
    print(f"device {backend.name}" + (f" ({info['gpu']}, CuPy {info['cupy']})"
                                      if "gpu" in info else "")
          + f" | {platform.machine()}, {info['cpu_count']} CPUs ({info['cpus_usable']} usable)"
          + f" | NumPy {info['numpy']} ({info['blas']}"
          + (f", BLAS threads {info['blas_threads']}" if "blas_threads" in info else "")
          + (f", {info['thread_env']}" if info["thread_env"] else "") + ")"
          + (f" | PyTorch {info['torch']} (threads: {info['torch_threads']})"
             if use_torch else " | PyTorch: not used"), flush=True)
    print(f"net {D_IN}-{'-'.join(map(str, HIDDEN))}-{N_CLASSES} with batch norm, {DTYPE}, "
          f"batch {B}, {args.n_samples} {source} images ({steps_per_epoch} steps/epoch); "
          f"best of {args.repeats} x {args.epochs} epoch(s) after a warm-up", flush=True)

    split = DeviceSplit.from_host(backend, X_host, y_host, N_CLASSES, backend.dtype(DTYPE))
    result = {"device": backend.name, "info": info,
              "config": {"sizes": [D_IN, *HIDDEN, N_CLASSES], "batch_norm": True,
                         "dtype": DTYPE, "batch_size": B, "n_samples": args.n_samples,
                         "data": source, "epochs": args.epochs, "repeats": args.repeats,
                         "eta": ETA, "lam": LAM}}

    if args.check_syncs:
        net = make_net(backend, 1)
        ours_runner(net, split, backend, epochs=1, batch_size=B)()  # warm-up
        res = check_host_syncs(net, split, backend, batch_size=B)
        print(_sync_line(res), flush=True)
        result["sync_check"] = res
        if args.json:
            write_json(args.json, result)
        return 0 if res["passed"] else 1

    # (a) one model
    _pool_reset(backend)
    net = make_net(backend, 1)
    runners = {"ours": ours_runner(net, split, backend, epochs=args.epochs, batch_size=B)}
    single_peak = _pool_bytes(backend)
    runners["matmul"] = matmul_runner(split, backend, n_models=1, epochs=args.epochs,
                                      batch_size=B)
    torch_peak_fn = None
    if use_torch:
        runners["torch"], torch_peak_fn = torch_runner(X_host, y_host, backend.name,
                                                       epochs=args.epochs, batch_size=B)
    times = race(runners, args.repeats, args.epochs)
    single_peak = max(single_peak or 0, _pool_bytes(backend) or 0) or None
    t_ours, t_mm, t_torch = times["ours"], times["matmul"], times.get("torch")
    torch_peak = torch_peak_fn() if torch_peak_fn else None
    del runners
    single = {"ours_s_per_epoch": t_ours, "matmul_s_per_epoch": t_mm,
              "ours_over_matmul": t_ours / t_mm,
              "torch_s_per_epoch": t_torch,
              "ours_over_torch": None if t_torch is None else t_ours / t_torch,
              "peak_pool_bytes": single_peak}
    result["single"] = single
    print(f"ours {_fmt_s(t_ours)} s/epoch | matmul-only {_fmt_s(t_mm)} s/epoch | "
          f"ours/matmul {_fmt_ratio(single['ours_over_matmul'])} | "
          + (f"torch eager {_fmt_s(t_torch)} s/epoch | "
             f"ours/torch {_fmt_ratio(single['ours_over_torch'])}"
             if t_torch is not None else "torch eager n/a"), flush=True)

    # (b) lockstep sweep
    sweep = []
    if args.sweep:
        del net
        print(f"lockstep sweep (M models on the model axis, one seed and batch order each):\n"
              f"{'M':>5} {'s/epoch':>9} {'model-epochs/s':>15} {'vs one-after-another':>21} "
              f"{'matmul-only s/epoch':>20} {'ours/matmul':>12} {'GPU pool peak':>14}",
              flush=True)
        for M in args.models:
            _pool_reset(backend)
            net = make_net(backend, M)
            runners = {"ours": ours_runner(net, split, backend, epochs=args.epochs,
                                           batch_size=B),
                       "matmul": matmul_runner(split, backend, n_models=M,
                                               epochs=args.epochs, batch_size=B)}
            times = race(runners, args.repeats, args.epochs)
            t_m, t_mm_m = times["ours"], times["matmul"]
            del net, runners
            peak = _pool_bytes(backend)
            row = {"models": M, "s_per_epoch": t_m, "model_epochs_per_s": M / t_m,
                   "speedup_vs_sequential": M * t_ours / t_m, "matmul_s_per_epoch": t_mm_m,
                   "ours_over_matmul": t_m / t_mm_m, "peak_pool_bytes": peak}
            sweep.append(row)
            print(f"{M:>5} {_fmt_s(t_m):>9} {row['model_epochs_per_s']:>15.3g} "
                  f"{_fmt_ratio(row['speedup_vs_sequential']):>21} {_fmt_s(t_mm_m):>20} "
                  f"{_fmt_ratio(row['ours_over_matmul']):>12} {_fmt_bytes(peak):>14}",
                  flush=True)
        result["sweep"] = sweep

    # (c) peak GPU memory, and the host-sync check
    peaks = [b for b in [single_peak] + [r["peak_pool_bytes"] for r in sweep] if b is not None]
    result["peak_gpu_bytes"] = max(peaks) if peaks else None
    result["torch_peak_gpu_bytes"] = torch_peak
    if backend.name == "cuda":
        import cupy

        free, total = cupy.cuda.runtime.memGetInfo()
        result["gpu_used_bytes_at_end"] = int(total - free)
        print(f"peak GPU memory: {_fmt_bytes(result['peak_gpu_bytes'])} in CuPy's pool "
              f"(one model: {_fmt_bytes(single_peak)}, data included); PyTorch "
              f"{_fmt_bytes(torch_peak)}; device-wide in use at the end "
              f"{_fmt_bytes(total - free)} of {_fmt_bytes(total)}", flush=True)
        _pool_reset(backend)
        net = make_net(backend, 1)
        ours_runner(net, split, backend, epochs=1, batch_size=B)()  # warm-up
        res = check_host_syncs(net, split, backend, batch_size=B)
        result["sync_check"] = res
        print(_sync_line(res), flush=True)
    else:
        print("peak GPU memory: n/a (cpu); host-sync check: needs --device cuda", flush=True)
        result["sync_check"] = None

    if args.json:
        write_json(args.json, result)
        print(f"figures written to {args.json}", flush=True)
    if result["sync_check"] is not None and not result["sync_check"]["passed"]:
        print("bench: the training step waited for the GPU (see the host-sync check "
              "above); find the host copy in xpnet.train.", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except XpnetError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
