"""Interrupted sweeps (issue item 4): SIGTERM, SIGINT and SIGKILL mid-run, then resume.

The suite runs as a user runs it, ``python -m experiments.run`` in a subprocess on a tiny
generated dataset.  The signal is sent once ``results.json`` holds at least one finished
run of the four-run ``depth_bn`` study, so it lands between or inside runs, never before
the handlers are installed; the next run is held (:mod:`tests.hold`: it waits an hour), so
the suite cannot finish before the signal lands.  Throughout both invocations a watcher thread
reads ``results.json`` every few milliseconds and parses it: the file must be valid JSON
at every instant.  The restarted sweep must reuse every run stored before the kill (same
record, same ``finished_at``), say so, and finish the rest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.hold import hold_env

REPO = Path(__file__).resolve().parents[2]
STUDIES = "depth_bn"  # four runs of about a second each on the tiny data
ALL_RUNS = {
    "depth_bn": {f"{k}-layer-{bn}" for k in (3, 9) for bn in ("bn", "nobn")},
}
SWEEP = ["--quick", "--only", STUDIES, "--seeds", "1", "--no-progress"]
STUDY_LINE = re.compile(r"^(\w+): (\d+) runs \((\d+) trained, (\d+) reused\)")
SKIP_LINE = re.compile(r"^(\w+): skipped \(already done, (\d+) runs reused\)")


def strict_json(text: str):
    """``json.loads`` that also refuses NaN / Infinity (which ``json`` accepts by default)."""
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=refuse)


def load_results(out: Path) -> dict:
    return strict_json((out / "results.json").read_text(encoding="utf-8"))


def stored_runs(results: dict) -> dict:
    """``{(study, key): record}`` for every run in ``results``."""
    return {(s, k): r for s, st in results.get("studies", {}).items()
            for k, r in st.get("runs", {}).items()}


class JsonWatcher:
    """A thread that parses ``path`` every ``period`` seconds and keeps every failure."""

    def __init__(self, path: Path, period: float = 0.005):
        self.path = path
        self.period = period
        self.reads = 0
        self.versions = set()
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                raw = None
            if raw is not None:
                self.reads += 1
                try:
                    strict_json(raw.decode("utf-8"))
                except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError too
                    self.failures.append(f"{exc}: {raw[:80]!r}...{raw[-80:]!r}")
                else:
                    self.versions.add(hash(raw))
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def _default_sigint():
    # Python turns SIGINT into KeyboardInterrupt only if the parent left it at SIG_DFL; a
    # test runner started in the background (a CI shell) may hand down SIG_IGN.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: depth_bn's runs in the order an in-process suite trains them.
DEPTH_ORDER = ["depth_bn/3-layer-nobn", "depth_bn/3-layer-bn", "depth_bn/9-layer-nobn",
               "depth_bn/9-layer-bn"]


def start_sweep(data: Path, out: Path, held: str = DEPTH_ORDER[1]) -> subprocess.Popen:
    """The sweep in a subprocess, with run ``held`` never finishing (see tests.hold)."""
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.run", *SWEEP, "--data-dir", str(data),
         "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **hold_env(out.parent / "hold", held)},
        preexec_fn=_default_sigint if os.name == "posix" else None)


def wait_for_first_run(proc: subprocess.Popen, out: Path, timeout: float = 90) -> None:
    """Return once results.json holds at least one finished run (polled every 2 ms)."""
    path = out / "results.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (rc {proc.returncode}) before it could be "
                        f"interrupted: {proc.stderr.read()}")
        try:
            if stored_runs(strict_json(path.read_text(encoding="utf-8"))):
                return
        except (FileNotFoundError, ValueError):
            pass  # not there yet; a parse failure here is the watcher's business
        time.sleep(0.002)
    pytest.fail("no run was stored in time")


def reuse_counts(stdout: str) -> dict:
    """Per study, ``(trained, reused)`` as the invocation reported them."""
    counts = {}
    for line in stdout.splitlines():
        if m := STUDY_LINE.match(line):
            counts[m[1]] = (int(m[3]), int(m[4]))
        elif m := SKIP_LINE.match(line):
            counts[m[1]] = (0, int(m[2]))
    return counts


STRAY_FILES = {".results.json-killed.tmp": '{"format": 1, "stud', ".probe-killed": "",
               "figures/.lr_bn_bars.png-killed.tmp": "\x89PNG\r\n"}

# SIGKILL: no handler runs, nothing is printed; the process dies as it stands.
KILLS = [
    pytest.param(signal.SIGTERM, 143, "Interrupted", id="SIGTERM"),
    pytest.param(signal.SIGINT, 130, "Interrupted", id="SIGINT"),
    pytest.param(signal.SIGKILL, -signal.SIGKILL, None, id="SIGKILL"),
]


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig, code, words", KILLS)
def test_killed_sweep_resumes_without_recomputing_finished_runs(tiny_data, tmp_path, one_sentence,
                                                                sig, code, words):
    out = tmp_path / "out"
    with JsonWatcher(out / "results.json") as watcher:
        proc = start_sweep(tiny_data, out)
        try:
            wait_for_first_run(proc, out)
            proc.send_signal(sig)
            out_text, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == code, err
        assert "Traceback" not in err
        if words:
            one_sentence(err.strip(), words, str(out / "results.json"), "same --out")
            # The study was stopped, not failed: it says so, with the runs it kept.
            kept = len(stored_runs(load_results(out)))
            assert f"depth_bn: stopped ({kept} finished run" in out_text, out_text
            assert "failed" not in out_text + err

        before = stored_runs(load_results(out))
        assert before, "nothing was stored before the kill"
        assert len(before) < sum(map(len, ALL_RUNS.values())), \
            "the sweep finished before the signal: the test interrupted nothing"
        if sig == signal.SIGKILL:
            # A kill can land in a save, a figure write or the writability probe; the
            # half-written temp files it leaves must not matter.  Leave some for sure so
            # the resume below always meets them.
            for name, text in STRAY_FILES.items():
                (out / name).write_text(text)

        again = subprocess.run(
            [sys.executable, "-m", "experiments.run", *SWEEP, "--data-dir", str(tiny_data),
             "--out", str(out)],
            cwd=REPO, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr

    after = stored_runs(load_results(out))
    assert set(after) == {(s, k) for s, keys in ALL_RUNS.items() for k in keys}
    for key, record in before.items():  # finished_at, wall_s (ms) and every figure
        assert after[key] == record, f"{key} was recomputed instead of reused"

    counts = reuse_counts(again.stdout)
    assert set(counts) == set(ALL_RUNS), again.stdout
    for study, (trained, reused) in counts.items():
        n_before = sum(1 for s, _ in before if s == study)
        assert reused == n_before, (study, again.stdout)
        assert trained == len(ALL_RUNS[study]) - n_before, (study, again.stdout)

    assert not watcher.failures, watcher.failures[:3]
    assert watcher.reads > 20 and len(watcher.versions) >= 5  # the watcher really watched
    final = load_results(out)
    assert all(final["studies"][s]["status"] == "done" for s in ALL_RUNS)
    assert (out / "report.md").is_file()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_twice_after_resume_still_keeps_everything(tiny_data, tmp_path, one_sentence):
    """Interrupt, resume, interrupt again: the runs of both invocations are kept."""
    out = tmp_path / "out"
    kept = {}
    for held in DEPTH_ORDER[1:3]:  # each invocation trains one run, then waits on the next
        proc = start_sweep(tiny_data, out, held)
        try:
            # wait for a run this invocation trained, not one it found on disk
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    now = stored_runs(load_results(out))
                except (FileNotFoundError, ValueError):
                    now = {}
                if len(now) > len(kept):
                    break
                time.sleep(0.002)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 143, err
        one_sentence(err.strip(), "Interrupted")
        now = stored_runs(load_results(out))
        assert len(now) == len(kept) + 1
        for key, record in kept.items():
            assert now[key] == record
        kept = now
    assert len(kept) < sum(map(len, ALL_RUNS.values()))


# ------------------------------------------------------------------ in process
@pytest.fixture
def restore_sigterm():
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


def _argv(data: Path, out: Path, only: str = "lr_bn"):
    return ["--quick", "--only", only, "--seeds", "1", "--no-progress", "--data-dir", str(data),
            "--out", str(out)]


def test_interrupt_inside_a_save_leaves_the_last_good_results(tiny_data, tmp_path, monkeypatch,
                                                              capsys, one_sentence,
                                                              restore_sigterm):
    """Ctrl-C while results.json is being replaced: the old file stays, no temp file stays."""
    import experiments.suite.store as store
    from experiments.run import main
    from xpnet.base.atomic import atomic_write

    real_write = store.write_text_atomic
    good = {}

    def interrupted_write(path, text):
        if len(stored_runs(json.loads(text))) == 2:  # the save of the second run
            good["text"] = Path(path).read_text(encoding="utf-8")
            with atomic_write(path, "w") as f:
                f.write(text[: len(text) // 2])  # half written when the signal comes
                raise KeyboardInterrupt
        return real_write(path, text)

    monkeypatch.setattr(store, "write_text_atomic", interrupted_write)
    out = tmp_path / "out"
    assert main(_argv(tiny_data, out)) == 130
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err
    one_sentence(err.strip(), "Interrupted", "same --out")
    assert "lr_bn: stopped (1 finished run kept)" in captured.out  # as on disk
    assert (out / "results.json").read_text(encoding="utf-8") == good["text"]
    assert len(stored_runs(load_results(out))) == 1
    assert not list(out.glob(".results.json-*")), list(out.iterdir())

    monkeypatch.undo()
    assert main(_argv(tiny_data, out)) == 0
    assert "lr_bn: 2 runs (1 trained, 1 reused)" in capsys.readouterr().out



# ------------------------------------------------- the local cluster's start-up
def signal_reached(pid: int, sig: int) -> bool:
    """Whether ``sig``, sent to ``pid``, is past any race: delivered (no thread has it
    pending: the process's handler has it, and Python runs ours at the main thread's next
    step), or pending while every thread blocks it (the suite blocks SIGINT while its
    cluster starts: the main thread takes it when it unblocks, before the start-up's
    end is acted on)."""
    bit = 1 << (sig - 1)
    try:
        statuses = [dict(line.split(":", 1) for line in (task / "status").read_text()
                         .splitlines() if ":" in line)
                    for task in Path(f"/proc/{pid}/task").iterdir()]
    except (OSError, ValueError):  # a thread that just ended
        return False
    pending = any(int(s.get(key, "0"), 16) & bit for s in statuses
                  for key in ("ShdPnd", "SigPnd"))
    return not pending or all(int(s.get("SigBlk", "0"), 16) & bit for s in statuses)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_local_workers_start_ends_the_suite_in_one_line(
        procs, tiny_data, tmp_path, sig):
    """The cluster's start-up waits in its first nanny (tests.hold) while the signal
    lands; then it may go on.  Before: a 28-line Dask traceback after the "Interrupted"
    line (the half-made cluster's exit hook), and the line named a results.json that was
    never written."""
    from tests.hold import held, hold_env, release
    from tests.processes import session_processes, wait_for

    out, hold = tmp_path / "out", tmp_path / "hold"
    suite = procs.start([sys.executable, "-m", "experiments.run", *SWEEP, "--workers", "2",
                         "--data-dir", str(tiny_data), "--out", str(out)],
                        env=hold_env(hold, startup=True), preexec_fn=_default_sigint)
    wait_for(lambda: held(hold, "startup"), 120, "the cluster's start-up", suite)
    suite.send_signal(sig)
    wait_for(lambda: signal_reached(suite.pid, sig), 30, "the signal's delivery", suite)
    release(hold)
    stdout, stderr = suite.communicate(timeout=60)
    assert suite.returncode == 128 + sig, stderr  # 130 SIGINT, 143 SIGTERM
    assert stderr == ("Interrupted before any run was saved; run the command again to "
                      "start.\n"), stderr
    assert stdout == ""
    assert not out.exists()  # it made the folder, and removes it: nothing was saved
    _, alive = psutil.wait_procs(session_processes(suite.pid), timeout=10)
    assert not alive  # workers and nannies end with it (those exiting, within moments)


class SwallowedSignal:
    """A finalizer during which SIGINT lands: Python runs the handler inside it and
    swallows its KeyboardInterrupt ("Exception ignored in ..."), as it does for any
    ``__del__`` or weakref callback the garbage collector runs (a Dask client's objects
    keep it busy)."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_whose_interrupt_a_finalizer_swallowed_still_stops_the_suite(
        tiny_data, tmp_path, monkeypatch, capsys, restore_sigterm):
    """Before: the suite trained every run and exited 0 (the issue's SIGINT "ignored once
    in ten tries")."""
    from experiments.run import main
    from experiments.suite import tasks

    real, started = tasks.execute, []

    def execute(fn, spec, settings, run, *args):
        started.append(run)
        record = real(fn, spec, settings, run, *args)
        if len(started) == 1:
            SwallowedSignal()  # collected at once: the signal comes and its raise is lost
        return record

    monkeypatch.setattr(tasks, "execute", execute)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main(_argv(tiny_data, tmp_path / "out", only="depth_bn"))
    finally:
        signal.signal(signal.SIGINT, old_int)
    assert code == 130
    assert len(started) == 1, started  # the next run did not start
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("Interrupted: finished runs are saved in ")


