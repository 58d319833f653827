"""Checkpoints inside a run (experiments.suite.checkpoints): a suite SIGKILLed while its runs
stand just after a checkpoint resumes each of them from it, and ends with the numbers of a
suite that never stopped, bit for bit; on ``--workers 1`` (in this process) and ``2`` (a
Dask cluster, whose workers hand their checkpoints to the client), for a plain run, a
halving run (killed after its rungs), a dropout run and an Adam run.

Each suite runs as a user runs it, ``python -m experiments.run``, on the tiny data, with a
checkpoint at every record point.  The runs not yet tested are held (:mod:`tests.hold`)
just after handing over a checkpoint at a given step: the test waits until that checkpoint
is in the output folder, kills the whole process group (Dask's workers too), and starts
the suite again, which resumes them while the next ones are held.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.hold import hold_env
from tests.processes import REPO, kill_session

STUDY = str(REPO / "tests" / "suite" / "resume_study.py")
#: Each run of the study and the step it is held at: halving's after both rungs (20, 50).
HOLD_AT = {"resume/plain": 30, "resume/halving": 55, "resume/dropout": 30, "resume/adam": 30}
FIELDS = ("history", "test_accuracy", "test_loss", "diverged_step", "last_val_accuracy")


def suite_args(data: Path, out: Path, workers: int, every: str) -> list[str]:
    return [sys.executable, "-m", "experiments.run", "--quick", "--study", STUDY, "--seeds",
            "2", "--workers", str(workers), "--data-dir", str(data), "--out", str(out),
            "--checkpoint-every", every, "--no-progress"]


def records(out: Path) -> dict:
    runs = json.loads((out / "results.json").read_text())["studies"]["resume"]["runs"]
    return {f"resume/{key}": {f: rec[f] for f in FIELDS} for key, rec in runs.items()}


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory) -> dict:
    """The study's records from a suite that never stopped (in this process, no checkpoints)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    done = subprocess.run(suite_args(tiny_data, out, 1, "0"), cwd=REPO, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return records(out)


def saved_step(out: Path, run: str) -> int | None:
    """The step of ``run``'s checkpoint in ``out`` (None: none there yet)."""
    study, key = run.split("/")
    for path in (out / "checkpoints" / study).glob(f"{key}.*.npz"):
        try:
            with np.load(path) as f:
                return json.loads(str(f["meta"]))["t"]
        except (OSError, ValueError, KeyError):  # replaced while read: look again
            return None
    return None


def held_runs(hold: Path, out: Path) -> dict:
    """``{run: step}`` of the runs held just after a checkpoint that is in ``out`` now."""
    held = {}
    for mark in hold.glob("held-checkpoint-*"):
        run = mark.name[len("held-checkpoint-"):].replace("--", "/")
        step = int(mark.read_text() or -1)
        if saved_step(out, run) == step:
            held[run] = step
    return held


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_runs_killed_after_a_checkpoint_resume_from_it_to_the_same_numbers(
        tiny_data, tmp_path, procs, reference, workers):
    out = tmp_path / "out"
    left, resumed, rounds = dict(HOLD_AT), {}, 0
    while left:
        hold = tmp_path / f"hold-{rounds}"
        suite = procs.start(suite_args(tiny_data, out, workers, "0.000001"),
                            env=hold_env(hold, checkpoints=left))
        expect = min(workers, len(left))  # each worker holds one run
        deadline = time.monotonic() + 180
        while len(held := held_runs(hold, out)) < expect:
            assert suite.poll() is None, suite.communicate()
            assert time.monotonic() < deadline, f"no run held after 180 s: {held}"
            time.sleep(0.05)
        kill_session(suite.pid)  # SIGKILL, the suite and its workers alike
        text = suite.communicate()[0]
        for run, step in resumed.items():
            assert f"{run}: resumed from its checkpoint at step {step}" in text
        resumed = held
        for run in held:
            del left[run]
        rounds += 1
    assert rounds == (4 if workers == 1 else 2)
    done = procs.start(suite_args(tiny_data, out, workers, "0.000001"))
    text, err = done.communicate(timeout=240)
    assert done.returncode == 0, err
    for run, step in resumed.items():
        assert f"{run}: resumed from its checkpoint at step {step}" in text
    assert records(out) == reference
    assert not (out / "checkpoints").exists()  # a finished run's checkpoint is removed


def test_a_checkpoint_that_cannot_be_used_is_set_aside_and_its_run_starts_afresh(
        tiny_data, tmp_path, reference):
    """A damaged checkpoint (or another run's) in the folder costs its run only the time:
    the run says so in one line, trains from step 0 to the same numbers, and the file
    goes."""
    from experiments.suite.checkpoints import part_key
    from experiments.suite.store import fingerprint

    out = tmp_path / "out"
    done = subprocess.run(suite_args(tiny_data, out, 1, "0"), cwd=REPO, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    runs = json.loads((out / "results.json").read_text())["studies"]["resume"]["runs"]
    spec = runs.pop("adam")["spec"]
    (out / "results.json").write_text(json.dumps(
        {**json.loads((out / "results.json").read_text()),
         "studies": {"resume": {"runs": runs}}}))
    damaged = out / "checkpoints" / f"{part_key('resume/adam', 1, 0, fingerprint(spec))}.npz"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"PK\x03\x04 not a checkpoint")
    again = subprocess.run(suite_args(tiny_data, out, 1, "0"), cwd=REPO, capture_output=True,
                           text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    warning = [line for line in again.stderr.splitlines() if "resume/adam" in line]
    assert len(warning) == 1 and warning[0].startswith(
        "resume/adam: its checkpoint cannot be used (the checkpoint of resume/adam is not a "
        "readable xpnet run checkpoint"), again.stderr
    assert warning[0].endswith("; it trains from step 0")
    assert records(out) == reference
    assert not damaged.exists()


def test_the_store_keeps_a_runs_newest_checkpoint_until_its_record_is_saved(tmp_path):
    from experiments.suite.checkpoints import CheckpointStore, part_key

    store = CheckpointStore(tmp_path, every=1.0)
    halves = [part_key("s/a b", 2, i, "f" * 16) for i in range(2)]
    store.write(halves[0], b"one")
    store.write(halves[1], b"two")
    assert store.split_of("s/a b") == 2 and store.split_of("s/other") is None
    assert store.claim("s/a b", halves) == {halves[0]: b"one", halves[1]: b"two"}
    whole = part_key("s/a b", 1, 0, "e" * 16)  # started whole (another spec): the halves go
    assert store.claim("s/a b", [whole]) == {} and store.split_of("s/a b") is None
    store.write(whole, b"three")
    store.finish("s/a b")  # its record is saved
    store.write(whole, b"late")  # fetched from a worker after that: dropped
    assert not store.path(whole).exists()
    store.write(part_key("t/x", 1, 0, "d" * 16), b"four")
    store.forget("t")  # --force
    (store.folder / "t" / ".x.npz-killed.tmp").write_bytes(b"half")  # a write a kill cut
    store.tidy()
    assert not (tmp_path / "checkpoints").exists()
