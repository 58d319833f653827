"""The bench's halving comparison (issue 27) on tiny random data: both runs in one process,
the ratios printed and written as JSON."""

from __future__ import annotations

import json

from experiments.bench import cli as bench


def test_halving_bench_prints_both_runs_and_the_ratios(tmp_path, capsys):
    out_json = tmp_path / "halving.json"
    rc = bench.main(["--halving", "--n-samples", "300", "--halving-n-s", "10",
                     "--halving-lambdas", "9", "--halving-val", "100", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "rungs at steps" in out and "halving/full: wall time" in out
    data = json.loads(out_json.read_text())["halving"]
    full, half = data["rows"]["full"], data["rows"]["halving"]
    assert full["model_steps"] == 9 * 40
    assert half["model_steps"] < 0.5 * full["model_steps"]
    assert data["model_steps_ratio"] == half["model_steps"] / full["model_steps"]
    assert len(data["rungs"]) == 2 and data["data"] == "random"
