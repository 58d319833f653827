"""The study suite end to end: ``python -m experiments.run`` as a user runs it.

Every CLI test runs the real command in a subprocess from the repository root, on a
tiny generated dataset in the official format (and, marked ``cifar``, on
``XPNET_DATA``): results, report tables, PNG figures, resume, bad flags.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xpnet.data.synthetic import write_cifar_batches

REPO = Path(__file__).resolve().parents[2]  # pytest's pythonpath makes `experiments` importable
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK_PAIR = ["--quick", "--only", "gradcheck,depth_bn", "--no-progress"]
GRADCHECK_RUNS = {"K2-bn-lam0.01", "K2-nobn-lam0.01", "K3-bn-lam0.01", "K3-nobn-lam0.01"}
DEPTH_RUNS = {"3-layer-bn", "3-layer-nobn", "9-layer-bn", "9-layer-nobn"}


def cli(*args, env=None, timeout=180) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "experiments.run", *map(str, args)],
                          cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def load_results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def finished_times(results: dict) -> dict:
    return {(s, k): r["finished_at"] for s, st in results["studies"].items()
            for k, r in st["runs"].items()}


@pytest.fixture(scope="module")
def quick_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "out"
    proc = cli(*QUICK_PAIR, "--seeds", 2, "--data-dir", tiny_data, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return proc, out


# ------------------------------------------------------------------ end to end
def test_quick_suite_writes_results_for_every_run(quick_run):
    proc, out = quick_run
    results = load_results(out)
    assert set(results["studies"]) == {"gradcheck", "depth_bn"}
    assert set(results["studies"]["gradcheck"]["runs"]) == GRADCHECK_RUNS
    depth = results["studies"]["depth_bn"]
    assert set(depth["runs"]) == DEPTH_RUNS
    for study in results["studies"].values():
        assert study["status"] == "done" and study["wall_s"] > 0
    for run in depth["runs"].values():
        assert len(run["test_accuracy"]) == 2  # two seeds on the model axis
        assert run["spec"]["models"]["seeds"] == [0, 1]
        assert len(run["history"]["metrics"]["val_accuracy"][-1]) == 2
    # The generated data is learnable: the 3-layer BN net beats chance by far.
    assert min(depth["runs"]["3-layer-bn"]["test_accuracy"]) > 0.5
    for run in results["studies"]["gradcheck"]["runs"].values():
        assert max(p["max_rel_error"] for p in run["params"]) < 1e-6
    meta = results["meta"]
    assert meta["scale"] == {"quick": True, "seeds": 2} and meta["device"].startswith("cpu")
    assert "quick" not in meta and "seeds" not in meta  # stored once, in meta["scale"]
    assert meta["executor"] == "in-process"
    assert {"python", "numpy", "array-api-compat", "matplotlib", "xpnet"} <= set(meta["versions"])
    assert "gradcheck: 4 runs (4 trained, 0 reused)" in proc.stdout
    assert "depth_bn: 4 runs (4 trained, 0 reused)" in proc.stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_report_holds_the_tables_and_links_the_figures(quick_run):
    _, out = quick_run
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Smoke test (`--quick`)" in report
    assert "## Headline" in report
    assert "| depth_bn | 3-layer, BN |" in report
    assert "| depth_bn | 9-layer, no BN |" in report and "49.8 %" in report
    assert "## gradcheck" in report and "### Per config" in report
    assert "### Per parameter" in report and "| 3-layer, BN, lambda 0.01 | gamma1 |" in report
    links = [line[line.index("(") + 1:-1] for line in report.splitlines() if line.startswith("![")]
    assert len(links) == 3  # gradcheck K = 2 and 3, and depth_bn's one comparison figure
    for link in links:
        assert (out / link).is_file(), link


def test_figures_are_non_empty_pngs(quick_run):
    _, out = quick_run
    figures = sorted((out / "figures").glob("*.png"))
    names = {p.name for p in figures}
    assert {"gradcheck_K2.png", "gradcheck_K3.png", "depth_bn_curves.png"} <= names
    for path in figures:
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, path


def test_second_run_trains_nothing_and_resumes_inside_a_study(quick_run, tiny_data, tmp_path):
    _, first = quick_run
    out = tmp_path / "out"
    shutil.copytree(first, out)
    before = finished_times(load_results(out))

    again = cli(*QUICK_PAIR, "--seeds", 2, "--data-dir", tiny_data, "--out", out)
    assert again.returncode == 0, again.stderr
    assert "gradcheck: skipped (already done" in again.stdout
    assert "depth_bn: skipped (already done" in again.stdout
    assert "Trained 0 runs" in again.stdout
    assert finished_times(load_results(out)) == before

    # An interrupted study: one run missing, the study not marked done.
    results = load_results(out)
    results["studies"]["depth_bn"]["status"] = "running"
    del results["studies"]["depth_bn"]["runs"]["9-layer-bn"]
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    resumed = cli(*QUICK_PAIR, "--seeds", 2, "--data-dir", tiny_data, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "depth_bn: 4 runs (1 trained, 3 reused)" in resumed.stdout
    after = finished_times(load_results(out))
    assert {k: v for k, v in after.items() if k[1] != "9-layer-bn"} == {
        k: v for k, v in before.items() if k[1] != "9-layer-bn"}

    forced = cli("--quick", "--only", "gradcheck", "--no-progress", "--seeds", 2,
                 "--data-dir", tiny_data, "--out", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "gradcheck: 4 runs (4 trained, 0 reused)" in forced.stdout


def test_other_scale_in_the_same_folder_is_refused(quick_run, tiny_data, tmp_path):
    _, first = quick_run
    out = tmp_path / "out"
    shutil.copytree(first, out)
    proc = cli(*QUICK_PAIR, "--seeds", 1, "--data-dir", tiny_data, "--out", out)
    assert proc.returncode == 2
    assert "--force" in proc.stderr and "Traceback" not in proc.stderr


def test_other_data_in_the_same_folder_is_refused_then_forced(quick_run, tmp_path):
    _, first = quick_run
    out = tmp_path / "out"
    shutil.copytree(first, out)
    other = tmp_path / "other"
    write_cifar_batches(other, n_per_batch=200, seed=2)
    args = ["--quick", "--only", "gradcheck", "--no-progress", "--seeds", 2,
            "--data-dir", other, "--out", out]
    proc = cli(*args)
    assert proc.returncode == 2
    assert "other CIFAR-10 data" in proc.stderr and "Traceback" not in proc.stderr
    forced = cli(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "gradcheck: 4 runs (4 trained, 0 reused)" in forced.stdout


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize("args, words", [
    (["--seeds", "0"], "--seeds"),
    (["--seeds", "-3"], "--seeds"),
    (["--seeds", "many"], "--seeds"),
    (["--only", "gradcheck,nope"], "'nope'"),
    (["--only", ","], "--only"),
    (["--device", "tpu"], "tpu"),
    (["--bogus"], "--bogus"),
    (["--quick", "extra"], "extra"),
])
def test_bad_flags_exit_2_with_one_sentence(args, words, tmp_path):
    proc = cli(*args, "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("."), proc.stderr
    assert words in lines[0]
    assert not (tmp_path / "out").exists()  # nothing written before the flags are checked


def test_unwritable_output_folder_exits_2_before_training(tiny_data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = cli(*QUICK_PAIR, "--data-dir", tiny_data, "--out", blocker / "out")
    assert proc.returncode == 2
    assert "not writable" in proc.stderr and "Traceback" not in proc.stderr
    assert "trained" not in proc.stdout.lower()


def test_missing_data_exits_2(tmp_path):
    proc = cli(*QUICK_PAIR, "--data-dir", tmp_path / "nothing-here", "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "cifar-10-batches-py" in proc.stderr


@pytest.mark.parametrize("out", [[], ["--out", "deep/er/out"]], ids=["default-out", "new-parents"])
def test_a_failed_start_leaves_no_folder_behind(tmp_path, out):
    """As a newcomer types it, in an empty folder: neither runs/<timestamp>/ nor the runs/
    (or other folders) it made for --out stay behind."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # Relative PYTHONPATH entries (say src) name the checkout's folders from here too.
    env["PYTHONPATH"] = os.pathsep.join(str((REPO / p).resolve()) if p else p
                                        for p in env["PYTHONPATH"].split(os.pathsep))
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "--quick", "--data-dir",
                           "/nonexistent", *out], cwd=empty, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "cifar-10-batches-py" in proc.stderr and "Traceback" not in proc.stderr
    assert list(empty.iterdir()) == []


def test_a_failed_start_keeps_folders_that_were_there(tmp_path):
    (tmp_path / "runs" / "older").mkdir(parents=True)
    proc = cli("--quick", "--data-dir", tmp_path / "nothing-here", "--out",
               tmp_path / "runs" / "new")
    assert proc.returncode == 2, proc.stderr
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["older"]


def test_cuda_without_cupy_exits_2():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    proc = cli("--device", "cuda", "--only", "overfit")
    assert proc.returncode == 2
    assert "CuPy" in proc.stderr and "Traceback" not in proc.stderr


def test_list_names_every_study():
    proc = cli("--list")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == ["gradcheck", "overfit", "depth_bn", "lambda_search", "lambda_halving",
                     "pbt", "init_sensitivity", "lr_bn", "lr_range", "bn_eps", "activations",
                     "norm_opt"]


# ------------------------------------------------------------ in-process parts
def test_full_disk_keeps_the_previous_results(tmp_path, monkeypatch):
    from experiments.suite.store import ResultStore
    from xpnet.errors import OutputError

    store = ResultStore(tmp_path)
    store.study("depth_bn")["runs"]["a"] = {"x": 1.0}
    store.save()
    before = (tmp_path / "results.json").read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    store.study("depth_bn")["runs"]["b"] = {"x": float("nan")}
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OutputError, match="No space left on device"):
        store.save()
    assert (tmp_path / "results.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_nan_is_stored_as_null(tmp_path):
    from experiments.suite.store import ResultStore

    store = ResultStore(tmp_path)
    store.study("s")["runs"]["a"] = {"acc": [float("nan"), 0.5]}
    store.save()
    assert ResultStore(tmp_path).study("s")["runs"]["a"]["acc"] == [None, 0.5]


def test_interrupt_saves_finished_runs_and_exits_130(tiny_data, tmp_path, monkeypatch, capsys):
    from experiments.run import main
    from experiments.suite import tasks as runs

    real = runs.execute
    calls = []

    def interrupted_after_one(fn, spec, settings, run, *args):
        if calls:
            raise KeyboardInterrupt
        calls.append(run.split("/", 1)[1])
        return real(fn, spec, settings, run, *args)

    monkeypatch.setattr(runs, "execute", interrupted_after_one)
    out = tmp_path / "out"
    old_handler = signal.getsignal(signal.SIGTERM)
    try:
        code = main([*QUICK_PAIR[:2], "depth_bn", "--no-progress", "--seeds", "1",
                     "--data-dir", str(tiny_data), "--out", str(out)])
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    assert code == 130
    assert "Interrupted" in capsys.readouterr().err
    results = load_results(out)
    assert list(results["studies"]["depth_bn"]["runs"]) == calls
    assert results["studies"]["depth_bn"]["status"] == "running"


def _has_a_stored_run(out: Path) -> bool:
    try:
        return any(study["runs"] for study in load_results(out)["studies"].values())
    except (OSError, ValueError, KeyError):
        return False


def test_sigterm_stops_cleanly_with_143(tiny_data, tmp_path):
    from tests.hold import hold_env

    out = tmp_path / "out"
    proc = subprocess.Popen(  # depth_bn's first run never ends: the suite cannot finish
        [sys.executable, "-m", "experiments.run", "--quick", "--no-progress", "--seeds", "1",
         "--data-dir", str(tiny_data), "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **hold_env(tmp_path / "hold", "depth_bn/3-layer-nobn")})
    try:
        deadline = time.monotonic() + 60
        while not _has_a_stored_run(out) and time.monotonic() < deadline:
            time.sleep(0.05)  # the signal should land while the suite is training
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, (stdout, err)  # 128 + SIGTERM, as a shell reports it
    assert "Interrupted" in err and "Traceback" not in err
    assert ": stopped (" in stdout and "failed" not in stdout, stdout
    load_results(out)  # still valid JSON


# ------------------------------------------------------------------ real data
@pytest.mark.cifar
def test_quick_suite_on_real_cifar(cifar_root, tmp_path):
    """The issue's end-to-end check on the real data."""
    out = tmp_path / "out"
    proc = cli(*QUICK_PAIR, "--seeds", 1, "--out", out, env={"XPNET_DATA": str(cifar_root)})
    assert proc.returncode == 0, proc.stderr
    results = load_results(out)
    runs = results["studies"]["depth_bn"]["runs"]
    assert set(runs) == DEPTH_RUNS
    data_spec = runs["3-layer-bn"]["spec"]["data"]
    assert {k: data_spec[k] for k in ("train", "val", "test")} == {"train": 1000, "val": 500,
                                                                    "test": 1000}
    assert runs["3-layer-bn"]["test_accuracy"][0] > 0.2  # 1,000 images, 200 steps
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| depth_bn | 3-layer, BN |" in report


def test_a_memory_cap_is_the_first_line_the_suite_prints(tiny_data, tmp_path, monkeypatch,
                                                          capsys):
    from experiments.run import main
    from experiments.suite import cluster, memory

    monkeypatch.delenv("XPNET_WORKERS", raising=False)
    monkeypatch.delenv("XPNET_SCHEDULER", raising=False)
    monkeypatch.setattr(cluster, "usable_cores", lambda: 4)
    monkeypatch.setattr(memory, "available_memory", lambda: memory.CLIENT_BYTES)  # room for 1
    code = main(["--quick", "--only", "lr_bn", "--no-progress", "--seeds", "1",
                 "--data-dir", str(tiny_data), "--out", str(tmp_path / "out")])
    assert code == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("Using 1 worker, not one per usable core") and "--workers N" in first
