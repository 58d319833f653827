"""Shared fixtures: the array namespaces every core test runs on, and the real data.

The namespace matrix follows scikit-learn's array-API tests: every core test is
parametrised over backends and runs on each one the machine has.  ``cpu`` (NumPy),
``strict`` (array_api_strict) and ``strict-device1`` (array_api_strict with its arrays
on ``Device("device1")``, which rejects host/device mixing as CuPy does) always run;
``cuda`` (CuPy) joins when ``XPNET_TEST_DEVICES`` names it, and then must work — the GPU
job sets ``XPNET_TEST_DEVICES=cpu,strict,cuda``, so a missing GPU there fails loudly
instead of skipping.
"""

from __future__ import annotations

import builtins
import importlib.util
import os
import sys

# The BLAS thread defaults (one thread unless the environment says otherwise) have one
# home, experiments/__init__.py; importing the package applies them, and that must happen
# before anything imports NumPy, so it comes first.
import experiments  # noqa: F401,I001

# CLI runs in tests train in-process unless a test asks for workers (tests of the Dask
# executor pass --workers or --scheduler, which win over this default).
os.environ.setdefault("XPNET_WORKERS", "1")
import atexit  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from xpnet.backend.devices import get_backend  # noqa: E402

# The data cache (xpnet.data.cache) of every test, and of the processes tests start, goes
# to a folder of this session, never to the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="xpnet-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

# A shell that starts pytest in the background without job control (`cmd &` in a script)
# makes it ignore SIGINT, and every process a test starts inherits that: the tests that
# interrupt a suite with SIGINT would wait for nothing.  Ctrl-C means stop, here as for users.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Matrix name -> get_backend flag (a test id cannot hold the flag's colon nicely).
FLAGS = {"strict-device1": "strict:device1", "torch-cuda": "torch:cuda",
         "torch-mps": "torch:mps"}
REQUIRED = ("cpu", "strict", "strict-device1", "torch")


def _test_devices() -> list[str]:
    names = os.environ.get("XPNET_TEST_DEVICES", ",".join(REQUIRED))
    devices = [d.strip() for d in names.split(",") if d.strip()]
    for required in REQUIRED:
        if required not in devices:
            devices.append(required)
    return devices


TEST_DEVICES = _test_devices()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def torch_or_skip():
    """The ``torch`` module; skips the test where PyTorch is missing, fails in CI."""
    reason = 'PyTorch is not installed; run pip install ".[torch]"'
    if in_ci() and importlib.util.find_spec("torch") is None:
        pytest.fail(f"{reason} (CI runs the torch backend: .ci/run installs it).")
    return pytest.importorskip("torch", reason=reason)


def block_import(monkeypatch, package: str) -> None:
    """Make ``import package`` (and its submodules) fail for this test, installed or not."""
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == package or name.startswith(f"{package}."):
            raise ImportError(f"No module named {package!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, package, raising=False)
    monkeypatch.setattr(builtins, "__import__", blocked)


def matrix_backend(name: str):
    """The backend a matrix entry names (``"strict-device1"`` -> ``strict:device1``).

    ``torch`` without PyTorch installed skips the test (fails in CI); any other backend
    that is named but unusable fails.
    """
    if name == "torch":
        torch_or_skip()
    return get_backend(FLAGS.get(name, name))


@pytest.fixture(params=TEST_DEVICES)
def backend(request):
    """Each backend of the namespace matrix."""
    return matrix_backend(request.param)


@pytest.fixture(params=[d for d in TEST_DEVICES if d != "strict"])
def fast_backend(request):
    """Backends for training tests: all but array_api_strict on the CPU device, whose
    numbers ``strict-device1`` checks too (the same namespace), device placement besides."""
    return matrix_backend(request.param)


#: Relative / absolute tolerances for comparing a backend's result with NumPy float64.
RTOL = {"float32": 2e-5, "float64": 1e-12}
ATOL = {"float32": 1e-5, "float64": 1e-12}


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Each floating dtype the core computes in (the test id says which)."""
    return request.param


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A learnable CIFAR-10 look-alike in the official format: 1,000 training images in
    five batches, 200 test images.  Shared by the CLI tests, which only read it."""
    from xpnet.data.synthetic import write_cifar_batches

    root = tmp_path_factory.mktemp("tiny-cifar")
    write_cifar_batches(root, n_per_batch=200, seed=1)
    return root


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """The folder holding ``cifar-10-batches-py`` from ``XPNET_DATA``.

    Skips on a developer machine without the data; fails in CI, where the data must be
    there.
    """
    root = os.environ.get("XPNET_DATA")
    if root and (Path(root) / "cifar-10-batches-py" / "test_batch").is_file():
        return Path(root)
    message = (f"CIFAR-10 not found under XPNET_DATA={root!r}; set XPNET_DATA to the folder "
               "holding cifar-10-batches-py")
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


#: The quick ``depth_bn`` cells a device other than NumPy must reproduce, in accuracy
#: points: float32 rounding differs between libraries and a deep net on the quick slice
#: amplifies it (the same seeds on NumPy 2.4.6 and 2.5.5 give 19.4 and 21.3 % for the
#: 9-layer BN net), so the exact comparison is tests/xpnet/backend/test_torch.py's.
DEPTH_BN_POINTS = {"3-layer": 1.0, "9-layer": 3.0}
QUICK_DEPTH_BN = ["--quick", "--only", "depth_bn", "--no-progress"]


def depth_bn_cells(results: dict) -> dict[str, float]:
    """Per ``depth_bn`` run, its report cell: the mean test accuracy over seeds, in %."""
    runs = results["studies"]["depth_bn"]["runs"]
    return {key: 100.0 * sum(rec["test_accuracy"]) / len(rec["test_accuracy"])
            for key, rec in runs.items()}


def assert_depth_bn_close(results: dict, expected: dict) -> None:
    """Each quick ``depth_bn`` cell within :data:`DEPTH_BN_POINTS` of ``expected``'s."""
    cells, ref = depth_bn_cells(results), depth_bn_cells(expected)
    assert set(cells) == set(ref) == {"3-layer-nobn", "3-layer-bn", "9-layer-nobn",
                                      "9-layer-bn"}
    for key, value in cells.items():
        allowed = DEPTH_BN_POINTS[key.rsplit("-", 1)[0]]
        assert abs(value - ref[key]) <= allowed, (key, value, ref[key])


@pytest.fixture(scope="session")
def quick_depth_bn_cpu(cifar_root, tmp_path_factory) -> dict:
    """``results.json`` of ``--quick --only depth_bn --device cpu`` on the real data, in
    this process: the reference other devices' quick runs are compared with."""
    import json

    from experiments.run import main

    out = tmp_path_factory.mktemp("depth-bn-cpu") / "out"
    assert main([*QUICK_DEPTH_BN, "--device", "cpu", "--workers", "1", "--data-dir",
                 str(cifar_root), "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


# Fixtures of the tests that start processes and clusters (see tests/processes.py).
from tests.processes import procs, reference  # noqa: E402,F401
