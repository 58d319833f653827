"""Executor choices, how runs are cut for idle workers, and the order Dask runs tasks in."""

from __future__ import annotations

import time

import pytest

from experiments.suite import tasks as runs
from experiments.suite.cluster import ClusterError, visible_gpus, worker_plan
from experiments.suite.executor import Backlog, InProcess, make_executor


def test_cpu_plan_uses_every_usable_core_with_one_blas_thread():
    plan = worker_plan("cpu", None, cores=4)
    assert len(plan) == 4
    assert all(env["OPENBLAS_NUM_THREADS"] == "1" and "CUDA_VISIBLE_DEVICES" not in env
               for env in plan)
    assert len(worker_plan("cpu", 3, cores=16)) == 3


@pytest.mark.parametrize("count, visible, expected", [
    (4, None, ["0", "1", "2", "3"]),
    (2, "5,7", ["5", "7"]),
    (1, "GPU-0a1b", ["GPU-0a1b"]),
    (2, "3,4,6", ["3", "4"]),  # the runtime sees fewer than were listed
])
def test_each_gpu_worker_is_pinned_to_one_visible_gpu(count, visible, expected):
    ids = visible_gpus(count, visible)
    plan = worker_plan("cuda", None, gpu_ids=ids)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in plan] == expected
    assert all(env["OMP_NUM_THREADS"] == "1" for env in plan)
    assert len(worker_plan("cuda", 1, gpu_ids=ids)) == 1  # --workers caps the count


def test_torch_devices_plan_like_the_hardware_they_run_on():
    """torch:cuda pins one worker per GPU as cuda does; torch:mps has one GPU to share
    (one worker unless --workers says more); torch on the CPU is a CPU plan."""
    plan = worker_plan("torch:cuda", None, gpu_ids=["0", "1"])
    assert [env["CUDA_VISIBLE_DEVICES"] for env in plan] == ["0", "1"]
    assert len(worker_plan("torch:mps", None, cores=8)) == 1
    assert len(worker_plan("torch:mps", 2, cores=8)) == 2
    assert len(worker_plan("torch", None, cores=3)) == 3


def test_runs_are_cut_for_cpu_workers_only():
    """Lockstep is the win on a GPU: a run stays whole there; torch on the CPU is cut."""
    from experiments.suite.executor import DaskExecutor

    class Client:
        def scheduler_info(self):
            return {"workers": {"a": {}, "b": {}, "c": {}}}

    cut = {device: DaskExecutor(Client(), device=device).parts_for(3, upcoming=0)
           for device in ("cpu", "torch", "cuda", "torch:cuda", "torch:mps")}
    assert cut == {"cpu": 3, "torch": 3, "cuda": 1, "torch:cuda": 1, "torch:mps": 1}


def test_in_process_probe_is_this_process():
    info = InProcess().probe(runs.probe_device, "cpu")
    assert list(info) == ["this process"]
    assert info["this process"]["device"] == "cpu" and "numpy" in info["this process"]["versions"]


def test_no_visible_gpu_is_one_sentence():
    with pytest.raises(ClusterError, match="No GPU is visible"):
        worker_plan("cuda", None, gpu_ids=[])


def test_a_tls_scheduler_without_usable_credentials_is_one_sentence(tmp_path):
    """Checked before connecting: Dask's TLS settings missing, or naming missing files."""
    import dask
    import distributed  # noqa: F401  (its configuration defaults, before changing them)

    from experiments.suite.cluster import TLS_ENV, client_security

    unset = dict.fromkeys(["distributed.comm.tls.ca-file", "distributed.comm.tls.client.cert",
                           "distributed.comm.tls.client.key"])
    with dask.config.set(unset), pytest.raises(ClusterError) as missing:
        client_security("tls://127.0.0.1:1")
    absent = str(tmp_path / "absent.pem")
    with dask.config.set({"distributed.comm.tls.ca-file": absent,
                          "distributed.comm.tls.client.cert": absent,
                          "distributed.comm.tls.client.key": absent}):
        with pytest.raises(ClusterError) as unreadable:
            client_security("tls://127.0.0.1:1")
        assert client_security("tcp://127.0.0.1:1") is not None  # plain TCP reads no files
    for error in (missing.value, unreadable.value):
        message = str(error)
        assert message.endswith(".") and ". " not in message and "\n" not in message
        assert all(name in message for name in TLS_ENV)
    assert "No such file" in str(unreadable.value)


def test_one_worker_means_in_process_without_dask(monkeypatch):
    monkeypatch.delenv("XPNET_SCHEDULER", raising=False)
    monkeypatch.delenv("XPNET_WORKERS", raising=False)
    assert isinstance(make_executor("cpu", 1, None), InProcess)
    assert isinstance(make_executor("cuda", None, None, gpu_count=lambda: 1), InProcess)
    monkeypatch.setenv("XPNET_WORKERS", "1")
    assert isinstance(make_executor("cpu", None, None), InProcess)
    monkeypatch.setenv("XPNET_WORKERS", "none")
    with pytest.raises(Exception, match="XPNET_WORKERS must be a whole number"):
        make_executor("cpu", None, None)


def test_a_run_is_cut_only_for_workers_that_would_otherwise_idle():
    backlog = Backlog()
    # Two workers, a batch of three runs starting: every run stays whole.
    assert [backlog.parts(3, n_workers=2, upcoming=k) for k in (2, 1)] == [1, 1]
    backlog.task_submitted()
    backlog.task_submitted()
    assert backlog.parts(3, n_workers=2, upcoming=0) == 1
    backlog.task_submitted()
    for _ in range(3):
        backlog.task_done()
    # Nothing queued: a run is cut for every idle worker, never into more than M parts.
    assert backlog.parts(5, n_workers=2, upcoming=0) == 2
    assert backlog.parts(3, n_workers=8, upcoming=0) == 3
    assert backlog.parts(1, n_workers=8, upcoming=0) == 1
    backlog.task_submitted()
    assert backlog.parts(8, n_workers=8, upcoming=0) == 7  # one worker busy
    assert backlog.parts(8, n_workers=8, upcoming=3) == 4  # and three runs right behind


