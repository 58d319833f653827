"""Devices (issue item 9): ``--device cuda`` without CuPy, with a broken CuPy, or with CuPy
and no GPU ends in one sentence saying what to install or use -- for the study suite and
for the bench, before anything is loaded or written.

Each case runs the real entry point in a subprocess through a small ``-c`` wrapper that
first shapes what ``import cupy`` finds: nothing (a meta-path finder refuses it, whether
or not CuPy is installed here), a module whose import fails, or a fake CuPy whose CUDA
runtime reports no device.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

NO_CUPY = """
class _NoCupy:
    def find_spec(self, name, path=None, target=None):
        if name == "cupy" or name.startswith(("cupy.", "cupy_backends", "cupyx")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
for _name in [n for n in sys.modules if n == "cupy" or n.startswith("cupy.")]:
    del sys.modules[_name]
sys.meta_path.insert(0, _NoCupy())
"""

# A fake CuPy whose runtime behaves as on a machine without a GPU or driver.
FAKE_CUPY = """
import types
class CUDARuntimeError(RuntimeError):
    pass
def _count():
    {count}
_runtime = types.SimpleNamespace(getDeviceCount=_count)
_cupy = types.ModuleType("cupy")
_cupy.__version__ = "13.0.0"
_cupy.cuda = types.SimpleNamespace(runtime=_runtime, Device=lambda *a: None) if {has_cuda} else None
if not {has_cuda}:
    del _cupy.cuda
sys.modules["cupy"] = _cupy
"""

# CuPy present but its import blows up (say libcudart or the driver library is missing).
BROKEN_CUPY = """
class _BrokenCupy:
    def find_spec(self, name, path=None, target=None):
        if name == "cupy":
            raise {error}
        return None
sys.modules.pop("cupy", None)
sys.meta_path.insert(0, _BrokenCupy())
"""

NO_DEVICE = 'raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")'
OLD_DRIVER = ('raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is '
              'insufficient for CUDA runtime version")')

SETUPS = {
    "no-cupy": NO_CUPY,
    "no-device": FAKE_CUPY.format(count=NO_DEVICE, has_cuda=True),
    "old-driver": FAKE_CUPY.format(count=OLD_DRIVER, has_cuda=True),
    "zero-devices": FAKE_CUPY.format(count="return 0", has_cuda=True),
    "cupy-without-cuda": FAKE_CUPY.format(count="return 1", has_cuda=False),
    "cupy-import-oserror": BROKEN_CUPY.format(
        error='OSError("libcudart.so.12: cannot open shared object file")'),
    "cupy-import-runtimeerror": BROKEN_CUPY.format(
        error='RuntimeError("CUDA environment is not correctly set up")'),
}

INSTALL = 'pip install "xpnet[cuda12]"'
NO_GPU = "no usable NVIDIA GPU"
BROKEN = "failed to import"
EXPECTED = {
    "no-cupy": (INSTALL, "--device cpu"),
    "no-device": (NO_GPU, "--device cpu"),
    "old-driver": (NO_GPU, "--device cpu"),
    "zero-devices": (NO_GPU, "--device cpu"),
    "cupy-without-cuda": (NO_GPU, "--device cpu"),
    "cupy-import-oserror": (BROKEN, "xpnet[cuda12]", "--device cpu"),
    "cupy-import-runtimeerror": (BROKEN, "xpnet[cuda12]", "--device cpu"),
}


def run_with(setup: str, module: str, *args: str) -> subprocess.CompletedProcess:
    code = "import runpy, sys\n" + textwrap.dedent(setup) + textwrap.dedent(f"""
        sys.argv = [{module!r}, *{list(args)!r}]
        runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("case", list(SETUPS))
def test_suite_with_cuda_unusable_says_what_to_do(case, tmp_path, one_sentence):
    out = tmp_path / "out"
    data = tmp_path / "data"  # never reached: the device is checked first
    proc = run_with(SETUPS[case], "experiments.run", "--device", "cuda", "--quick",
                    "--no-progress", "--data-dir", str(data), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    err = proc.stderr.strip()
    assert err.startswith("error: ")
    one_sentence(err, *EXPECTED[case])
    assert not out.exists()  # nothing written before the device was vetted


@pytest.mark.parametrize("case", ["no-cupy", "no-device", "cupy-import-oserror"])
def test_bench_with_cuda_unusable_says_what_to_do(case, tmp_path, one_sentence):
    report = tmp_path / "bench.json"
    proc = run_with(SETUPS[case], "experiments.bench", "--device", "cuda", "--n-samples", "200",
                    "--no-torch", "--json", str(report))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    err = proc.stderr.strip()
    assert err.startswith("bench: ")
    one_sentence(err, *EXPECTED[case])
    assert not report.exists()


def test_blocked_cupy_is_really_absent():
    """The wrapper works: CuPy cannot be imported under it even where it is installed."""
    proc = run_with(NO_CUPY + "\nimport cupy\n", "json.tool", "--help")
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr
