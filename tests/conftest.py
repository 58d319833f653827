"""Shared fixtures: the array namespaces every core test runs on, and the real data.

The namespace matrix follows scikit-learn's array-API tests: every core test is
parametrised over backends and runs on each one the machine has.  ``cpu`` (NumPy) and
``strict`` (array_api_strict) always run; ``cuda`` (CuPy) joins when
``XPNET_TEST_DEVICES`` names it, and then must work — the GPU job sets
``XPNET_TEST_DEVICES=cpu,strict,cuda``, so a missing GPU there fails loudly instead of
skipping.
"""

from __future__ import annotations

import os

# One BLAS thread unless the environment says otherwise, before NumPy loads: these
# matrices are small, and a multi-threaded BLAS on a busy 2-core machine was measured
# 40x slower (see experiments/__init__.py, which does the same for the CLI).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from xpnet.backend import get_backend  # noqa: E402


def _test_devices() -> list[str]:
    names = os.environ.get("XPNET_TEST_DEVICES", "cpu,strict")
    devices = [d.strip() for d in names.split(",") if d.strip()]
    for required in ("cpu", "strict"):
        if required not in devices:
            devices.append(required)
    return devices


TEST_DEVICES = _test_devices()


@pytest.fixture(params=TEST_DEVICES)
def backend(request):
    """Each backend of the namespace matrix."""
    return get_backend(request.param)


@pytest.fixture(params=[d for d in TEST_DEVICES if d != "strict"])
def fast_backend(request):
    """Backends fast enough for training tests (not array_api_strict)."""
    return get_backend(request.param)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


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
