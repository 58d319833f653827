"""One writer per output folder: a second invocation on a folder in use is refused in one
sentence, having written nothing, and a SIGKILLed holder leaves no lock behind.

The invocations are real processes (:mod:`tests.processes`, every one ended by the
``procs`` fixture).  The holder cannot finish first: its study file trains one run and
then waits for a file that the test creates only once it has seen what it came to see,
or its first run waits an hour (:mod:`tests.hold`).  Deleting or replacing the lock file
does not free the folder: the lock is on the folder itself.
"""

from __future__ import annotations

import os
import sys

import pytest

from experiments.suite.folder_lock import LOCK_NAME, FolderInUse, FolderLock
from tests.hold import held, hold_env
from tests.processes import kill_session, load, run_cli, wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: no folder lock")

BLOCKER = '''\
"""Trains one run, then waits until the file $XPNET_TEST_GO exists."""
import os
import time
from pathlib import Path

NAME = "blocker"


def run(ctx):
    record = ctx.submit_train("first", hidden=(10,), seeds=0).result()
    go = Path(os.environ["XPNET_TEST_GO"])
    while not go.exists():
        time.sleep(0.05)
    return {"summary": f"test accuracy {record['test_accuracy'][0]:.2f}"}
'''


@pytest.fixture
def blocker(tmp_path):
    """``(args, env, go)``: an in-process suite of the blocking study, and the file that
    lets it finish."""
    study = tmp_path / "blocker.py"
    study.write_text(BLOCKER)
    go = tmp_path / "go"
    args = ["--quick", "--no-progress", "--workers", "1", "--study", study]
    return args, {"XPNET_TEST_GO": str(go)}, go


def start(procs, args, env, out):
    return procs.start([sys.executable, "-m", "experiments.run", *map(str, args),
                        "--out", str(out)], env=env)


def holds_lock(out, proc) -> bool:
    try:
        return f"pid {proc.pid}\n" in (out / LOCK_NAME).read_text()
    except OSError:
        return False


def first_run_stored(out) -> bool:
    try:
        return "first" in load(out)["studies"]["blocker"]["runs"]
    except (OSError, ValueError, KeyError):
        return False


