"""Devices (issue item 9): ``--device cuda`` without CuPy, with a broken CuPy, with CuPy
and no GPU, or with a GPU but not the CUDA libraries CuPy 14 loads lazily (cuBLAS, NVRTC)
ends in one sentence saying what to install or use -- for the study suite and for the
bench, before anything is loaded or written.

Each case runs the real entry point in a subprocess through a small ``-c`` wrapper that
first shapes what ``import cupy`` finds: nothing (a meta-path finder refuses it, whether
or not CuPy is installed here), a module whose import fails, or a fake CuPy whose CUDA
runtime reports no device or whose first matmul, elementwise kernel or reduction fails
as CuPy 14 does without its ``ctk`` libraries.  The same fake, put in ``sys.modules``
in-process, checks the backend's probe error by error.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from xpnet.backend.devices import get_backend
from xpnet.errors import BackendError

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

# A fake CuPy: its runtime reports {count}; with CUDA, the probe's calls run on NumPy
# arrays except the one named fail_at, which raises {error} (CuPy 14 loads cuBLAS and
# NVRTC at the first call that needs them).
FAKE_CUPY = """
import types
import numpy as _np
class CUDARuntimeError(RuntimeError):
    pass
class DynamicLibNotFoundError(RuntimeError):  # cuda.pathfinder's, with its long listing
    pass
def _count():
    {count}
def _op(name, real):
    def op(*args, **kwargs):
        if name == {fail_at!r}:
            raise {error}
        return real(*args, **kwargs)
    return op
_runtime = types.SimpleNamespace(getDeviceCount=_count)
_cupy = types.ModuleType("cupy")
_cupy.__version__ = "14.2.0"
_cupy.float32 = _np.float32
for _name, _real in [("ones", _np.ones), ("matmul", _np.matmul), ("maximum", _np.maximum),
                     ("sum", _np.sum)]:
    setattr(_cupy, _name, _op(_name, _real))
_cupy.cuda = (types.SimpleNamespace(runtime=_runtime, Device=lambda *a: "gpu0")
              if {has_cuda} else None)
if not {has_cuda}:
    del _cupy.cuda
sys.modules["cupy"] = _cupy
"""


def fake_cupy(count: str = "return 1", has_cuda: bool = True, fail_at: str = "",
              error: str = "None") -> str:
    return FAKE_CUPY.format(count=count, has_cuda=has_cuda, fail_at=fail_at, error=error)


# How CuPy 14 fails on a machine with a driver but without CUDA libraries, call by call.
NO_CUBLAS = 'ImportError("libcublasLt.so.12: cannot open shared object file: No such file")'
NO_NVRTC = ('DynamicLibNotFoundError("Failure finding libnvrtc.so: No such file\\n'
            'Searched: /usr/local/cuda/lib64. /usr/lib/x86_64-linux-gnu")')
NO_KERNEL_IMAGE = ('CUDARuntimeError("cudaErrorNoKernelImageForDevice: no kernel image is '
                   'available for execution on the device")')
PROBE_FAILURES = {
    "no-cublas": ("matmul", NO_CUBLAS),
    "no-nvrtc": ("maximum", NO_NVRTC),
    "reduction-fails": ("sum", NO_KERNEL_IMAGE),
}

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
    "no-device": fake_cupy(count=NO_DEVICE),
    "old-driver": fake_cupy(count=OLD_DRIVER),
    "zero-devices": fake_cupy(count="return 0"),
    "cupy-without-cuda": fake_cupy(has_cuda=False),
    **{case: fake_cupy(fail_at=at, error=error) for case, (at, error) in PROBE_FAILURES.items()},
    "cupy-import-oserror": BROKEN_CUPY.format(
        error='OSError("libcudart.so.12: cannot open shared object file")'),
    "cupy-import-runtimeerror": BROKEN_CUPY.format(
        error='RuntimeError("CUDA environment is not correctly set up")'),
}

INSTALL = 'pip install "xpnet[cuda12]"'
NO_GPU = "no usable NVIDIA GPU"
BROKEN = "failed to import"
NO_LIBS = "cannot compute on it"
EXPECTED = {
    "no-cupy": (INSTALL, "--device cpu"),
    "no-device": (NO_GPU, "--device cpu"),
    "old-driver": (NO_GPU, "--device cpu"),
    "zero-devices": (NO_GPU, "--device cpu"),
    "cupy-without-cuda": (NO_GPU, "--device cpu"),
    "cupy-import-oserror": (BROKEN, "xpnet[cuda12]", "--device cpu"),
    "cupy-import-runtimeerror": (BROKEN, "xpnet[cuda12]", "--device cpu"),
    **{case: (NO_LIBS, INSTALL, "xpnet[cuda13]", "CUDA libraries", "--device cpu")
       for case in PROBE_FAILURES},
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


def _install_fake_cupy(monkeypatch, **kwargs) -> types.ModuleType:
    """Put the subprocess tests' fake CuPy into this process's ``sys.modules``."""
    namespace = {"sys": types.SimpleNamespace(modules={})}
    exec(fake_cupy(**kwargs), namespace)
    fake = namespace["sys"].modules["cupy"]
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


@pytest.mark.parametrize("case", list(PROBE_FAILURES))
def test_cuda_probe_turns_missing_libraries_into_one_sentence(case, monkeypatch, one_sentence):
    """A GPU is there, the first matmul / kernel / reduction fails: say what to install."""
    at, error = PROBE_FAILURES[case]
    _install_fake_cupy(monkeypatch, fail_at=at, error=error)
    with pytest.raises(BackendError) as err:
        get_backend("cuda")
    message = one_sentence(str(err.value), *EXPECTED[case])
    expected_type = error.split("(")[0]
    assert f"({expected_type}: " in message  # the cause, first line only


def test_cuda_probe_catches_a_wrong_result(monkeypatch, one_sentence):
    import numpy as np

    _install_fake_cupy(monkeypatch).matmul = lambda a, b: np.zeros_like(a)
    with pytest.raises(BackendError) as err:
        get_backend("cuda")
    one_sentence(str(err.value), NO_LIBS, INSTALL)


def test_cuda_backend_after_a_passing_probe(monkeypatch):
    """With every probe call working, the backend is CuPy's array-API namespace."""
    import array_api_compat

    calls = []
    fake = _install_fake_cupy(monkeypatch)
    for name in ("matmul", "maximum", "sum"):
        real = getattr(fake, name)
        monkeypatch.setattr(fake, name, lambda *a, _real=real, _name=name, **k:
                            calls.append(_name) or _real(*a, **k))
    stub = types.ModuleType("array_api_compat.cupy")
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", stub)
    monkeypatch.setattr(array_api_compat, "cupy", stub, raising=False)
    backend = get_backend("cuda")
    assert (backend.name, backend.xp, backend.device) == ("cuda", stub, "gpu0")
    assert calls == ["matmul", "maximum", "sum"]
