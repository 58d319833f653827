"""A newcomer's install: ``pip install .`` then the suite's commands from any folder.

One fresh virtual environment per session, built from a clean copy of the checkout so
that neither a stale ``build/`` folder nor the checkout on ``sys.path`` can stand in for
what the wheel holds.  Every command then runs from a folder outside the checkout.

The environment sees exactly the packages of the environment running the tests (a venv,
a conda env or a bare interpreter) and nothing more, so only xpnet itself is installed
(``--no-deps``): it is a venv without the system's site-packages whose one ``.pth`` file
adds the running interpreter's site directories, as that interpreter sees them.  (A venv
``--system-site-packages`` would see the *base* interpreter's packages instead: on a clean
machine, where the tests run in a venv, those lack matplotlib; where the base has them,
they are other files than the ones the tests run with.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from xpnet.data.synthetic import write_cifar_batches

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _copy_checkout(dest: Path) -> None:
    """The files git tracks or would track (not ignored ones: no build/, no egg-info)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                                cwd=REPO, capture_output=True, check=True).stdout
        names = [n for n in listed.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", ".*", "runs"))
        return
    for name in names:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)


def _clean_env() -> dict:
    """The environment without anything that points Python or the data at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "XPNET_DATA", "PYTHONHOME")}
    env["XPNET_WORKERS"] = "1"
    return env


def _can_build_here() -> bool:
    """Whether the running environment has pyproject's build backend: setuptools >= 68
    and a ``bdist_wheel`` (setuptools' own from 70.1, else the ``wheel`` package)."""
    try:
        version = tuple(int(p) for p in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return version >= (70, 1) or (version >= (68, 0)
                                  and importlib.util.find_spec("wheel") is not None)


def running_site_dirs() -> list[str]:
    """The site directories of the interpreter running the tests, as it sees them: its
    site-packages (a venv's own, plus the base's only if the venv includes them) and the
    user's site-packages if it reads that."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if d in sys.path and os.path.isdir(d)]


@pytest.fixture(scope="session")
def venv(tmp_path_factory) -> Path:
    """A virtual environment with ``pip install .`` of a clean copy of this checkout that
    sees the running environment's packages (see the module's docstring)."""
    root = tmp_path_factory.mktemp("newcomer")
    source = root / "xpnet-src"
    _copy_checkout(source)
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                              "'purelib'))"], capture_output=True, text=True, check=True,
                             env=_clean_env()).stdout.strip()
    # addsitedir, not a bare path per line: .pth files in those folders apply too.
    (Path(purelib) / "running-environment.pth").write_text(
        f"import site; list(map(site.addsitedir, {running_site_dirs()!r}))\n")
    # No pip cache (the home folder may be read-only); and where the running environment
    # can build xpnet itself (pyproject's build requirements), which the new one sees, no
    # isolated build environment: fetching them would make the test need the network.
    isolation = ["--no-build-isolation"] if _can_build_here() else []
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "--no-deps", "--ignore-installed", "--no-cache-dir", *isolation,
                           "--quiet", str(source)],
                          capture_output=True, text=True, env=_clean_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return env_dir


def _run(args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          env=_clean_env(), timeout=timeout)


def test_installed_packages_come_from_the_environment(venv, tmp_path):
    done = _run([venv / "bin" / "python", "-c",
                 "import experiments, xpnet; print(experiments.__file__); print(xpnet.__file__)"],
                tmp_path)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        assert Path(line).is_relative_to(venv), line  # not the checkout's copy


PROBE = ("import json, sys, matplotlib, array_api_compat, distributed; "
         "print(json.dumps({'files': [m.__file__ for m in (matplotlib, array_api_compat, "
         "distributed)], 'path': sys.path}))")


def test_the_environment_sees_the_running_environments_packages_and_no_others(venv, tmp_path):
    done = _run([venv / "bin" / "python", "-c", PROBE], tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    here = json.loads(subprocess.run([sys.executable, "-c", PROBE], capture_output=True,
                                     text=True, check=True, cwd=tmp_path).stdout)
    # The same files, not merely the same names: a base interpreter's own matplotlib
    # would import too, from another folder.
    assert [os.path.realpath(f) for f in seen["files"]] == \
        [os.path.realpath(f) for f in here["files"]]
    # Nothing on its path that the running interpreter does not have, but its own folder.
    running = {os.path.realpath(p) for p in sys.path + here["path"]}
    extra = [p for p in seen["path"] if p and os.path.realpath(p) not in running
             and not Path(os.path.realpath(p)).is_relative_to(os.path.realpath(venv))]
    assert not extra, f"the test environment sees more than the running one: {extra}"


@pytest.mark.parametrize("command", [
    ["python", "-m", "experiments.run", "--list"],
    ["python", "-m", "experiments.bench", "--help"],
    ["xpnet-run", "--list"],
    ["xpnet-bench", "--help"],
    ["python", "-m", "experiments.results", "--help"],
    ["xpnet-results", "--help"],
])
def test_commands_work_outside_the_checkout(venv, tmp_path, command):
    done = _run([venv / "bin" / command[0], *command[1:]], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    if "--list" in command:
        assert "gradcheck" in done.stdout and "depth_bn" in done.stdout
    else:
        assert "usage:" in done.stdout


def test_relative_data_dir_means_the_users_folder(venv, tmp_path):
    write_cifar_batches(tmp_path / "data", n_per_batch=120, seed=1)  # --quick: 500 val
    cwd = tmp_path / "work"
    cwd.mkdir()
    done = _run([venv / "bin" / "xpnet-run", "--quick", "--only", "overfit", "--seeds", "1",
                 "--workers", "1", "--no-progress", "--data-dir", "../data", "--out", "out"],
                cwd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (cwd / "out" / "report.md").is_file()
    assert (cwd / "out" / "figures" / "overfit_accuracy.png").is_file()
