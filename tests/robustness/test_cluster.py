"""The suite on Dask clusters: same numbers on any cluster, and every fault handled.

Each CLI test runs ``python -m experiments.run`` in its own session (process group) on a
tiny generated dataset.  Clusters are real: a ``LocalCluster``-style cluster of worker
processes (``--workers 2``), or ``dask scheduler`` / ``dask worker`` processes over TCP on
127.0.0.1 (and, as root, in network namespaces joined by veth pairs).  Every process a
test starts is ended by its fixture (:mod:`tests.processes`), also when the test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import psutil
import pytest

from experiments.suite.engine import stopped_line
from tests.conftest import in_ci
from tests.hold import hold_env
from tests.processes import (
    QUICK,
    free_port,
    kill_session,
    load,
    numbers,
    run_cli,
    session_processes,
    start_cluster,
    start_suite,
    wait_for,
)


# -------------------------------------------------------------------- tests
def test_two_local_workers_give_the_in_process_numbers(procs, tiny_data, reference, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(procs, *QUICK, "--workers", 2, "--data-dir", tiny_data, "--out", out)
    assert proc.returncode == 0, proc.stderr
    results = load(out)
    assert numbers(results) == numbers(reference["results"])
    assert results["meta"]["executor"] == "local cluster, 2 CPU workers"
    # The executor is metadata, not part of a run's fingerprint: a folder made in-process
    # resumes on a cluster with every run reused, and the reverse.
    again = run_cli(procs, *QUICK, "--workers", 2, "--data-dir", tiny_data, "--out",
                    reference["out"])
    assert again.returncode == 0, again.stderr
    assert numbers(load(reference["out"])) == numbers(reference["results"])
    assert "Trained 0 runs" in again.stdout


def test_an_external_cluster_over_tcp_gives_the_same_numbers(procs, tiny_data, reference,
                                                             tmp_path):
    address = start_cluster(procs, 2)
    out = tmp_path / "out"
    proc = run_cli(procs, *QUICK, "--scheduler", address, "--data-dir", tiny_data,
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    results = load(out)
    assert numbers(results) == numbers(reference["results"])
    assert results["meta"]["executor"] == f"scheduler {address}"


def test_a_killed_worker_costs_nothing_but_time(procs, tiny_data, reference, tmp_path):
    """SIGKILL one worker while runs are in flight: Dask reruns its task elsewhere."""
    address = start_cluster(procs, 2)
    worker_pids = [p.pid for sid in procs.sessions[1:] for p in session_processes(sid)]
    out = tmp_path / "out"
    # Kill as soon as the first run is stored: the others are queued or running.
    suite = start_suite(procs, out, *QUICK, "--scheduler", address, "--data-dir", tiny_data)
    victim = psutil.Process(worker_pids[0])
    for child in victim.children(recursive=True):
        child.kill()
    victim.kill()
    stdout, stderr = suite.communicate(timeout=300)
    assert suite.returncode == 0, stderr
    assert numbers(load(out)) == numbers(reference["results"])


def test_a_failing_run_fails_alone(procs, tiny_data, tmp_path):
    """A run that raises fails its study; the other studies finish and are saved.

    The failure is a runaway recursion: its traceback is too deep to send whole, which
    must not keep the client from learning that the run failed.
    """
    preload = tmp_path / "break_gradcheck.py"
    preload.write_text(  # Dask may load a preload twice: wrap the original only once
        "import experiments.studies.gradcheck as g\n"
        "def broken(env, spec, callbacks):\n"
        "    if spec['K'] == 3 and spec['batch_norm']:\n"
        "        return broken(env, spec, callbacks)\n"
        "    return g.unbroken(env, spec, callbacks)\n"
        "if not hasattr(g, 'unbroken'):\n"
        "    g.unbroken = g.check_config\n"
        "    g.check_config = broken\n")
    address = start_cluster(procs, 1, worker_args=["--preload", str(preload)])
    out = tmp_path / "out"
    proc = run_cli(procs, "--quick", "--only", "gradcheck,overfit", "--seeds", "1",
                   "--no-progress", "--scheduler", address, "--data-dir", tiny_data,
                   "--out", out)
    assert proc.returncode == 1, proc.stderr
    # One line names the run, the error and the innermost frame of the worker's traceback.
    lines = [line for line in proc.stderr.splitlines() if line.startswith("study ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("study gradcheck failed: RecursionError: "), lines[0]
    # The innermost frame: its line is the one the saved traceback ends in, the call (4)
    # or, on Python 3.10, which raises the RecursionError one line earlier, the
    # comparison (3).  Dask runs a copy of the preload file from the worker's scratch folder.
    saved = (out / "errors" / "gradcheck.txt").read_text()
    assert "The run's traceback, on the worker:" in saved
    frames = re.findall(r'break_gradcheck\.py", line (\d+), in broken', saved)
    assert frames and frames[-1] in ("3", "4"), saved[-2000:]
    assert lines[0].endswith(f"/break_gradcheck.py:{frames[-1]} in broken, run "
                             "gradcheck/K3-bn-lam0.01); full traceback in "
                             f"{out / 'errors' / 'gradcheck.txt'}"), lines[0]
    studies = load(out)["studies"]
    assert studies["gradcheck"]["status"] == "failed"
    assert set(studies["gradcheck"]["runs"]) == {"K2-bn-lam0.01", "K2-nobn-lam0.01",
                                                "K3-nobn-lam0.01"}
    assert studies["overfit"]["status"] == "done"
    assert (out / "report.md").is_file()


def test_an_unreachable_scheduler_is_one_sentence(procs, tiny_data, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "out"
    start = time.monotonic()
    proc = run_cli(procs, "--quick", "--scheduler", address, "--data-dir", tiny_data,
                   "--out", out, timeout=60)
    assert time.monotonic() - start < 15
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and address in lines[0], \
        proc.stderr
    assert not out.exists()


def test_a_worker_without_the_data_names_itself_and_the_path(procs, tiny_data, tmp_path):
    """A worker in its own mount namespace, where the data folder is an empty tmpfs."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        if in_ci():
            pytest.fail("CI runs as root with unshare; this test must run there")
        pytest.skip("needs root and unshare to hide the data from one worker")

    def hide_data(i, args):
        script = f"mount -t tmpfs none {tiny_data} && exec \"$@\""
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *args]

    address = start_cluster(procs, 1, wrap=hide_data)
    out = tmp_path / "out"
    proc = run_cli(procs, "--quick", "--only", "overfit", "--seeds", "1", "--no-progress",
                   "--scheduler", address, "--data-dir", tiny_data, "--out", out)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Worker w0" in errors[0] and str(tiny_data) in errors[0], errors[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupting_the_client_ends_its_cluster(procs, tiny_data, tmp_path, sig):
    """The suite cannot finish first: one of its runs is held (see tests.hold).  Studies
    whose runs were cancelled say they were stopped, with the runs they kept."""
    out = tmp_path / "out"
    suite = start_suite(procs, out, *QUICK, "--workers", 2, "--data-dir", tiny_data,
                        env=hold_env(tmp_path / "hold", "depth_bn/9-layer-bn"))
    stored = numbers(load(out))
    suite.send_signal(sig)
    stdout, stderr = suite.communicate(timeout=60)
    assert suite.returncode == 128 + sig, stderr  # 130 SIGINT, 143 SIGTERM
    assert "Interrupted: finished runs are saved" in stderr
    kept = numbers(load(out))
    assert stored.items() <= kept.items()
    # What results.json held when the study stopped: a run may finish while the client
    # closes, so between the count at the signal and the final one.
    said = [n for n in range(5) if stopped_line("depth_bn", n) in stdout.splitlines()]
    assert len(said) == 1, stdout
    assert (sum(1 for study, _ in stored if study == "depth_bn") <= said[0]
            <= sum(1 for study, _ in kept if study == "depth_bn")), stdout
    assert "failed" not in stdout + stderr and "Cancelled" not in stdout + stderr
    wait_for(lambda: not session_processes(suite.pid), 20, "the cluster's processes to end")