def test_in_process_runs_are_never_cut():
    assert InProcess().parts_for(8, upcoming=0) == 1


def test_in_process_executor_keeps_errors_in_the_future():
    future = InProcess().submit(lambda: 1 / 0, key="k")
    with pytest.raises(ZeroDivisionError):
        future.result()
    assert InProcess().submit(lambda a: a + 1, 1, key="k").result() == 2


STARTED: list = []  # names of the tasks below, as an in-process worker starts them


def _record_start(name: str, hold: float = 0.0) -> str:
    STARTED.append(name)
    time.sleep(hold)
    return name


def test_dask_runs_tasks_in_submission_order_and_chain_links_first():
    from distributed import Client, LocalCluster

    from experiments.suite.executor import DaskExecutor

    STARTED.clear()
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address="127.0.0.1:0")
    executor = DaskExecutor(Client(cluster), cluster, "test", "cpu")
    try:
        # The first task holds the only worker while the rest queue up behind it.
        futures = [executor.submit(_record_start, "first", 1.0, key="first")]
        futures += [executor.submit(_record_start, f"r{i}", key=f"r{i}") for i in range(6)]
        futures.append(executor.submit(_record_start, "link", key="link", priority=1))
        # The scheduler holds the runs it has not handed out in its own queue (one task
        # group of root-ish tasks), not the worker: it can still reorder them.
        deadline = time.monotonic() + 10
        while executor.client.run_on_scheduler(_count_known) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)  # the submissions reach the scheduler on another connection
        queued = executor.client.run_on_scheduler(_count_queued)
        assert [f.result(timeout=60) for f in futures][0] == "first"
    finally:
        executor.close()
    # r0 may already wait on the worker when "link" arrives; everything else keeps order.
    rest = [name for name in STARTED if name not in ("first", "link")]
    assert STARTED[0] == "first" and STARTED.index("link") <= 2
    assert rest == [f"r{i}" for i in range(6)]
    assert queued >= 4


def _count_known(dask_scheduler) -> int:
    return len(dask_scheduler.tasks)


def _count_queued(dask_scheduler) -> int:
    return sum(ts.state == "queued" for ts in dask_scheduler.tasks.values())


GIB = 2**30


def test_the_memory_caps_the_default_worker_count_and_says_so(monkeypatch):
    from experiments.suite import cluster, executor, memory

    monkeypatch.delenv("XPNET_SCHEDULER", raising=False)
    monkeypatch.delenv("XPNET_WORKERS", raising=False)
    monkeypatch.setattr(cluster, "usable_cores", lambda: 8)
    started = []
    monkeypatch.setattr(executor, "start_local_cluster", lambda plan, device, memory_limit=0, **_:
                        started.append((len(plan), memory_limit)) or InProcess())
    data = int(0.7 * GIB)
    # Room for the data, the client and three workers: three workers, and a line saying so.
    available = data + memory.CLIENT_BYTES + 3 * memory.WORKER_BYTES + 1000
    ex = make_executor("cpu", None, None, data_bytes=data, available=available)
    assert started[-1][0] == 3
    assert ex.notice.startswith("Using 3 workers, not one per usable core (8):")
    assert "--workers N" in ex.notice
    # Each gets the data plus its share of the rest: its nanny restarts it beyond that.
    assert started[-1][1] == data + (available - data - memory.CLIENT_BYTES) // 3
    # Plenty of memory: every core, no notice, a limit above the data and a worker's need.
    ex = make_executor("cpu", None, None, data_bytes=data, available=64 * GIB)
    assert started[-1][0] == 8 and ex.notice is None
    assert started[-1][1] >= data + memory.WORKER_BYTES
    # --workers N is the user's choice: not capped.
    ex = make_executor("cpu", 6, None, data_bytes=data, available=available)
    assert started[-1][0] == 6 and ex.notice is None
    # Room for one worker only: it trains in this process, and the notice says so.
    ex = make_executor("cpu", None, None, data_bytes=data, available=data)
    assert isinstance(ex, InProcess) and ex.notice.startswith("Using 1 worker, not")


def test_a_run_on_a_gpu_records_which_gpu(monkeypatch):
    """A GPU worker says in the run's record which GPU it used (one worker per GPU shows
    as a different index or CUDA_VISIBLE_DEVICES per worker); a CPU run records none."""
    import platform
    import types

    settings = runs.DataSettings(data_dir=None, device="torch:cuda")
    env = runs.RunEnv(settings)
    gpu = {"device": "torch:cuda", "gpu": "NVIDIA H200", "gpu_index": 0,
           "cuda_visible_devices": "3"}
    env._backend = types.SimpleNamespace(describe=lambda: gpu, synchronize=lambda: None)
    monkeypatch.setitem(runs._ENVS, settings, env)
    record = runs.execute(lambda env, spec, callbacks: {"n_models": 1}, {}, settings, "s/r")
    assert record["gpu"] == {**gpu, "host": platform.node()}
    cpu_settings = runs.DataSettings(data_dir=None, device="cpu")
    record = runs.execute(lambda env, spec, callbacks: {"n_models": 1}, {}, cpu_settings, "s/r")
    assert "gpu" not in record
