"""The wheels ci/gpu-lease installs offline cover pyproject.toml's dependencies."""

from __future__ import annotations

import zipfile

import pytest
from packaging.requirements import Requirement

from tests.ci.helpers import CI, ci_module

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11's")
wheels = ci_module("gpu_wheels")

#: Extras the lease machine does not use: its driver is CUDA 13's, and the manual is built
#: by the CPU job (.ci/run), not on the GPU.
NOT_ON_THE_LEASE = {"cuda12", "docs"}


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((CI.parent / "pyproject.toml").read_text(encoding="utf-8"))
    project = project["project"]
    reqs = list(project["dependencies"])
    for extra, deps in project.get("optional-dependencies", {}).items():
        if extra not in NOT_ON_THE_LEASE:
            reqs += deps
    return [Requirement(r) for r in reqs]


def test_every_dependency_is_fetched_or_on_the_gpu_image_with_a_version_that_fits():
    pinned, image = wheels.read_list(wheels.WHEELS_LIST), wheels.read_list(wheels.IMAGE_LIST)
    assert not set(pinned) & set(image), "a package in both lists"
    for req in _pyproject_requirements():
        name = wheels.canonical(req.name)
        assert name in pinned or name in image, f"{req} is in neither ci/gpu-wheels.txt " \
                                                "nor ci/gpu-image.txt"
        known = pinned.get(name) or image[name]
        version = wheels.pinned_version(known)
        if name in pinned:
            assert version is not None, f"ci/gpu-wheels.txt must pin {name} (name==version)"
        if version is not None:
            assert req.specifier.contains(version, prereleases=True), \
                f"pyproject.toml asks {req}; the GPU machine gets {name} {version}"


def test_the_lease_and_the_fetch_use_the_list():
    assert "-r ci/gpu-wheels.txt" in (CI / "fetch-gpu-wheels").read_text()
    lease = (CI / "gpu-lease").read_text()
    assert "--no-index" in lease and "-r ci/gpu-wheels.txt" in lease
    assert "/ci/wheels/" in (CI.parent / ".gitignore").read_text().splitlines()


def _fake_wheel(folder, name, version, *requires):
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    metadata = "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA",
                   f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{metadata}")


def test_the_wheel_check_finds_missing_stray_and_unmet_wheels(tmp_path):
    pinned = wheels.read_list(wheels.WHEELS_LIST)
    for name, req in pinned.items():
        _fake_wheel(tmp_path, name, wheels.pinned_version(req), "numpy>=1",
                    'importlib-metadata; python_version < "3.12"', "pytest; extra == 'test'")
    assert wheels.check(tmp_path) == []  # markers are the GPU machine's: nothing missing
    _fake_wheel(tmp_path, "stray", "1.0", "no-such-package>=2", "tornado>=99")
    next(tmp_path.glob("array_api_compat-*.whl")).unlink()
    problems = wheels.check(tmp_path)
    assert any("stray-1.0-py3-none-any.whl needs tornado>=99, ci/gpu-wheels.txt pins" in p
               for p in problems)
    assert any(p.startswith("array-api-compat==") and "no wheel" in p for p in problems)
    assert any("stray: a wheel" in p for p in problems)
    assert any("needs no-such-package>=2, in neither" in p for p in problems)