def test_resume_after_the_client_is_killed(procs, tiny_data, reference, tmp_path):
    out = tmp_path / "out"  # one run never ends: the kill always lands mid-suite
    suite = start_suite(procs, out, *QUICK, "--workers", 2, "--data-dir", tiny_data,
                        env=hold_env(tmp_path / "hold", "depth_bn/9-layer-bn"))
    suite.kill()
    suite.wait(timeout=30)
    kill_session(suite.pid)  # SIGKILL gives the client no chance to stop its workers
    before = {k: r["finished_at"] for s in load(out)["studies"].values()
              for k, r in s["runs"].items()}
    assert before
    proc = run_cli(procs, *QUICK, "--workers", 2, "--data-dir", tiny_data, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "9-layer-bn" not in before and "Trained 0 runs" not in proc.stdout
    after = load(out)
    assert {k: r["finished_at"] for s in after["studies"].values()
            for k, r in s["runs"].items() if k in before} == before
    assert numbers(after) == numbers(reference["results"])


# ------------------------------------------------------ network namespaces
NETNS = ["xpn-sched", "xpn-w0", "xpn-w1"]


def _ip(*args) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces():
    """A scheduler "host" and two worker "hosts", each a network namespace.

    veth pairs on private test addresses join the client (this namespace) and each
    worker to the scheduler's namespace: 10.77.<k>.1 (scheduler side) - 10.77.<k>.2.
    """
    if os.geteuid() != 0 or not shutil.which("ip"):
        if in_ci():
            pytest.fail("CI runs as root with iproute2; the namespace test must run there")
        pytest.skip("needs root and iproute2")
    try:
        _ip("netns", "add", NETNS[0])
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"ip netns add is not permitted here ({exc.stderr.strip()})")
    try:
        for ns in NETNS[1:]:
            _ip("netns", "add", ns)
        for ns in NETNS:
            _ip("-n", ns, "link", "set", "lo", "up")
        for k, peer in enumerate([None, *NETNS[1:]]):
            a, b = f"xpn{k}s", f"xpn{k}p"
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            _ip("link", "set", a, "netns", NETNS[0])
            if peer is not None:
                _ip("link", "set", b, "netns", peer)
            _ip("-n", NETNS[0], "addr", "add", f"10.77.{k}.1/24", "dev", a)
            _ip("-n", NETNS[0], "link", "set", a, "up")
            where = [] if peer is None else ["-n", peer]
            _ip(*where, "addr", "add", f"10.77.{k}.2/24", "dev", b)
            _ip(*where, "link", "set", b, "up")
        yield NETNS
    finally:
        for ns in NETNS:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", "xpn0p"], capture_output=True, timeout=10)


def test_a_cluster_of_separate_network_hosts(procs, namespaces, tiny_data, reference,
                                             tmp_path):
    sched_ns, *worker_ns = namespaces

    def in_worker_ns(i, args):
        # Worker i reaches the scheduler on its own link, 10.77.<i+1>.1.
        return ["ip", "netns", "exec", worker_ns[i], *[
            a.replace("10.77.0.1", f"10.77.{i + 1}.1") for a in args]]

    address = start_cluster(procs, 2, host="0.0.0.0", contact="10.77.0.1",
                            sched_wrap=lambda args: ["ip", "netns", "exec", sched_ns, *args],
                            wrap=in_worker_ns)
    out = tmp_path / "out"
    proc = run_cli(procs, *QUICK, "--scheduler", address, "--data-dir", tiny_data,
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert numbers(load(out)) == numbers(reference["results"])
