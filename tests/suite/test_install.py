"""A newcomer's install: ``pip install .`` then the suite's commands from any folder.

One fresh virtual environment per session (it sees the system's packages, so only
xpnet itself is installed: ``--no-deps``), built from a clean copy of the checkout so
that neither a stale ``build/`` folder nor the checkout on ``sys.path`` can stand in for
what the wheel holds.  Every command then runs from a folder outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xpnet.testing import write_cifar_batches

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


@pytest.fixture(scope="session")
def venv(tmp_path_factory) -> Path:
    """A virtual environment with ``pip install .`` of a clean copy of this checkout."""
    root = tmp_path_factory.mktemp("newcomer")
    source = root / "xpnet-src"
    _copy_checkout(source)
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "--no-deps", "--quiet", str(source)],
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


@pytest.mark.parametrize("command", [
    ["python", "-m", "experiments.run", "--list"],
    ["python", "-m", "experiments.bench", "--help"],
    ["xpnet-run", "--list"],
    ["xpnet-bench", "--help"],
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
