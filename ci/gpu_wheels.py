"""The wheels ci/gpu-lease installs offline: the lists, and a check of downloaded wheels.

``ci/gpu-wheels.txt`` pins the packages the GPU machine's image lacks (one ``name==version``
a line); ``ci/gpu-image.txt`` names what the lease does not install (the image has it, or
the lease does not use it).  ``python3 ci/gpu_wheels.py check DIR`` checks the wheels in
DIR (ci/fetch-gpu-wheels runs it): one wheel per pinned line, of that version, and every
requirement of every wheel (on the GPU machine's Python and platform) pinned or named in
the image list, since the lease installs with ``--no-deps``; ``python3 ci/gpu_wheels.py
python`` prints the GPU machine's Python version (``XPNET_GPU_PYTHON`` overrides it).
tests/ci/test_gpu_wheels.py checks the lists against pyproject.toml.
"""

from __future__ import annotations

import os
import re
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare Python with pip: pip's own copy
    from pip._vendor.packaging.requirements import Requirement

CI = Path(__file__).resolve().parent
WHEELS_LIST = CI / "gpu-wheels.txt"
IMAGE_LIST = CI / "gpu-image.txt"
#: The GPU machine's interpreter (its image has Python 3.12.3) and platform, for the
#: wheels' tags (ci/fetch-gpu-wheels asks here) and environment markers.
GPU_PYTHON = os.environ.get("XPNET_GPU_PYTHON", "3.12")
GPU_ENVIRONMENT = {"python_version": GPU_PYTHON, "python_full_version": f"{GPU_PYTHON}.0",
                   "sys_platform": "linux", "platform_system": "Linux",
                   "platform_machine": "x86_64", "os_name": "posix",
                   "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "extra": ""}


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_list(path: Path) -> dict[str, Requirement]:
    """``canonical name -> Requirement`` of a list file (``#`` starts a comment)."""
    reqs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            reqs[canonical(req.name)] = req
    return reqs


def pinned_version(req: Requirement) -> str | None:
    """The version of a ``name==version`` requirement, else None."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator == "==":
        return specs[0].version
    return None


def _wheel_name_version(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return canonical(name), version


def _requires(path: Path) -> list[Requirement]:
    with zipfile.ZipFile(path) as wheel:
        meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        text = wheel.read(meta).decode("utf-8", errors="replace")
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
            if line.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(GPU_ENVIRONMENT)]


def check(folder: Path) -> list[str]:
    """What is wrong with the wheels in ``folder`` (an empty list: nothing)."""
    pinned, image = read_list(WHEELS_LIST), read_list(IMAGE_LIST)
    wheels = sorted(folder.glob("*.whl"))
    found: dict[str, list[str]] = {}
    for path in wheels:
        name, version = _wheel_name_version(path)
        found.setdefault(name, []).append(version)
    problems = []
    for name, req in pinned.items():
        versions = found.get(name, [])
        if versions != [pinned_version(req)]:
            problems.append(f"{req}: found {versions or 'no wheel'} in {folder}")
    for name in sorted(set(found) - set(pinned)):
        problems.append(f"{name}: a wheel in {folder} that ci/gpu-wheels.txt does not pin")
    for path in wheels:
        for req in _requires(path):
            name = canonical(req.name)
            if name in pinned:
                version = pinned_version(pinned[name])
                if version not in req.specifier:
                    problems.append(f"{path.name} needs {req}, ci/gpu-wheels.txt pins {version}")
            elif name not in image:
                problems.append(f"{path.name} needs {req}, in neither ci/gpu-wheels.txt nor "
                                "ci/gpu-image.txt")
    return problems


def main(argv: list[str]) -> int:
    if argv == ["python"]:
        print(GPU_PYTHON)
        return 0
    if len(argv) != 2 or argv[0] != "check":
        print("usage: python3 ci/gpu_wheels.py check DIR | python", file=sys.stderr)
        return 2
    problems = check(Path(argv[1]))
    for line in problems:
        print(f"gpu_wheels: {line}", file=sys.stderr)
    if not problems:
        print(f"gpu_wheels: {len(read_list(WHEELS_LIST))} wheels in {argv[1]}, one per pinned "
              "line, every requirement pinned or on the GPU image")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
