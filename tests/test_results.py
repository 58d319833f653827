"""experiments.results: an output folder as a models table and a curves table.

The folders are real: a ``--quick`` suite run on the tiny generated data, one still being
written (its last run held, see tests.hold), and sandbox runs for per-model settings.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from experiments.results import ResultsError, load, main
from tests.conftest import block_import, in_ci
from tests.hold import hold_env
from tests.processes import REPO, start_suite, wait_for
from tests.processes import load as load_json
from xpnet.base.codec import to_float_array

if in_ci():  # the dev extra installs pandas: its absence there is a failure
    import pandas as pd
else:
    pd = pytest.importorskip("pandas", reason='pandas is not installed; pip install ".[pandas]"')


def training_runs(results: dict) -> dict:
    return {(study, key): rec for study, entry in results["studies"].items()
            for key, rec in entry["runs"].items() if "models" in rec["spec"]}


@pytest.fixture(scope="module")
def quick_folder(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "out"
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "--quick", "--only",
                           "depth_bn,lr_bn,gradcheck", "--seeds", "2", "--no-progress",
                           "--workers", "1", "--data-dir", str(tiny_data), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def test_a_quick_folder_gives_one_row_per_model(quick_folder):
    models, curves = load(quick_folder)
    runs = training_runs(load_json(quick_folder))
    assert {study for study, _ in runs} == {"depth_bn", "lr_bn"}  # gradcheck: no models
    assert len(models) == sum(len(r["spec"]["models"]["seeds"]) for r in runs.values())
    assert not models.duplicated(["study", "key", "model"]).any()
    for (study, key), rec in runs.items():
        rows = models[(models.study == study) & (models.key == key)].sort_values("model")
        assert rows["seed"].tolist() == rec["spec"]["models"]["seeds"]
        np.testing.assert_array_equal(rows["test_accuracy"], to_float_array(rec["test_accuracy"]))
        hidden = tuple(rec["spec"]["config"]["hidden"])
        assert rows["config.hidden"].tolist() == [hidden] * len(rows)
        assert (rows["train.batch_size"] == rec["spec"]["train"]["batch_size"]).all()
        last_point = rec["history"]["metrics"]["val_accuracy"][-1]
        np.testing.assert_array_equal(rows["final_val_accuracy"], to_float_array(last_point))
    # lr_bn: a per-model rate in the schedule's own column, run-wide momentum in train's
    lr = models[models.study == "lr_bn"]
    assert sorted(lr["schedule.eta"].unique()) == [0.0005, 0.03, 0.8]
    assert (lr["train.momentum"] == 0.8).all() and (lr["schedule.type"] == "ConstantLR").all()
    assert (models["study_status"] == "done").all()


def test_curves_hold_every_point_of_every_model_and_metric(quick_folder):
    models, curves = load(quick_folder)
    assert list(curves.columns) == ["study", "key", "model", "step", "epoch", "metric", "value"]
    rec = load_json(quick_folder)["studies"]["depth_bn"]["runs"]["3-layer-bn"]
    one = curves[(curves.study == "depth_bn") & (curves.key == "3-layer-bn")]
    n_points, M = np.shape(rec["history"]["metrics"]["val_loss"])
    assert set(one["metric"]) == {*rec["history"]["metrics"], "eta"}
    assert len(one) == n_points * M * len(set(one["metric"]))
    val = one[one.metric == "val_loss"].pivot(index="step", columns="model", values="value")
    stored = to_float_array(rec["history"]["metrics"]["val_loss"])
    np.testing.assert_array_equal(val.to_numpy(), stored)
    assert val.index.tolist() == rec["history"]["steps"]


def test_a_folder_the_suite_still_writes_gives_its_finished_runs(procs, tiny_data, tmp_path):
    """lambda_search's last run never finishes (tests.hold): coarse and fine are saved."""
    out = tmp_path / "out"
    start_suite(procs, out, "--quick", "--only", "lambda_search", "--seeds", 1,
                "--no-progress", "--workers", 1, "--data-dir", tiny_data,
                env=hold_env(tmp_path / "hold", "lambda_search/final"))
    wait_for(lambda: len(load_json(out)["studies"]["lambda_search"]["runs"]) == 2, 120,
             "the coarse and fine searches")
    models, curves = load(out)
    assert set(models["key"]) == {"coarse", "fine"} == set(curves["key"])
    assert len(models) == 16  # 8 lambdas each, one seed
    assert (models["study_status"] == "running").all()
    assert models.groupby("key")["lam"].nunique().to_dict() == {"coarse": 8, "fine": 8}


def test_a_per_model_value_fills_the_run_wide_field_it_replaces(tmp_path):
    from experiments.studies.kit import Grid
    from experiments.suite.sandbox import sandbox

    ctx = sandbox(tmp_path, study="eps")
    grid = Grid(ctx.seeds, eps=(1e-3, 1e-5), momentum=(0.0, 0.9))
    ctx.submit_train("eps", grid, hidden=(8,), schedule=ctx.cyclical(1)).result()
    models, _ = load(tmp_path)
    assert models["config.bn_eps"].tolist() == list(grid.values("eps"))
    assert models["train.momentum"].tolist() == list(grid.values("momentum"))
    # ... and each Grid setting is a column under its own name, for the obvious groupby.
    assert models["eps"].tolist() == list(grid.values("eps"))
    assert models.groupby("momentum")["test_accuracy"].size().to_dict() == {0.0: 4, 0.9: 4}


def test_every_option_is_a_column_with_its_default_filled_in(tmp_path):
    """A Grid over dropout gives ``dropout`` (not only ``config.dropout``); options the spec
    leaves out at their defaults are filled in, batch norm's ``config.norm`` included."""
    from experiments.studies.kit import Grid
    from experiments.suite.sandbox import sandbox

    ctx = sandbox(tmp_path, study="drop")
    ctx.submit_train("bn", Grid(ctx.seeds, dropout=(0.0, 0.3)), hidden=(8,),
                     schedule=ctx.cyclical(1)).result()
    ctx.submit_train("plain", seeds=ctx.seeds, hidden=(8,), norm=None,
                     schedule=ctx.cyclical(1)).result()
    models, _ = load(tmp_path)
    bn, plain = models[models.key == "bn"], models[models.key == "plain"]
    assert bn["dropout"].tolist() == [0.0, 0.0, 0.3, 0.3]
    assert bn["config.dropout"].tolist() == [0.0, 0.0, 0.3, 0.3]
    assert plain["config.dropout"].tolist() == [0.0, 0.0]  # the default, not NaN
    assert bn["config.norm"].tolist() == ["batch"] * 4
    assert plain["config.norm"].isna().all() and not plain["config.batch_norm"].any()
    assert (models["config.activation"] == "relu").all()
    assert (models["train.divergence_loss"] == 1e4).all()
    assert models.groupby(["key", "dropout"]).size().to_dict() == {("bn", 0.0): 2,
                                                                  ("bn", 0.3): 2}


def test_the_command_writes_both_tables_as_csv(quick_folder, tmp_path, capsys):
    assert main([str(quick_folder), "--csv", str(tmp_path / "csv")]) == 0
    models, curves = load(quick_folder)
    read = pd.read_csv(tmp_path / "csv" / "models.csv")
    assert len(read) == len(models) and list(read.columns) == list(models.columns)
    assert len(pd.read_csv(tmp_path / "csv" / "curves.csv")) == len(curves)
    assert f"models.csv: {len(models)} rows" in capsys.readouterr().out


def test_the_command_prints_a_summary_without_csv(quick_folder, capsys):
    assert main([str(quick_folder)]) == 0
    text = capsys.readouterr().out
    models, _ = load(quick_folder)
    assert text.startswith(f"models: {len(models)} rows")
    assert "depth_bn" in text and "3-layer-bn" in text and "gradcheck" not in text


def test_a_folder_without_results_is_one_sentence(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: There is no results.json in {tmp_path} yet; pass the --out folder "
                   "of a suite run (the file appears when its first run finishes).")
    (tmp_path / "results.json").write_text("{\"studies\": ")
    with pytest.raises(ResultsError, match="not readable JSON"):
        load(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ResultsError, match=r"is not a results file of the suite \(the top "
                                           r"level is an array, not an object\)"):
        load(tmp_path)


def test_without_pandas_the_error_names_the_extra(quick_folder, monkeypatch):
    block_import(monkeypatch, "pandas")
    with pytest.raises(ResultsError, match=r'pip install "xpnet\[pandas\]"'):
        load(quick_folder)


def test_a_folder_without_training_runs_gives_empty_tables_with_their_columns(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"studies": {"gradcheck": {"runs": {
        "K2": {"params": [], "spec": {"K": 2}}}}}}))
    models, curves = load(tmp_path)
    assert len(models) == len(curves) == 0
    assert list(models.columns) == ["study", "key", "model", "seed"]
    assert list(curves.columns) == ["study", "key", "model", "step", "epoch", "metric", "value"]
