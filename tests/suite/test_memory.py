"""One copy of the data per machine: the total memory (PSS) of the client and its local
workers grows per added worker by a small fraction of the data's size, and every worker
has a Dask memory limit.  Linux only: PSS comes from /proc/PID/smaps_rollup."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from experiments.suite import memory, tasks
from experiments.suite.cluster import worker_plan
from experiments.suite.executor import start_local_cluster
from xpnet.data import cache
from xpnet.data.synthetic import write_cifar_batches

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux")
                       or not Path("/proc/self/smaps_rollup").is_file(),
                       reason="PSS is read from /proc/PID/smaps_rollup, which only Linux has"),
]

#: Images per synthetic batch: 6 x 6,000 images, 442 MB of float32 splits.
PER_BATCH = 6000


def pss_bytes(pid: int) -> int:
    """Proportional set size of process ``pid``: its private pages plus its share of
    each shared page (a page mapped by k processes counts 1/k in each)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no Pss line in /proc/{pid}/smaps_rollup")


def mapped_bytes(pid: int, path: Path, field: str = "Pss") -> int:
    """``field`` (Pss or Rss) of process ``pid``'s mappings of the file ``path``, in bytes."""
    total, inside = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line
            inside = len(head) >= 6 and head[5] == str(path)
        elif inside and head and head[0] == f"{field}:":
            total += int(head[1]) * 1024
    return total


def read_everything(settings: tasks.DataSettings) -> int:
    """On a worker: put the splits on the cpu device as training does and read every
    image; returns the worker's pid."""
    env = tasks.env_for(settings)
    for split in ("train", "val", "test"):
        float(env.split(split).X.sum())
    return os.getpid()


def measure(settings, n_workers: int, data_bytes: int) -> dict:
    """Total PSS of this process (the client) and ``n_workers`` local workers that read
    all the data, and their PSS of the cache file; the cluster is closed before return."""
    limit = memory.worker_memory_limit(memory.available_memory(), data_bytes, n_workers)
    executor = start_local_cluster(worker_plan("cpu", n_workers), "cpu", memory_limit=limit)
    try:
        client = executor.client
        workers = client.scheduler_info()["workers"]
        assert {w["memory_limit"] for w in workers.values()} == {limit}
        pids = client.gather([client.submit(read_everything, settings, workers=[a],
                                            allow_other_workers=False, pure=False)
                              for a in workers])
        files = list(cache.cache_dir().glob("*.arrays"))
        assert len(files) == 1, files
        processes = [os.getpid(), *pids]
        return {"total": sum(pss_bytes(p) for p in processes),
                "file": sum(mapped_bytes(p, files[0]) for p in processes),
                "client_file_rss": mapped_bytes(os.getpid(), files[0], "Rss"),
                "file_size": files[0].stat().st_size}
    finally:
        executor.close()


def test_workers_share_one_copy_of_the_data(monkeypatch, capsys):
    with tempfile.TemporaryDirectory(prefix="xpnet-pss-") as tmp:
        monkeypatch.setenv("XDG_CACHE_HOME", str(Path(tmp) / "cache"))  # workers inherit it
        write_cifar_batches(tmp, n_per_batch=PER_BATCH, seed=0)
        settings = tasks.DataSettings(data_dir=tmp)
        try:
            sizes = tasks.env_for(settings).data_sizes()  # the client builds the cache
            data = 4 * 3072 * (sizes["train"] + sizes["val"] + sizes["test"])
            two = measure(settings, 2, data)
            four = measure(settings, 4, data)
        finally:
            tasks._ENVS.pop(settings, None)  # unmap the file before it is removed
    growth = (four["total"] - two["total"]) / 2
    with capsys.disabled():
        print(f"\nPSS with {data / 2**20:.0f} MB of data: 2 workers {two['total'] / 2**20:.0f} "
              f"MB, 4 workers {four['total'] / 2**20:.0f} MB, {growth / 2**20:.0f} MB per "
              f"added worker; the cache file's pages {two['file'] / 2**20:.0f} / "
              f"{four['file'] / 2**20:.0f} MB in all")
    assert growth < 0.25 * data, (two, four)
    for m in (two, four):  # the file's pages count once in all, however many map it
        assert 0.95 * data <= m["file"] <= 1.02 * m["file_size"], m
        assert m["client_file_rss"] < 0.02 * data, m  # the client reads no images
