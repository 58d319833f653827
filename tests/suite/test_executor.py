"""Executor choices, the split/merge of lockstep runs, and the order Dask runs tasks in."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest

from experiments.suite import tasks as runs
from experiments.suite.executor import (Backlog, ClusterError, InProcess, make_executor, visible_gpus,
                                  worker_plan)
from xpnet.testing import write_cifar_batches


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


def test_no_visible_gpu_is_one_sentence():
    with pytest.raises(ClusterError, match="No GPU is visible"):
        worker_plan("cuda", None, gpu_ids=[])


def test_a_tls_scheduler_without_usable_credentials_is_one_sentence(tmp_path):
    """Checked before connecting: Dask's TLS settings missing, or naming missing files."""
    import dask
    import distributed  # noqa: F401  (its configuration defaults, before changing them)

    from experiments.suite.executor import TLS_ENV, client_security

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
    for run in ("a", "b", "c"):
        backlog.expect(run)
    # Two workers, three runs on their way: every run stays whole.
    assert [backlog.parts(run, 3, n_workers=2) for run in ("a", "b")] == [1, 1]
    backlog.task_submitted()
    backlog.task_submitted()
    assert backlog.parts("c", 3, n_workers=2) == 1
    backlog.task_submitted()
    for _ in range(3):
        backlog.task_done()
    # The queue is empty: a run is cut for every idle worker, never into more than M parts.
    assert backlog.parts("d", 5, n_workers=2) == 2
    assert backlog.parts("e", 3, n_workers=8) == 3
    assert backlog.parts("f", 1, n_workers=8) == 1
    backlog.task_submitted()
    assert backlog.parts("g", 8, n_workers=8) == 7  # one worker busy with f


def test_in_process_runs_are_never_cut():
    assert InProcess().parts_for("study/run", 8) == 1


def test_in_process_executor_keeps_errors_in_the_future():
    future = InProcess().submit(lambda: 1 / 0, key="k")
    with pytest.raises(ZeroDivisionError):
        future.result()
    assert InProcess().submit(lambda a: a + 1, 1, key="k").result() == 2


# -------------------------------------------------------------- split / merge
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-split")
    write_cifar_batches(root, n_per_batch=200, seed=3)
    return runs.RunEnv(runs.DataSettings(str(root), quick=True))


def _spec(env, *, seeds, lam, sigma=None, eta=0.05, momentum=0.0, steps=30):
    return {
        "config": {"d_in": 3072, "hidden": [20, 10], "n_classes": 10, "batch_norm": sigma is None,
                   "init": "he" if sigma is None else "normal", "bn_momentum": 0.9,
                   "bn_eps": 1e-5},
        "train": {"batch_size": 20, "momentum": momentum, "evals_per_cycle": 3,
                  "train_eval_size": None, "divergence_loss": 1e4},
        "schedule": {"type": "ConstantLR", "eta": eta, "steps": steps, "cycle_length": 10},
        "models": {"seeds": seeds, "lam": lam, "sigma": sigma},
        "n_train": 200, "data": env.data_sizes(),
    }


def _assert_same_record(merged, whole):
    assert merged["n_models"] == whole["n_models"]
    assert merged["history"]["steps"] == whole["history"]["steps"]
    assert merged["history"]["diverged_step"] == whole["history"]["diverged_step"]
    assert merged["history"]["stopped_step"] == whole["history"]["stopped_step"]
    for key, rows in whole["history"]["metrics"].items():
        a = np.array(merged["history"]["metrics"][key], dtype=float)
        b = np.array(rows, dtype=float)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=key)
    for key in ("test_accuracy", "last_val_accuracy", "diverged_step"):
        np.testing.assert_allclose(np.array(merged[key], dtype=float),
                                   np.array(whole[key], dtype=float), rtol=1e-5,
                                   equal_nan=True, err_msg=key)


@pytest.mark.parametrize("groups", [2, 3, 5])
def test_a_split_run_merges_into_the_unsplit_record(env, groups):
    spec = _spec(env, seeds=[0, 1, 2, 0, 1], lam=[0.0, 1e-3, 1e-2, 0.1, 0.0])
    whole = runs.execute(runs.train_and_test, spec, env.settings, "t")
    parts = runs.split_spec(spec, groups)
    assert sum(runs.n_models(p) for p in parts) == 5
    merged = runs.merge_records([runs.execute(runs.train_and_test, p, env.settings, "t")
                                 for p in parts])
    _assert_same_record(merged, whole)


def test_a_group_that_diverges_early_is_padded_like_the_whole(env):
    """Models 2 and 3 blow up (sigma 10): their group stops early, the merge pads with NaN."""
    spec = _spec(env, seeds=[0, 1, 2, 3], lam=[0.0] * 4, sigma=[0.01, 0.01, 10.0, 10.0],
                 eta=0.5, momentum=0.9)
    whole = runs.execute(runs.train_and_test, spec, env.settings, "t")
    parts = [runs.execute(runs.train_and_test, p, env.settings, "t")
             for p in runs.split_spec(spec, 2)]
    assert parts[1]["history"]["stopped_step"] < parts[0]["history"]["stopped_step"]
    _assert_same_record(runs.merge_records(parts), whole)


def test_split_leaves_the_spec_alone(env):
    spec = _spec(env, seeds=[0, 1, 2], lam=[0.0, 0.1, 0.2])
    before = copy.deepcopy(spec)
    parts = runs.split_spec(spec, 8)
    assert spec == before
    assert [p["models"]["lam"] for p in parts] == [[0.0], [0.1], [0.2]]



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
