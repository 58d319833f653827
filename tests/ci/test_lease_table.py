"""ci/lease_table.py: the lease's summary table, also when parts failed."""

from __future__ import annotations

import json

from tests.ci.helpers import ci_module

lease = ci_module("lease_table")


def _results(folder, accuracies: dict):
    folder.mkdir(parents=True)
    studies = {}
    for (study, run), acc in accuracies.items():
        studies.setdefault(study, {"runs": {}})["runs"][run] = {"test_accuracy": acc}
    (folder / "results.json").write_text(json.dumps({"studies": studies}))


def test_compare_allows_rounding_and_catches_a_different_run(tmp_path):
    cpu = {("depth_bn", "3-layer-bn"): [0.50, 0.52], ("overfit", "run"): 0.9}
    _results(tmp_path / "cpu", cpu)
    _results(tmp_path / "near", {**cpu, ("depth_bn", "3-layer-bn"): [0.51, 0.52]})
    _results(tmp_path / "far", {**cpu, ("overfit", "run"): 0.8})
    ok, line = lease.compare(tmp_path / "cpu", tmp_path / "near")
    assert ok and line.startswith("2 runs; max |cuda - cpu| test accuracy 0.50 points")
    ok, line = lease.compare(tmp_path / "cpu", tmp_path / "far")
    assert not ok and "10.00 points (overfit/run)" in line
    ok, line = lease.compare(tmp_path / "cpu", tmp_path / "missing")
    assert not ok and "no runs to compare" in line


def test_table_has_a_row_per_part_whatever_happened(tmp_path):
    (tmp_path / "parts.tsv").write_text("tests-cuda\tok\t61\nbench-cuda\tTIMEOUT\t80\n"
                                        "depth-bn\tFAIL(1)\t3\nwide-cuda\tok\t9\n")
    (tmp_path / "wide-cuda.json").write_text(json.dumps({"wide": [
        {"k": 8, "wide_over_broadcast": 0.5, "wide_over_stacked": 0.25}]}))
    (tmp_path / "tests-cuda.log").write_text("....\n=== 120 passed, 3 skipped in 50.1s ===\n")
    (tmp_path / "bench-cuda.log").write_text("device cuda | ...\n")
    bench = {"config": {"n_samples": 45000, "batch_size": 100},
             "single": {"ours_s_per_epoch": 2.0, "matmul_s_per_epoch": 0.5},
             "sweep": [{"models": 8, "s_per_epoch": 4.0, "peak_bytes": 3 * 2**20,
                        "calls_per_step": 113}],
             "calls_per_step": {"3-layer": {"1": 113, "64": 113}}}
    (tmp_path / "bench-cuda.json").write_text(json.dumps(bench))
    text = lease.table(tmp_path)
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    assert "120 passed, 3 skipped in 50.1s" in rows["tests: core rows on cuda (CuPy)"]
    assert "TIMEOUT" in rows["bench on cuda"] and "calls/step 3-layer 113" in text
    assert "FAIL(1)" in rows["depth_bn at full scale on cuda, 3 seeds"]
    assert "k=8: wide/broadcast 0.50x, wide/stacked 0.25x" in text
    # M x steps per second: 8 models x 450 steps in 4 s.
    assert any(line.split()[:5] == ["cuda", "8", "4", "900", "3"] for line in text.splitlines())
