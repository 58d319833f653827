"""Output problems (issue item 5): an unwritable or full output folder is found before any
training, and a disk that fills up later keeps every result already saved.

Tests run ``experiments.run.main`` in process so that ``os``/``tempfile`` failures can be
injected (CI runs as root, where ``chmod`` does not stop a write).  A guard on the
training entry point proves that nothing trained when the folder was refused.
(The subprocess case ``--out`` under a regular file is in tests/suite/test_cli.py.)
"""

from __future__ import annotations

import errno
import json
import os
import signal
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def restore_sigterm():
    old = signal.getsignal(signal.SIGTERM)  # main() installs its own handler
    yield
    signal.signal(signal.SIGTERM, old)


@pytest.fixture
def trained(monkeypatch):
    """Keys of every run that started computing (the real computation still runs)."""
    from experiments.suite import tasks as runs

    calls = []
    real = runs.execute

    def recording(fn, spec, settings, run, *args):
        calls.append(run.split("/", 1)[1].split("#", 1)[0])
        return real(fn, spec, settings, run, *args)

    monkeypatch.setattr(runs, "execute", recording)
    return calls


def argv(data, out, only="lr_bn"):
    return ["--quick", "--only", only, "--seeds", "1", "--no-progress", "--data-dir", str(data),
            "--out", str(out)]


def run_main(args, capsys):
    from experiments.run import main

    code = main(args)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.out, captured.err.strip()


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


# ------------------------------------------------------ refused before training
def _fail_mkstemp(code):
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        raise oserror(code)
    return "mkstemp", real, mkstemp


def _fail_probe_write(code):
    real = os.write

    def write(fd, data):
        raise oserror(code)
    return "write", real, write


def _fail_mkdir(code):
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        raise oserror(code)
    return "mkdir", real, mkdir


INJECTED = [
    pytest.param(_fail_mkstemp, errno.EACCES, "Permission denied", id="no-permission-create"),
    pytest.param(_fail_mkstemp, errno.ENOSPC, "No space left", id="full-disk-no-inode"),
    pytest.param(_fail_probe_write, errno.ENOSPC, "No space left", id="full-disk-on-write"),
    pytest.param(_fail_probe_write, errno.EDQUOT, "quota", id="quota-exceeded"),
    pytest.param(_fail_mkdir, errno.EROFS, "Read-only file system", id="read-only-fs"),
    pytest.param(_fail_mkdir, errno.EACCES, "Permission denied", id="no-permission-mkdir"),
]


@pytest.mark.parametrize("make, code, reason", INJECTED)
def test_unwritable_or_full_folder_is_refused_before_training(tiny_data, tmp_path, monkeypatch,
                                                              capsys, one_sentence, trained,
                                                              make, code, reason):
    what, _, fake = make(code)
    target = {"mkstemp": (tempfile, "mkstemp"), "write": (os, "write"),
              "mkdir": (Path, "mkdir")}[what]
    monkeypatch.setattr(*target, fake)
    out = tmp_path / "out"
    rc, stdout, err = run_main(argv(tiny_data, out), capsys)
    assert rc == 2
    assert err.startswith("error: ")
    one_sentence(err, str(out), "not writable", reason, "--out")
    assert trained == []
    assert not (out / "results.json").exists()
    assert stdout == ""


def test_output_path_that_is_a_file_is_refused(tiny_data, tmp_path, capsys, one_sentence, trained):
    out = tmp_path / "results-here"
    out.write_text("a file, not a folder")
    rc, _, err = run_main(argv(tiny_data, out), capsys)
    assert rc == 2
    one_sentence(err, str(out), "not writable", "--out")
    assert trained == []
    assert out.read_text() == "a file, not a folder"


def test_output_name_too_long_is_refused(tiny_data, tmp_path, capsys, one_sentence, trained):
    out = tmp_path / ("x" * 300)
    rc, _, err = run_main(argv(tiny_data, out), capsys)
    assert rc == 2
    one_sentence(err, "not writable", "--out")
    assert trained == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_under_proc_is_refused(tiny_data, capsys, one_sentence, trained):
    """A pseudo file system where nothing can be created, whoever runs the test."""
    out = Path("/proc/xpnet-robustness-out")
    rc, _, err = run_main(argv(tiny_data, out), capsys)
    assert rc == 2
    one_sentence(err, str(out), "not writable", "--out")
    assert trained == []


