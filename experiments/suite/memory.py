"""How many local workers the memory allows, and the memory limit each one gets.

Every process maps the standardised splits from one cache file per machine (see
:mod:`xpnet.data.cache`), so the data counts once however many workers there are; each
worker adds only its own memory (Python, NumPy, Dask and a run's arrays).  The default
worker count is then the usable cores, capped so that the data, the client and the
workers fit in the memory available when the suite starts.  Each worker gets a Dask
``memory_limit``, so that its nanny restarts a runaway worker (at 95 % of the limit)
before the machine swaps; Dask reruns the run it held elsewhere.
"""

from __future__ import annotations

#: Memory of one worker process besides the data, with room to spare: Python, NumPy,
#: Dask and a run's arrays.  Measured: under 200 MB per worker while the lr_bn study
#: trains on the full data (the growth of the total PSS per added worker).
WORKER_BYTES = 512 * 2**20
#: Memory of the client besides the data: it plans the runs, stores their results and
#: draws the figures; it maps the data but reads none of the images while workers train.
CLIENT_BYTES = 512 * 2**20

GIB = 2**30


def available_memory() -> int:
    """Bytes of memory available to new processes now (Linux: MemAvailable)."""
    import psutil  # a dependency of Dask's distributed

    return int(psutil.virtual_memory().available)


def workers_that_fit(available: int, data_bytes: int) -> int:
    """How many workers fit in ``available`` bytes beside the client and the shared data
    of ``data_bytes`` (at least 1)."""
    return max(1, (available - data_bytes - CLIENT_BYTES) // WORKER_BYTES)


def worker_memory_limit(available: int, data_bytes: int, n_workers: int) -> int:
    """Dask's ``memory_limit`` for each of ``n_workers`` local workers, in bytes.

    Dask measures a worker's resident memory, which counts the pages of the shared data
    it has read: the limit is the data plus the worker's share of the rest of the
    available memory, and at least :data:`WORKER_BYTES` beyond the data.
    """
    share = (available - data_bytes - CLIENT_BYTES) // max(1, n_workers)
    return data_bytes + max(WORKER_BYTES, share)


def cap_notice(workers: int, cores: int, available: int, data_bytes: int) -> str:
    """The line the suite prints first when the memory caps its default worker count."""
    many = "worker" if workers == 1 else "workers"
    return (f"Using {workers} {many}, not one per usable core ({cores}): "
            f"{available / GIB:.1f} GiB of memory is available, and each worker needs "
            f"about {WORKER_BYTES / GIB:.1f} GiB beside the {data_bytes / GIB:.2f} GiB of "
            "data they share; pass --workers N to choose the count.")
