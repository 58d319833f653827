"""The bench's contenders: warmed-up runners of one training workload, and their race.

A runner is a function that runs ``epochs`` epochs and returns once the device is
done.  :func:`race` times the runners round-robin, so a change in machine load (a
shared CPU) hits every contender alike, and keeps the best.  The workload is a
3072-50-50-10 batch-norm network in float32 (see :mod:`experiments.bench`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from xpnet.errors import XpnetError
from xpnet.network.network import Network, NetworkConfig
from xpnet.step.backprop import loss_and_data_gradients as generic_step
from xpnet.training import TrainConfig, batch_orders, gather, train
from xpnet.training.schedules import ConstantLR

D_IN, HIDDEN, N_CLASSES = 3072, (50, 50), 10
ETA, LAM = 0.01, 0.005
DTYPE = "float32"


class BenchError(XpnetError):
    """A bad combination of bench options, or a bench that no longer fits the library."""


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
def race(runners: dict, repeats: int, epochs: int) -> dict:
    """Best seconds per epoch of each runner over ``repeats`` round-robin repetitions."""
    best = {name: math.inf for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: t / epochs for name, t in best.items()}


def make_net(backend, n_models, norm="batch"):
    """The bench's 3072-50-50-10 net of ``n_models`` models with ``norm`` (seeds 0..M-1)."""
    config = NetworkConfig(d_in=D_IN, hidden=HIDDEN, n_classes=N_CLASSES, norm=norm)
    return Network.create(config, seeds=list(range(n_models)), lam=LAM, device=backend,
                          dtype=DTYPE)


def generic_backend(backend):
    """``backend`` training with the array-API reference step, or None if it already does."""
    if backend.data_gradients is generic_step:
        return None
    return dataclasses.replace(backend, data_gradients=generic_step)


def step_name(backend) -> str:
    """A short name of the backend's training step (``numpy_step``, ``backprop``, ...)."""
    return backend.data_gradients.__module__.rsplit(".", 1)[-1]


def train_steps(net, split, steps, *, batch_size, callbacks=(), optimizer=None):
    """:func:`xpnet.training.loop.train` for ``steps`` steps at a constant rate, recording only
    at the start and the end (on 100 training images), then wait for the device.
    ``optimizer``: options of :mod:`xpnet.training.optim` (default: SGD without momentum)."""
    schedule = ConstantLR(eta=ETA, steps=steps, cycle_length=steps)
    config = TrainConfig(batch_size=batch_size, evals_per_cycle=1, train_eval_size=100,
                         optimizer=optimizer)
    train(net, schedule, split, None, config, callbacks=callbacks, progress=False)
    net.backend.synchronize()


def ours_runner(net, split, *, epochs, batch_size, warmup_steps=10, optimizer=None):
    """Runner for :func:`xpnet.training.loop.train` itself, with the step ``net``'s backend has
    and ``optimizer`` (see :func:`train_steps`)."""
    steps_per_epoch = split.size // batch_size
    net.backend.synchronize()
    train_steps(net, split, min(warmup_steps, steps_per_epoch), batch_size=batch_size,
                optimizer=optimizer)
    return lambda: train_steps(net, split, epochs * steps_per_epoch, batch_size=batch_size,
                               optimizer=optimizer)


def matmul_runner(split, backend, *, n_models, epochs, batch_size, warmup_steps=10):
    """Runner for the step's matrix products alone, batch gathers included.

    Forward ``X@W1, H1@W2, H2@W3``; backward ``dW3 = (G3^T@H2)^T, G2 = G3@W3^T,
    dW2 = (G2^T@H1)^T, G1 = G2@W2^T, dW1 = (G1^T@X)^T`` (no input gradient for layer 1;
    ``dW`` transposes the small product, never the input, as :mod:`xpnet.nn.layers` does), with
    the model axis for M > 1 (each model gathers its own batch, as in lockstep
    training with one seed per model).  For M = 1 the weights are plain 2-D matrices.
    """
    xp = backend.xp
    rng = np.random.default_rng(1)
    sizes = (D_IN, *HIDDEN, N_CLASSES)
    Ws = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True):
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
            dW3 = T(T(G3) @ H2)
            G2 = G3 @ T(W3)
            dW2 = T(T(G2) @ H1)
            G1 = G2 @ T(W2)
            dW1 = T(T(G1) @ Xb)
        sink[:] = [dW1, dW2, dW3, Yb]

    def run():
        for e in range(epochs):
            steps(steps_per_epoch, e)
        backend.synchronize()

    backend.synchronize()
    steps(min(warmup_steps, steps_per_epoch), 0)
    backend.synchronize()
    return run


