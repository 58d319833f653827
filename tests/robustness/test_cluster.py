"""The suite on Dask clusters: same numbers on any cluster, and every fault handled.

Each CLI test runs ``python -m experiments.run`` in its own session (process group) on a
tiny generated dataset.  Clusters are real: a ``LocalCluster``-style cluster of worker
processes (``--workers 2``), or ``dask scheduler`` / ``dask worker`` processes over TCP on
127.0.0.1 (and, as root, in network namespaces joined by veth pairs).  Every process a
test starts is ended by its fixture, also when the test fails; ``no_leftovers`` checks
that nothing of a session survives.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from experiments.suite import executor
from experiments.suite.engine import stopped_line
from tests.conftest import QUICK_DEPTH_BN, assert_depth_bn_close
from tests.hold import hold_env

REPO = Path(__file__).resolve().parents[2]
STUDIES = "gradcheck,depth_bn,lambda_search"
QUICK = ["--quick", "--only", STUDIES, "--seeds", "2", "--no-progress"]
DASK_SCHEDULER = [sys.executable, "-c", "from distributed.cli.dask_scheduler import main; main()"]
DASK_WORKER = [sys.executable, "-c", "from distributed.cli.dask_worker import main; main()"]


# ------------------------------------------------------------------ helpers
def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


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


#: How README tells users to start `dask worker` (see experiments.suite.executor.WORKER_ENV).
WORKER_ENV = {f"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__{k}": v
              for k, v in executor.WORKER_ENV.items()}


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
    one_sentence(refused.stderr.strip().removeprefix("error: "), address, *executor.TLS_ENV)
    assert not out.exists()
    env = dict(zip(executor.TLS_ENV, map(str, (tls["ca"], tls["cert"], tls["key"])),
                   strict=True))
    proc = run_cli(procs, *QUICK, "--scheduler", address, "--data-dir", tiny_data,
                   "--out", out, env=env)
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
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "gradcheck/K3-bn-lam0.01" in errors[0] and "RecursionError" in errors[0]
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
    assert suite.returncode == 130, stderr
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
    assert suite.returncode == 130, stderr


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


# ------------------------------------------------------------ devices on workers
# Makes ``import cupy`` and ``import torch`` fail in the process it runs in, whether or not
# they are installed: a client machine without either.
NO_GPU_LIBRARIES = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cupy", "cupyx", "cupy_backends", "torch"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def run_cli_without_gpu_libraries(procs: Processes, *args) -> subprocess.CompletedProcess:
    """:func:`run_cli` in a client process where CuPy and PyTorch cannot be imported."""
    code = NO_GPU_LIBRARIES + textwrap.dedent(f"""
        import runpy
        sys.argv = ["experiments.run", *{[str(a) for a in args]!r}]
        runpy.run_module("experiments.run", run_name="__main__", alter_sys=True)
        """)
    proc = procs.start([sys.executable, "-c", code])
    out, err = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("device, cause", [("torch:cuda", "sees no CUDA GPU"),
                                           ("cuda", "CuPy")])
def test_a_worker_that_cannot_use_the_gpu_is_named(procs, tiny_data, tmp_path, device, cause,
                                                   one_sentence):
    """With --scheduler the workers are probed, not the client; the error names the one
    that cannot compute (here every worker: none sees a GPU)."""
    pytest.importorskip("torch") if device.startswith("torch") else None
    address = start_cluster(procs, 1, worker_env={"CUDA_VISIBLE_DEVICES": ""})
    out = tmp_path / "out"
    proc = run_cli(procs, "--quick", "--only", "overfit", "--seeds", "1", "--no-progress",
                   "--device", device, "--scheduler", address, "--data-dir", tiny_data,
                   "--out", out, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Worker w0 (tcp://127.0.0.1:"), \
        proc.stderr
    one_sentence(lines[0], "cannot train", cause)
    assert not out.exists()


def test_a_client_without_cupy_or_torch_sends_runs_to_a_cluster(procs, tiny_data, tmp_path):
    """The client plans and stores: --device cpu needs neither library on it, and nor
    does --device torch, which only the workers compute with."""
    address = start_cluster(procs, 1)
    out = tmp_path / "cpu"
    proc = run_cli_without_gpu_libraries(procs, "--quick", "--only", "overfit", "--seeds", 1,
                                         "--no-progress", "--device", "cpu", "--scheduler",
                                         address, "--data-dir", tiny_data, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert load(out)["meta"]["device"].startswith("cpu (")
    if importlib.util.find_spec("torch") is None:  # the workers (this machine) lack it too
        return
    out = tmp_path / "torch"
    proc = run_cli_without_gpu_libraries(procs, "--quick", "--only", "overfit", "--seeds", 1,
                                         "--no-progress", "--device", "torch", "--scheduler",
                                         address, "--data-dir", tiny_data, "--out", out)
    assert proc.returncode == 0, proc.stderr
    meta = load(out)["meta"]
    assert meta["device"].startswith("torch (") and "torch" in meta["versions"]


@pytest.mark.cifar
@pytest.mark.slow
def test_torch_on_two_local_workers_is_close_to_cpu(procs, cifar_root, quick_depth_bn_cpu,
                                                    tmp_path):
    out = tmp_path / "out"
    proc = run_cli(procs, *QUICK_DEPTH_BN, "--device", "torch", "--workers", 2,
                   "--data-dir", cifar_root, "--out", out)
    assert proc.returncode == 0, proc.stderr
    results = load(out)
    assert results["meta"]["executor"] == "local cluster, 2 CPU workers"
    assert results["meta"]["device"].startswith("torch (")
    assert_depth_bn_close(results, quick_depth_bn_cpu)


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