def snapshot(folder):
    """Every file under ``folder`` with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_second_invocation_is_refused_in_one_sentence_and_writes_nothing(
        procs, tiny_data, tmp_path, blocker):
    args, env, go = blocker
    out = tmp_path / "out"
    holder = start(procs, [*args, "--data-dir", tiny_data], env, out)
    wait_for(lambda: holds_lock(out, holder) and first_run_stored(out), 120,
             "the holder's first run", holder)
    before = snapshot(out)  # the holder writes nothing more until it may go on

    second = run_cli(procs, "--quick", "--no-progress", "--workers", 1, "--only", "depth_bn",
                     "--data-dir", tiny_data, "--out", out, timeout=60)

    assert second.returncode == 2, second.stderr
    assert second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(f"error: The output folder {out} is in use by process "
                               f"{holder.pid} ("), lines[0]
    assert "experiments.run" in lines[0] and "blocker.py" in lines[0]  # its command line
    assert lines[0].endswith("; wait until it finishes, or pass another --out.")
    assert snapshot(out) == before

    go.touch()
    stdout, stderr = holder.communicate(timeout=120)
    assert holder.returncode == 0, stderr
    studies = load(out)["studies"]
    assert list(studies) == ["blocker"] and studies["blocker"]["status"] == "done"
    assert not (out / LOCK_NAME).exists()  # the holder removed it as it ended
    # The folder is free again: the second invocation's study runs now.
    again = run_cli(procs, "--quick", "--no-progress", "--workers", 1, "--only", "gradcheck",
                    "--data-dir", tiny_data, "--out", out)
    assert again.returncode == 0, again.stderr
    assert set(load(out)["studies"]) == {"blocker", "gradcheck"}


def test_two_invocations_started_together_one_is_refused(procs, tiny_data, tmp_path, blocker):
    """Neither can finish before the test lets it: the one that got the lock waits, so the
    other is the one that ends, refused, naming it."""
    args, env, go = blocker
    out = tmp_path / "out"  # neither exists yet: both create it
    both = [start(procs, [*args, "--data-dir", tiny_data], env, out) for _ in range(2)]
    ended = wait_for(lambda: [p for p in both if p.poll() is not None], 120,
                     "one of the two to be refused")
    assert len(ended) == 1
    refused = ended[0]
    holder = next(p for p in both if p is not refused)
    stdout, stderr = refused.communicate()
    assert refused.returncode == 2, stderr
    assert stderr.startswith(f"error: The output folder {out} is in use by process "
                             f"{holder.pid} ("), stderr
    assert len(stderr.splitlines()) == 1

    go.touch()
    _, stderr = holder.communicate(timeout=120)
    assert holder.returncode == 0, stderr
    blocker_entry = load(out)["studies"]["blocker"]
    assert blocker_entry["status"] == "done" and set(blocker_entry["runs"]) == {"first"}


def test_after_a_sigkill_of_the_holder_the_next_invocation_resumes(procs, tiny_data, tmp_path,
                                                                  blocker):
    args, env, go = blocker
    out = tmp_path / "out"
    holder = start(procs, [*args, "--data-dir", tiny_data], env, out)
    wait_for(lambda: holds_lock(out, holder) and first_run_stored(out), 120,
             "the holder's first run", holder)
    kill_session(holder.pid)  # SIGKILL: no chance to remove the lock file
    holder.communicate(timeout=30)
    assert (out / LOCK_NAME).exists()  # left behind, but no longer locked

    go.touch()
    again = run_cli(procs, *args, "--data-dir", tiny_data, "--out", out, env=env)
    assert again.returncode == 0, again.stderr
    assert "blocker: 1 run (0 trained, 1 reused)" in again.stdout
    assert not (out / LOCK_NAME).exists()


def _delete(lock):
    lock.unlink()


def _replace_with(text):
    def replace(lock):
        other = lock.with_name("other")
        other.write_text(text)
        os.replace(other, lock)  # a new file (inode) under the lock's name
    return replace


SIDESTEPS = [
    pytest.param(_delete, id="deleted"),
    pytest.param(_replace_with(""), id="replaced-by-an-empty-file"),
    pytest.param(_replace_with("pid 1\ncommand someone else\n"), id="replaced-naming-another"),
]


@pytest.mark.parametrize("sidestep", SIDESTEPS)
def test_deleting_or_replacing_the_lock_file_does_not_free_the_folder(
        procs, tiny_data, tmp_path, one_sentence, sidestep):
    """The lock is on the folder itself: a new file under the lock's name is not a new
    lock.  The holder waits in its first run (tests.hold) from before the test looks."""
    out, hold = tmp_path / "out", tmp_path / "hold"
    holder = start(procs, ["--quick", "--only", "depth_bn", "--seeds", 1, "--no-progress",
                           "--workers", 1, "--data-dir", tiny_data],
                   hold_env(hold, "depth_bn/3-layer-nobn"), out)
    wait_for(lambda: holds_lock(out, holder) and held(hold), 120, "the holder's first run",
             holder)
    sidestep(out / LOCK_NAME)
    before = snapshot(out)

    second = run_cli(procs, "--quick", "--no-progress", "--workers", 1, "--only", "overfit",
                     "--seeds", 1, "--data-dir", tiny_data, "--out", out, timeout=120)

    assert second.returncode == 2, second.stdout + second.stderr
    assert second.stdout == "" and len(second.stderr.splitlines()) == 1, second.stderr
    line = second.stderr.strip()
    assert line.startswith(f"error: The output folder {out} is in use by process "
                           f"{holder.pid} ("), line
    assert "experiments.run" in line and "depth_bn" in line  # its command line
    one_sentence(line.removeprefix("error: "), "wait until it finishes, or pass another --out")
    assert snapshot(out) == before
    assert holder.poll() is None  # still held in its first run


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="the kernel's lock table is Linux's")
def test_a_holder_that_has_not_written_its_pid_yet_is_named_by_the_kernel(tmp_path):
    """Between taking the lock and writing its pid the holder's file is empty: the refusal
    then names it from /proc/locks (two invocations started together hit that window)."""
    import fcntl

    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked, nothing written
        with pytest.raises(FolderInUse) as info:
            FolderLock(tmp_path).acquire()
        assert f"in use by process {os.getpid()} (" in str(info.value)
    finally:
        os.close(fd)


def test_the_lock_names_its_holder_and_is_free_once_released(tmp_path, one_sentence):
    """Two locks in one process conflict as two processes' do (flock is per open file)."""
    with FolderLock(tmp_path, "python -m experiments.run --out x"):
        with pytest.raises(FolderInUse) as info:
            FolderLock(tmp_path).acquire()
        one_sentence(str(info.value), str(tmp_path), f"in use by process {os.getpid()} (",
                     "another --out")
    assert not (tmp_path / LOCK_NAME).exists()
    with FolderLock(tmp_path):  # free again
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()}\n")
