"""Devices are the workers' business: a worker that cannot use the GPU is named, a client
without CuPy or PyTorch still sends runs to a cluster, and torch workers match the CPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import QUICK_DEPTH_BN, assert_depth_bn_close, torch_or_skip
from tests.processes import (
    Processes,
    load,
    run_cli,
    start_cluster,
)

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
    torch_or_skip()
    out = tmp_path / "out"
    proc = run_cli(procs, *QUICK_DEPTH_BN, "--device", "torch", "--workers", 2,
                   "--data-dir", cifar_root, "--out", out)
    assert proc.returncode == 0, proc.stderr
    results = load(out)
    assert results["meta"]["executor"] == "local cluster, 2 CPU workers"
    assert results["meta"]["device"].startswith("torch (")
    assert_depth_bn_close(results, quick_depth_bn_cpu)


