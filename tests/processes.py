"""Processes and clusters for the tests that start them: each in a session of its own,
every one ended by the ``procs`` fixture, also when the test fails.

``run_cli``/``start_suite`` run ``python -m experiments.run``; ``start_cluster`` starts
``dask scheduler`` and ``dask worker`` processes on loopback (over TLS with the files of
``make_certificates``); ``reference`` is the in-process run's results that cluster runs
must equal (``numbers``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from experiments.suite import cluster

REPO = Path(__file__).resolve().parents[1]
STUDIES = "gradcheck,depth_bn,lambda_search"
QUICK = ["--quick", "--only", STUDIES, "--seeds", "2", "--no-progress"]
DASK_SCHEDULER = [sys.executable, "-c", "from distributed.cli.dask_scheduler import main; main()"]
DASK_WORKER = [sys.executable, "-c", "from distributed.cli.dask_worker import main; main()"]


# ------------------------------------------------------------------ helpers
def session_processes(sid: int) -> list[psutil.Process]:
    """Live processes of session ``sid`` (a process started with start_new_session)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def kill_session(sid: int) -> None:
    for proc in session_processes(sid):
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(session_processes(sid), timeout=10)


class Processes:
    """Starts processes in sessions of their own and ends every one of them at teardown."""

    def __init__(self):
        self.sessions: list[int] = []

    def start(self, args, **kwargs) -> subprocess.Popen:
        env = {**os.environ, **kwargs.pop("env", {})}
        env.pop("XPNET_WORKERS", None)  # these tests choose their executor explicitly
        proc = subprocess.Popen(args, cwd=REPO, env=env, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                **kwargs)
        self.sessions.append(proc.pid)
        return proc

    def end_all(self) -> None:
        for sid in self.sessions:
            kill_session(sid)


@pytest.fixture
def procs():
    p = Processes()
    yield p
    p.end_all()
    left = [proc for sid in p.sessions for proc in session_processes(sid)]
    assert not left, f"processes left behind: {left}"


def run_cli(procs: Processes, *args, timeout=240, env=None) -> subprocess.CompletedProcess:
    proc = procs.start([sys.executable, "-m", "experiments.run", *map(str, args)], env=env or {})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"the suite did not finish in {timeout} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def start_suite(procs: Processes, out: Path, *args, env=None) -> subprocess.Popen:
    """``python -m experiments.run *args --out out``, returned once a first run is stored."""
    suite = procs.start([sys.executable, "-m", "experiments.run", *map(str, args),
                         "--out", str(out)], env=env or {})
    wait_for(lambda: (out / "results.json").is_file() and any(
        s.get("runs") for s in load(out)["studies"].values()), 120, "a first run", suite)
    return suite


def load(out: Path) -> dict:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def numbers(results: dict) -> dict:
    """Per run, everything a run's numbers are: accuracies, divergence, gradient errors."""
    table = {}
    for study, entry in results["studies"].items():
        for key, rec in entry["runs"].items():
            if "params" in rec:
                table[(study, key)] = [p["max_rel_error"] for p in rec["params"]]
            else:
                table[(study, key)] = (rec["test_accuracy"], rec["diverged_step"],
                                       rec["last_val_accuracy"])
    return table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the process ended early:\n{proc.stderr.read()}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def wait_workers(address: str, n: int, scheduler: subprocess.Popen,
                 timeout: float = 90, security=None) -> None:
    """Wait until the scheduler at ``address`` has ``n`` workers (start-up is slow on a
    busy 2-core machine); fail with the scheduler's own words if it died."""
    from distributed import Client

    host, port = address.rsplit("//", 1)[1].rsplit(":", 1)
    deadline = time.monotonic() + timeout

    def listening():
        if scheduler.poll() is not None:
            pytest.fail(f"the test's dask scheduler exited:\n{scheduler.stderr.read()}")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            return False

    wait_for(listening, timeout, f"the scheduler at {address}")
    with Client(address, timeout=f"{max(10, deadline - time.monotonic()):.0f}s",
                security=security) as client:
        client.wait_for_workers(n, timeout=max(10, deadline - time.monotonic()))


#: How README tells users to start `dask worker` (see experiments.suite.cluster.WORKER_ENV).
WORKER_ENV = {f"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__{k}": v
              for k, v in cluster.WORKER_ENV.items()}


def start_cluster(procs: Processes, n_workers: int, *, host="127.0.0.1", worker_args=(),
                  wrap=lambda i, args: args, sched_wrap=lambda args: args,
                  contact=None, worker_env=None, tls: dict | None = None) -> str:
    """``dask scheduler`` and ``n_workers`` ``dask worker`` processes; returns the address.

    ``worker_env``: more environment variables for the workers.  ``tls`` (see
    :func:`make_certificates`): every process uses TLS with these files, as README says
    to start them.
    """
    port = free_port()
    address = f"{'tls' if tls else 'tcp'}://{contact or host}:{port}"
    tls_args, security = [], None
    if tls:
        from distributed.security import Security

        tls_args = ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"], "--tls-key",
                    tls["key"]]
        security = Security(tls_ca_file=str(tls["ca"]), tls_client_cert=str(tls["cert"]),
                            tls_client_key=str(tls["key"]), require_encryption=True)
    scheduler = procs.start(sched_wrap([*DASK_SCHEDULER, "--host", host, "--port", str(port),
                                        "--protocol", "tls" if tls else "tcp",
                                        "--no-dashboard", *map(str, tls_args)]))
    for i in range(n_workers):
        procs.start(wrap(i, [*DASK_WORKER, address, "--nthreads", "1", "--nworkers", "1",
                             "--no-dashboard", "--name", f"w{i}", *worker_args,
                             *map(str, tls_args)]),
                    env={**WORKER_ENV, **(worker_env or {})})
    wait_workers(address, n_workers, scheduler, security=security)
    return address


def make_certificates(folder: Path) -> dict:
    """A CA and one certificate it signed (for 127.0.0.1), with its key, as PEM files:
    ``{"ca": path, "cert": path, "key": path}``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def builder(subject: str, issuer: str, public_key):
        name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(public_key).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (builder("xpnet test CA", "xpnet test CA", ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (builder("xpnet test cluster", "xpnet test CA", key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths



# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory) -> dict:
    """The in-process run's results (``--workers 1``)."""
    out = tmp_path_factory.mktemp("ref") / "out"
    env = {k: v for k, v in os.environ.items() if k != "XPNET_WORKERS"}
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *QUICK, "--workers", "1",
                           "--data-dir", tiny_data, "--out", out], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = load(out)
    assert results["meta"]["executor"] == "in-process"
    return {"out": out, "results": results}