def torch_tensors(backend, split, X_host, y_host):
    """The training images ``(n, 3072)`` and labels ``(n,)`` as PyTorch tensors: on a
    torch backend the very tensors ours trains on, else copies on the matching device."""
    import torch

    if backend.name == "torch":
        return split.X, split.y
    dev = torch.device("cuda" if backend.name == "cuda" else "cpu")
    return torch.from_numpy(X_host).to(dev), torch.from_numpy(y_host).to(dev)


def torch_runner(X, y, *, epochs, batch_size, warmup_steps=10):
    """Runner for the same net in PyTorch eager (autograd), on the tensors ``X`` ``(n, 3072)``
    float32 and ``y`` ``(n,)`` int64, resident on their device.

    Linear(3072, 50, bias=False), BatchNorm1d, ReLU, Linear(50, 50, bias=False),
    BatchNorm1d, ReLU, Linear(50, 10); CrossEntropyLoss; SGD(lr=0.01) with weight decay
    ``2 * lambda`` on the Linear weights only; per-epoch ``randperm`` on the device and
    ``index_select`` batches.  Returns the runner and a function giving PyTorch's peak
    allocated CUDA memory, the data excluded (None off CUDA).
    """
    import torch
    from torch import nn

    dev = X.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
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
    N = X.shape[0]
    steps_per_epoch = N // batch_size

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elif dev.type == "mps":
            torch.mps.synchronize()

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
        """Bytes this contender allocated at most, its data excluded (``None`` on cpu)."""
        if dev.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated()) - data_bytes

    data_bytes = X.element_size() * X.nelement() + y.element_size() * y.nelement()
    return run, peak


# ------------------------------------------------------------------------ GPU memory
def pool_reset(backend):
    if backend.name == "cuda":
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    elif backend.flag == "torch:cuda":
        import torch

        torch.cuda.empty_cache()


def pool_bytes(backend):
    """Bytes CuPy's pool holds now: the high-water mark since the last reset."""
    if backend.name != "cuda":
        return None
    import cupy

    return int(cupy.get_default_memory_pool().total_bytes())


def own_peak_bytes(backend, build, epochs: int = 1):
    """The most device memory one contender has in use at once, beyond what was live before.

    Like ``torch.cuda.max_memory_allocated`` after a reset: ``build()`` makes the runner
    (its weights count, the resident dataset does not), one call of it runs, and every
    allocation through CuPy's pool updates the high-water mark of bytes in use.  None on
    the cpu.  Run it outside the timed race, one contender at a time.  On ``torch:cuda``
    every contender allocates through PyTorch's caching allocator, whose own peak counter
    does the same.
    """
    if backend.flag == "torch:cuda":
        return _torch_peak_bytes(backend, build)
    if backend.name != "cuda":
        return None
    import cupy

    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    base = pool.used_bytes()
    peak = [base]

    def tracking_malloc(size):
        mem = pool.malloc(size)
        peak[0] = max(peak[0], pool.used_bytes())
        return mem

    cupy.cuda.set_allocator(tracking_malloc)
    try:
        runner = build()
        runner()
        backend.synchronize()
        del runner
    finally:
        cupy.cuda.set_allocator(pool.malloc)
        pool.free_all_blocks()
    return int(peak[0] - base)


def _torch_peak_bytes(backend, build) -> int:
    """:func:`own_peak_bytes` through PyTorch's allocator (``torch:cuda``)."""
    import torch

    backend.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(backend.device)
    base = torch.cuda.memory_allocated(backend.device)
    runner = build()
    runner()
    backend.synchronize()
    del runner
    peak = torch.cuda.max_memory_allocated(backend.device)
    torch.cuda.empty_cache()
    return int(peak - base)