@pytest.mark.parametrize("content", [
    pytest.param('{"format": 1, "meta": {}, "studies": {"lr_bn": {"ru', id="truncated"),
    pytest.param("\x00" * 64, id="zeros"),
    pytest.param("", id="empty"),
    pytest.param('{"studies": {"x": NaN', id="nan-and-cut"),
])
def test_unreadable_results_file_is_refused_and_left_alone(tiny_data, tmp_path, capsys,
                                                           one_sentence, trained, content):
    """A results.json that is not JSON is someone's data: refuse, never overwrite it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(content)
    rc, _, err = run_main(argv(tiny_data, out), capsys)
    assert rc == 2
    one_sentence(err, str(out / "results.json"), "not readable JSON")
    assert trained == []
    assert (out / "results.json").read_text() == content


def test_results_path_that_is_a_folder_is_refused(tiny_data, tmp_path, capsys, one_sentence,
                                                  trained):
    out = tmp_path / "out"
    (out / "results.json").mkdir(parents=True)
    rc, _, err = run_main(argv(tiny_data, out), capsys)
    assert rc == 2
    one_sentence(err, "results.json")
    assert trained == []


# ------------------------------------------------- the disk fills up mid-study
def _fill_disk_at(monkeypatch, prefix: str, armed):
    """Make fsync of temp files named ``prefix*`` fail with ENOSPC while ``armed()``."""
    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync
    doomed = set()

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        if armed() and os.path.basename(name).startswith(prefix):
            doomed.add(fd)
        return fd, name

    def fsync(fd):
        if fd in doomed:
            doomed.discard(fd)
            raise oserror(errno.ENOSPC)
        return real_fsync(fd)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_after_a_finished_run_keeps_it_and_the_resume_reuses_it(
        tiny_data, tmp_path, monkeypatch, capsys, one_sentence, trained):
    out = tmp_path / "out"
    _fill_disk_at(monkeypatch, ".results.json-", armed=lambda: len(trained) >= 2)
    rc, _, err = run_main(argv(tiny_data, out), capsys)
    assert rc == 2
    one_sentence(err, "results.json", "No space left on device", "free some space", "same --out")
    assert len(trained) == 2  # the study stopped at the failed save
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert list(results["studies"]["lr_bn"]["runs"]) == trained[:1]
    assert not list(out.glob(".results.json-*")), list(out.iterdir())

    monkeypatch.undo()  # space freed
    rc, stdout, _ = run_main(argv(tiny_data, out), capsys)
    assert rc == 0
    assert "lr_bn: 2 runs (1 trained, 1 reused)" in stdout


def test_disk_full_while_writing_a_figure_keeps_the_runs(tiny_data, tmp_path, monkeypatch,
                                                         capsys, one_sentence, trained):
    out = tmp_path / "out"
    _fill_disk_at(monkeypatch, ".lr_bn_bars.png-", armed=lambda: True)
    rc, _, err = run_main(argv(tiny_data, out), capsys)
    assert rc == 2
    one_sentence(err, str(out), "No space left on device", "same --out")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert len(results["studies"]["lr_bn"]["runs"]) == 2
    assert not list((out / "figures").glob(".*.tmp"))

    monkeypatch.undo()
    rc, stdout, _ = run_main(argv(tiny_data, out), capsys)
    assert rc == 0
    assert "lr_bn: 2 runs (0 trained, 2 reused)" in stdout


def test_disk_full_while_writing_the_report_keeps_the_results(tiny_data, tmp_path, monkeypatch,
                                                              capsys, one_sentence, trained):
    out = tmp_path / "out"
    _fill_disk_at(monkeypatch, ".report.md-", armed=lambda: True)
    rc, _, err = run_main(argv(tiny_data, out), capsys)
    assert rc == 2
    one_sentence(err, str(out), "No space left on device")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["studies"]["lr_bn"]["status"] == "done"
    assert not (out / "report.md").exists()

    monkeypatch.undo()
    rc, stdout, _ = run_main(argv(tiny_data, out), capsys)
    assert rc == 0 and "lr_bn: skipped (already done, 2 runs reused)" in stdout
    assert (out / "report.md").is_file()
