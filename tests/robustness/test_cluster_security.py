"""Who may run code on the suite's clusters: the local cluster admits only its own client,
and a cluster of your own runs over TLS with Dask's standard settings."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from experiments.suite import cluster
from tests.hold import hold_env
from tests.processes import (
    QUICK,
    REPO,
    load,
    make_certificates,
    numbers,
    run_cli,
    session_processes,
    start_cluster,
    start_suite,
)


def test_an_external_cluster_over_tls_with_dasks_settings(procs, tiny_data, reference,
                                                          tmp_path, one_sentence):
    """README's TLS cluster: `dask scheduler` / `dask worker` with --tls-* files made here;
    the suite connects with Dask's standard environment variables, and without them says
    what to set."""
    tls = make_certificates(tmp_path / "tls")
    address = start_cluster(procs, 2, tls=tls)
    assert address.startswith("tls://")
    out = tmp_path / "out"
    refused = run_cli(procs, *QUICK, "--scheduler", address, "--data-dir", tiny_data,
                      "--out", out, timeout=60)
    assert refused.returncode == 2, refused.stderr
    one_sentence(refused.stderr.strip().removeprefix("error: "), address, *cluster.TLS_ENV)
    assert not out.exists()
    env = dict(zip(cluster.TLS_ENV, map(str, (tls["ca"], tls["cert"], tls["key"])),
                   strict=True))
    proc = run_cli(procs, *QUICK, "--scheduler", address, "--data-dir", tiny_data,
                   "--out", out, env=env)
    assert proc.returncode == 0, proc.stderr
    results = load(out)
    assert numbers(results) == numbers(reference["results"])
    assert results["meta"]["executor"] == f"scheduler {address}"


STRANGER = Path(__file__).with_name("stranger.py")


def listening(sid: int) -> set[tuple[str, int]]:
    """``(ip, port)`` of every listening socket of session ``sid``'s processes."""
    found = set()
    for proc in session_processes(sid):
        try:
            connections = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in connections
                  if c.status == psutil.CONN_LISTEN}
    return found


def stranger(marker_dir: Path, addresses: list[str]) -> list:
    """What another process gets trying to run code at ``addresses`` (see stranger.py)."""
    done = subprocess.run([sys.executable, STRANGER, marker_dir, *addresses], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_local_cluster_admits_only_its_own_client(procs, tiny_data, tmp_path):
    """Another process of the machine tries every port of a running suite's local
    cluster (scheduler, nannies, workers, their HTTP servers) over tcp:// and tls://
    without the suite's credentials: nothing it sends runs anywhere."""
    from distributed import LocalCluster

    # The control: on a cluster without TLS, the same attempts do run code.
    opened = tmp_path / "open-cluster"
    opened.mkdir()
    with LocalCluster(n_workers=1, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        outcomes = stranger(opened, [cluster.scheduler_address,
                                     *cluster.scheduler_info["workers"]])
    assert [o for o in outcomes if o[-1] == "ran"] and list(opened.iterdir()), outcomes

    out = tmp_path / "out"  # one run never ends: the suite runs for as long as we probe
    suite = start_suite(procs, out, *QUICK, "--workers", 2, "--data-dir", tiny_data,
                        env=hold_env(tmp_path / "hold", "depth_bn/9-layer-bn"))
    ports = listening(suite.pid)
    assert {ip for ip, _ in ports} == {"127.0.0.1"}, ports  # loopback only
    assert len(ports) >= 5, ports  # a scheduler, two nannies and two workers at least
    marker = tmp_path / "suite-cluster"
    marker.mkdir()
    outcomes = stranger(marker, [f"{scheme}://{ip}:{port}" for ip, port in sorted(ports)
                                 for scheme in ("tcp", "tls")])
    assert len(outcomes) == len(ports) * 2 * (1 + 3)  # tcp; tls three ways; run, broadcast
    assert not [o for o in outcomes if o[-1] == "ran" or o[-1].startswith("answered")]
    assert not list(marker.iterdir())
    assert suite.poll() is None  # it was up all along
    suite.send_signal(signal.SIGTERM)
    _, stderr = suite.communicate(timeout=60)
    assert suite.returncode == 143, stderr




def http_answer(port: int) -> str | None:
    """The status line ``GET /health`` on 127.0.0.1:``port`` gets, or None where nothing
    answers HTTP (a Dask TLS port hangs up on it)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return f"{response.status} {response.read(100)!r}"
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


@pytest.mark.slow
def test_no_http_server_listens_unless_asked_and_then_it_says_so(procs, tiny_data, tmp_path):
    """Dask starts an HTTP server on the scheduler and each worker whatever
    ``dashboard_address`` says; before, the scheduler's answered every local process
    (workers' logs, tasks' call stacks).  By default now nothing on the cluster's side
    answers HTTP; ``--dashboard`` opens the scheduler's and names it, with its risk."""
    held = {}
    for flags in ([], ["--dashboard"]):
        out = tmp_path / f"out{len(flags)}"
        suite = start_suite(procs, out, *QUICK, "--workers", 2, *flags, "--data-dir",
                            tiny_data, env=hold_env(tmp_path / f"hold{len(flags)}",
                                                    "depth_bn/9-layer-bn"))
        held[bool(flags)] = {port: http_answer(port) for _, port in listening(suite.pid)}
        if not flags:  # 1 scheduler, 2 nannies, 2 workers, none answering HTTP
            assert set(held[False].values()) == {None}, held[False]
            assert len(held[False]) == 5, held[False]
        assert suite.poll() is None
        suite.send_signal(signal.SIGTERM)
        stdout, stderr = suite.communicate(timeout=60)
        assert suite.returncode == 143, stderr
        dashboard = [line for line in stdout.splitlines() if line.startswith("Dask dashboard")]
        if flags:
            assert len(dashboard) == 1, stdout
            port = int(dashboard[0].split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
            assert dashboard[0].endswith("(no credentials: every user of this machine can "
                                         "open it)"), dashboard
        else:
            assert not dashboard, stdout
    answering = {port: answer for port, answer in held[True].items() if answer is not None}
    assert answering == {port: "200 b'ok'"}, held[True]
