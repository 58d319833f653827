"""Which Dask workers to start on this machine, and the credentials of a cluster.

- :func:`worker_plan`: the environment of each local worker process (one BLAS thread
  each; one per usable core, or one per visible GPU pinned to it).
- :func:`local_security`: TLS credentials that only this process and the local cluster it
  starts hold; :func:`client_security`: Dask's standard TLS settings for a ``tls://``
  scheduler of your own.
"""

from __future__ import annotations

import os

from xpnet.errors import XpnetError


class ClusterError(XpnetError):
    """The Dask cluster could not be reached or started."""


#: Device flags whose runs compute on a GPU: a run there stays whole (lockstep is the win).
GPU_DEVICES = ("cuda", "torch:cuda", "torch:mps")
#: Device flags with one worker per visible CUDA GPU on a local cluster.
CUDA_DEVICES = ("cuda", "torch:cuda")
#: Seconds to wait for a scheduler named by --scheduler before giving up.
CONNECT_TIMEOUT_S = 10
#: Environment of every local worker process: one BLAS thread (the matrices are small),
#: and glibc's malloc told to keep the step's MB-sized temporaries on the heap.  Dask's
#: nanny sets MALLOC_TRIM_THRESHOLD_=65536 by default, which also freezes the mmap
#: threshold at 128 KiB: every batch-sized temporary then costs an mmap/munmap and fresh
#: page faults (measured: the same training took 1.8x as long, 40 % of it system time).
#: glibc reads these when a process starts, so they go in Dask's pre-spawn environment.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
              "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20)}
#: Dask settings of local clusters: the above before each worker starts; no statistical
#: profiler (it samples every worker's stack every 10 ms, costing GIL time); and the
#: event-loop watchdog tick (20 ms) and system monitor (500 ms, for the dashboard) run
#: rarely.  Their defaults kept an idle 2-worker cluster at 11 % of a core (client with
#: scheduler and nannies 5.6 %, each worker 2.8 %), taken from the training on a small
#: machine; with these settings, 2 %.  A worker takes its next queued run only when it
#: has finished the last (saturation 1.0; the default, 1.1, rounds up to a second run
#: held in reserve on each single-threaded worker, chosen before it was needed).  Of
#: Dask's memory management only the nanny's restart at 95 % of the memory limit is on:
#: a worker's resident memory counts the shared data it has read, which neither spilling
#: results to disk nor pausing the worker (at 80 %, until memory falls) would free.
DASK_CONFIG = {"distributed.nanny.pre-spawn-environ": WORKER_ENV,
               "distributed.scheduler.worker-saturation": 1.0,
               "distributed.worker.profile.enabled": False,
               "distributed.admin.tick.interval": "1s",
               "distributed.admin.system-monitor.interval": "5s",
               "distributed.worker.memory.target": False,
               "distributed.worker.memory.spill": False,
               "distributed.worker.memory.pause": False,
               "distributed.worker.memory.terminate": 0.95}


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def visible_gpus(device_count: int, visible: str | None = None) -> list[str]:
    """The GPU ids a local GPU cluster pins its workers to, one worker each.

    Args:
        device_count: GPUs the CUDA runtime reports (with ``visible`` applied).
        visible: ``CUDA_VISIBLE_DEVICES`` as set for this process, or None; its ids
            (numbers or UUIDs) are kept so each worker sees exactly one of them.
    """
    if visible is not None and visible.strip():
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return ids[:device_count]
    return [str(i) for i in range(device_count)]


def worker_plan(device: str, workers: int | None, *, cores: int | None = None,
                gpu_ids: list[str] | None = None) -> list[dict]:
    """The environment of each local worker process, one dict per worker.

    CPU: ``workers`` (default: every usable core) workers with one BLAS thread each.
    CUDA (``cuda``, ``torch:cuda``): one worker per GPU in ``gpu_ids`` (``--workers``
    caps the count), each with ``CUDA_VISIBLE_DEVICES`` set to its GPU alone.
    MPS: ``workers`` (default one) workers sharing the Mac's one GPU.
    """
    if device == "torch:mps":
        return [dict(WORKER_ENV) for _ in range(workers or 1)]
    if device in CUDA_DEVICES:
        ids = list(gpu_ids or [])
        if not ids:
            raise ClusterError("No GPU is visible to start CUDA workers on; use --device cpu "
                               "or run on a machine with a GPU.")
        ids = ids[:workers] if workers else ids
        return [{**WORKER_ENV, "CUDA_VISIBLE_DEVICES": gpu} for gpu in ids]
    count = workers or cores or usable_cores()
    return [dict(WORKER_ENV) for _ in range(count)]



#: The environment variables of Dask's TLS settings for a client (its configuration keys
#: distributed.comm.tls.ca-file, .client.cert and .client.key work as well).
TLS_ENV = ("DASK_DISTRIBUTED__COMM__TLS__CA_FILE", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT",
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY")


def client_security(address: str):
    """Dask's TLS settings for a client of ``address`` (from its configuration or the
    environment, see :data:`TLS_ENV`); one sentence if a ``tls://`` address lacks them."""
    from distributed.security import Security

    security = Security()
    if not address.startswith("tls://"):
        return security
    try:
        tls = security.get_connection_args("client").get("ssl_context")
    except (OSError, ValueError) as exc:  # a missing or unreadable file, a bad key
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ClusterError(f"Could not load the TLS credentials for {address} ({reason}); "
                           f"check the files that {', '.join(TLS_ENV)} name.") from None
    if tls is None:
        raise ClusterError(f"The scheduler at {address} needs TLS credentials; set "
                           f"{', '.join(TLS_ENV)} to your cluster's CA file and this "
                           "client's certificate and key, then run again.")
    return security


def local_security():
    """Credentials that only this process and the cluster it starts hold.

    Dask's own transport security: a fresh certificate and key made in memory
    (``Security.temporary()``), required of every connection, over TLS.  A local cluster
    listens on the loopback address, which every user of a shared machine can reach;
    without these, any of them could connect and run code as you.
    """
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:  # made with the `cryptography` package, a dependency of xpnet
        raise ClusterError("The local Dask cluster needs the cryptography package for its "
                           "TLS credentials; install it (pip install cryptography) or run "
                           "with --workers 1.") from None


def cuda_device_count(device: str) -> int:
    """GPUs this machine's CUDA runtime reports (the device was vetted by get_backend)."""
    if device == "torch:cuda":
        import torch

        return int(torch.cuda.device_count())
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())
