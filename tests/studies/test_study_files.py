"""A study of your own from one file (``--study FILE``): the example study runs through the
same engine in process, on a local cluster and on a `dask scheduler` cluster whose workers
cannot import the file; a bad file ends in one sentence, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.processes import load, run_cli, start_cluster
from tests.records import assert_same_record

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "width_lambda.py"
QUICK = ["--quick", "--no-progress", "--seeds", "1", "--study", str(EXAMPLE)]


def _cli(*args, cwd=REPO) -> subprocess.CompletedProcess:
    # From another folder too: the checkout on the path (where xpnet is installed, the same code).
    entries = [str(REPO), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    path = os.pathsep.join(os.path.abspath(p) for p in entries if p)
    env = {**os.environ, "XPNET_WORKERS": "1", "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "experiments.run", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def in_process(tiny_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("study-file") / "out"
    proc = _cli(*QUICK, "--data-dir", tiny_data, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "results.json").read_text(encoding="utf-8")) | {"out": out}


def _assert_same_study(a: dict, b: dict) -> None:
    runs_a, runs_b = a["studies"]["width_lambda"]["runs"], b["studies"]["width_lambda"]["runs"]
    assert runs_a.keys() == runs_b.keys() == {"width-25", "width-50", "width-100"}
    for key in runs_a:
        assert_same_record(runs_a[key], runs_b[key])
        np.testing.assert_allclose(runs_a[key]["dead_share"], runs_b[key]["dead_share"])


def test_the_example_study_runs_alone_and_reports(in_process):
    assert list(in_process["studies"]) == ["width_lambda"]  # --study without --only
    study = in_process["studies"]["width_lambda"]
    assert study["status"] == "done"
    for rec in study["runs"].values():
        assert rec["n_models"] == 3 and len(rec["dead_share"]) == 3  # 3 lambdas x 1 seed
        assert rec["spec"]["probe_size"] == 1000
    report = (in_process["out"] / "report.md").read_text(encoding="utf-8")
    assert "## width_lambda" in report and "share of dead hidden units" in report
    assert (in_process["out"] / study["figures"][0]).stat().st_size > 1000


def test_a_second_invocation_resumes_and_only_adds_a_built_in_study(in_process, tiny_data):
    proc = _cli(*QUICK, "--only", "gradcheck", "--data-dir", tiny_data,
                "--out", in_process["out"])
    assert proc.returncode == 0, proc.stderr
    assert "width_lambda: skipped (already done" in proc.stdout
    report = (in_process["out"] / "report.md").read_text(encoding="utf-8")
    assert report.index("## gradcheck") < report.index("## width_lambda")


def test_two_local_workers_give_the_in_process_numbers(procs, in_process, tiny_data,
                                                       tmp_path):
    proc = run_cli(procs, *QUICK, "--workers", "2", "--data-dir", tiny_data,
                   "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    _assert_same_study(load(tmp_path / "out"), in_process)


def test_workers_that_cannot_import_the_file_run_its_function(procs, in_process,
                                                              tiny_data, tmp_path):
    address = start_cluster(procs, 2)
    proc = run_cli(procs, *QUICK, "--scheduler", address, "--data-dir", tiny_data,
                   "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    _assert_same_study(load(tmp_path / "out"), in_process)


BAD_FILES = {
    "missing": (None, "does not exist"),
    "syntax": ("def run(ctx)\n", "failed to import (SyntaxError"),
    "raises": ("raise RuntimeError('boom')\n", "failed to import (RuntimeError: boom)"),
    "no-run": ("NAME = 'mine'\n", "defines no run(ctx) function"),
    "built-in name": ("NAME = 'lr_bn'\ndef run(ctx):\n    return {}\n", "named 'lr_bn'"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_study_file_is_one_sentence_and_writes_nothing(case, tiny_data, tmp_path):
    text, words = BAD_FILES[case]
    study = tmp_path / "my_study.py"
    if text is not None:
        study.write_text(text, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    proc = _cli("--quick", "--study", study, "--data-dir", tiny_data, cwd=work)
    assert proc.returncode == 2
    assert words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(work.iterdir()) == []  # no runs/ folder


def test_two_files_with_one_name_are_refused(tiny_data, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.py").write_text("def run(ctx):\n    return {}\n")
    proc = _cli("--study", tmp_path / "a" / "same.py", "--study", tmp_path / "b" / "same.py",
                "--data-dir", tiny_data, cwd=tmp_path)
    assert proc.returncode == 2 and "named 'same'" in proc.stderr


def test_the_readme_study_runs_as_written(tiny_data, tmp_path):
    from tests.test_readme import python_blocks

    (block,) = python_blocks("Write a study")
    study = tmp_path / "my_study.py"
    study.write_text(block, encoding="utf-8")
    proc = _cli("--quick", "--seeds", "2", "--no-progress", "--study", study, "--data-dir",
                tiny_data, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    (record,) = results["studies"]["my_lambdas"]["runs"].values()
    assert record["n_models"] == 6 and record["spec"]["models"]["lam"][::2] == [0.0, 1e-3, 1e-2]
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "## my_lambdas" in report and "| lambda | test accuracy |" in report