def takes_sigint(pid: int) -> bool:
    """Whether some thread of ``pid`` neither blocks nor ignores SIGINT."""
    bit = 1 << (signal.SIGINT - 1)
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines()
                      if ":" in line)
        if not (int(fields["SigBlk"], 16) | int(fields["SigIgn"], 16)) & bit:
            return True
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_terminals_ctrl_c_reaches_the_workers_too_and_still_ends_in_one_line(
        procs, tiny_data, tmp_path, sig):
    """A Ctrl-C in a terminal signals the whole process group, the local cluster's worker
    processes too: before, each printed a KeyboardInterrupt traceback (67 lines in all).
    A run is held on a worker (tests.hold) when the signal comes."""
    from tests.hold import held, hold_env
    from tests.processes import session_processes, wait_for

    out, hold = tmp_path / "out", tmp_path / "hold"
    suite = procs.start([sys.executable, "-m", "experiments.run", *SWEEP, "--workers", "2",
                         "--data-dir", str(tiny_data), "--out", str(out)],
                        env=hold_env(hold, *DEPTH_ORDER), preexec_fn=_default_sigint)
    wait_for(lambda: held(hold), 120, "a held run on a worker", suite)
    others = [p for p in session_processes(suite.pid) if p.pid != suite.pid]
    assert len(others) >= 2 and not [p for p in others if takes_sigint(p.pid)], others
    os.killpg(suite.pid, sig)  # the suite leads its own session and process group
    stdout, stderr = suite.communicate(timeout=60)
    assert suite.returncode == 128 + sig, stderr
    results = out / "results.json"
    report = out / "report.md"
    assert stderr == (f"Interrupted: finished runs are saved in {results} (report so far: "
                      f"{report}), runs in progress at their last checkpoint, if any; run "
                      "again with the same --out to resume.\n"), stderr
    assert results.is_file()
    assert "Status: stopped (run again with the same --out to finish it)" in report.read_text()
    assert "depth_bn: stopped (0 finished runs kept)" in stdout
    _, alive = psutil.wait_procs(session_processes(suite.pid), timeout=10)
    assert not alive
